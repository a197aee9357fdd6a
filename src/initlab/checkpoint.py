"""Checkpoints that are complete at every instant, and a resume that a bad one never blocks.

Lightning's ``TorchCheckpointIO`` saves through an fsspec transaction: a temporary file in
``$TMPDIR``, then a move. When ``$TMPDIR`` and the run directory are different filesystems
(tmpfs and NFS, say) the move is a copy into ``last.ckpt`` itself, so a SIGKILL or a full disk
in the middle of it leaves a truncated ``last.ckpt``, and every later resume fails on it.

``AtomicCheckpointIO`` (a Trainer plugin) writes the checkpoint into a temporary file next to the
target (same filesystem), fsyncs it, keeps the checkpoint it replaces as ``<name>.prev`` (a hard
link: no copy), renames the new file over the target and fsyncs the directory. At every instant
the target is a complete checkpoint, the old one or the new one; a save that fails (no space
left, a kill) leaves it untouched and no temporary file behind, and raises
``CheckpointWriteError``, one line saying what happened and what to do.

``prepare_resume(path)`` runs before a run resumes: it removes temporary files of killed saves,
checks that ``path`` loads as Lightning will load it and holds what a resume needs, moves a
checkpoint that does not aside (``<name>.corrupt-N``, never deleted, one warning each), falls
back to ``<name>.prev``, and returns the checkpoint to resume from, or None to start over.
Running the same command again always gets further: nothing it rejected is tried twice.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins import TorchCheckpointIO

from initlab.atomic import remove_stale_temp_files, write_atomic
from initlab.results import file_kind

log = logging.getLogger(__name__)

PREVIOUS_SUFFIX = ".prev"  # last.ckpt -> last.ckpt.prev (not *.ckpt: Lightning's "last" glob)
CORRUPT_SUFFIX = ".corrupt-"  # last.ckpt -> last.ckpt.corrupt-1, -2, ...

# What Lightning's fit reads from a checkpoint to resume (CheckpointConnector.restore):
# the weights, the loops' progress, optimizer and scheduler states, epoch and step.
RESUME_KEYS = ("state_dict", "loops", "optimizer_states", "lr_schedulers", "epoch", "global_step")


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the one it would have replaced is intact.

    An OSError (``errno`` is the cause's, e.g. ENOSPC) whose message is one line.
    """

    def __str__(self) -> str:
        return str(self.strerror)


class CheckpointResumeError(OSError):
    """A checkpoint that does not load could not be moved aside (one-line message)."""

    def __str__(self) -> str:
        return str(self.strerror)


def previous_path(path: str | os.PathLike[str]) -> Path:
    """Where ``AtomicCheckpointIO`` keeps the checkpoint that ``path`` replaced."""
    path = Path(path)
    return path.with_name(path.name + PREVIOUS_SUFFIX)


def _is_local(path: str | os.PathLike[str]) -> bool:
    text = os.fspath(path)
    return "://" not in text or text.startswith("file://")


def _local(path: str | os.PathLike[str]) -> Path:
    text = os.fspath(path)
    return Path(text[len("file://") :] if text.startswith("file://") else text)


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _reason(exc: BaseException, limit: int = 200) -> str:
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    detail = _one_line(detail, limit)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _errno(exc: BaseException | None) -> int | None:
    """The errno of ``exc`` or of the OSError it was raised from or during."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc.errno
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _write_error(exc: Exception, target: Path, intact: Path | None) -> CheckpointWriteError:
    code = _errno(exc)
    if code == errno.ENOSPC:
        what = f"no space left on device while saving checkpoint {target}"
    elif code == errno.EDQUOT:
        what = f"disk quota exceeded while saving checkpoint {target}"
    else:
        what = f"could not save checkpoint {target} ({_reason(exc)})"
    if intact is not None:
        then = f"the previous checkpoint {intact} is intact"
        todo = "run the same command again to resume from it"
    else:
        then = f"no checkpoint was saved before in {target.parent}"
        todo = "run the same command again"
    if code in (errno.ENOSPC, errno.EDQUOT):
        todo = "free space and " + todo
    return CheckpointWriteError(code, f"{what}; {then}: {todo}")


def _looks_complete(path: Path) -> bool:
    """A cheap check before keeping ``path`` as the previous checkpoint: a zip archive (what
    torch.save writes) with its end record, i.e. not cut off."""
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose save is atomic in the checkpoint's own directory.

    ``save_checkpoint(checkpoint, path)``: torch.save (into memory, as Lightning does), write
    that into ``.<name>.<pid>.<hex>.partial`` next to ``path``, flush and fsync it; hard-link
    the current ``path`` (if complete) to ``<name>.prev``; rename the new file over ``path``;
    fsync the directory. Nothing is written outside ``path``'s directory. On any error the
    temporary file is removed, ``path`` is left as it was, and ``CheckpointWriteError`` (an
    OSError with the cause's errno, one-line message) is raised from the cause.
    ``remove_checkpoint`` also removes ``<name>.prev``. Remote paths (``s3://`` ...) and
    ``storage_options`` are left to Lightning's own save.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = _local(path)
        had_previous = target.is_file()
        intact = target if had_previous else previous_path(target)
        keep = previous_path(target) if had_previous and _looks_complete(target) else None
        try:
            # Serialized in memory first, as Lightning does: written by torch's zip writer
            # straight into the file, a full disk surfaces as an opaque RuntimeError.
            buffer = io.BytesIO()
            torch.save(checkpoint, buffer)

            def write(f: Any) -> None:
                with buffer.getbuffer() as data:
                    f.write(data)

            write_atomic(target, write, keep_previous=keep)
        except Exception as exc:
            raise _write_error(exc, target, intact if intact.is_file() else None) from exc

    def remove_checkpoint(self, path: Any) -> None:
        super().remove_checkpoint(path)
        if _is_local(path):
            previous_path(_local(path)).unlink(missing_ok=True)


def checkpoint_problem(
    path: str | os.PathLike[str],
    checkpoint_io: TorchCheckpointIO | None = None,
    weights_only: bool | None = None,
) -> str | None:
    """Why the checkpoint at ``path`` cannot be resumed from (one line), or None if it can.

    It is loaded as Lightning's fit will load it (``checkpoint_io.load_checkpoint``, on the CPU,
    with the same ``weights_only``: pass what ``trainer.fit`` gets), after a check of the zip
    archive's checksums, and must be a dict holding everything a resume reads (RESUME_KEYS).
    """
    path = Path(path)
    if os.path.lexists(path) and (kind := file_kind(path)) is not None:  # a FIFO: never opened
        return f"not a regular file ({kind})"
    archive = False
    try:
        size = path.stat().st_size
        if path.is_file() and size == 0:
            return "empty file (0 bytes)"
        if path.is_file():
            with open(path, "rb") as f:
                head = f.read(4)
            archive = zipfile.is_zipfile(path)
            if archive:
                with zipfile.ZipFile(path) as zf:
                    bad = zf.testzip()
                if bad is not None:
                    return f"damaged: checksum mismatch in {bad}"
            elif head == b"PK\x03\x04":
                return f"truncated ({size} bytes, the end of the archive is missing)"
    except (OSError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError) as exc:
        return f"unreadable ({_reason(exc)})"
    loader = checkpoint_io if checkpoint_io is not None else TorchCheckpointIO()
    try:
        checkpoint = loader.load_checkpoint(path, map_location="cpu", weights_only=weights_only)
    except Exception as exc:
        if path.is_file() and not archive:
            return f"not a checkpoint archive: does not load ({_reason(exc, 120)})"
        return f"does not load ({_reason(exc, 120)})"
    if not isinstance(checkpoint, dict):
        return f"not a Lightning checkpoint (a {type(checkpoint).__name__})"
    missing = [key for key in RESUME_KEYS if key not in checkpoint]
    if missing:
        return f"not a checkpoint to resume from: no {', '.join(missing)}"
    loops = checkpoint["loops"]
    if not isinstance(loops, dict) or "fit_loop" not in loops:
        return "not a checkpoint to resume from: its loops have no fit_loop"
    return None


def move_aside(path: str | os.PathLike[str]) -> Path:
    """Rename ``path`` to the first free ``<name>.corrupt-N`` (N = 1, 2, ...); return it."""
    path = Path(path)
    n = 1
    while True:
        aside = path.with_name(f"{path.name}{CORRUPT_SUFFIX}{n}")
        if not os.path.lexists(aside):
            break
        n += 1
    os.rename(path, aside)
    return aside


def prepare_resume(
    checkpoint_path: str | os.PathLike[str],
    checkpoint_io: TorchCheckpointIO | None = None,
    weights_only: bool | None = None,
) -> Path | None:
    """The checkpoint a run should resume from: ``checkpoint_path``, its ``.prev``, or None.

    Call it before ``trainer.fit(..., ckpt_path=...)``, when no save into the directory is
    running. It removes temporary files of killed saves; then takes ``checkpoint_path`` and then
    ``<name>.prev`` in turn: the first that ``checkpoint_problem`` accepts is returned; one that
    it rejects is renamed to ``<name>.corrupt-N`` (never deleted) with a warning saying why.
    None (start over) when neither is left. Raises ``CheckpointResumeError`` (one line) only if
    a rejected checkpoint cannot be moved aside.
    """
    path = _local(checkpoint_path)
    for temp in remove_stale_temp_files(path.parent):
        log.info("removed %s, left by a save that was interrupted", temp)
    rejected = False
    for candidate in (path, previous_path(path)):
        if not os.path.lexists(candidate):
            continue
        problem = checkpoint_problem(candidate, checkpoint_io, weights_only)
        if problem is None:
            if candidate != path:
                log.warning("resuming from the previous checkpoint %s", candidate)
            return candidate
        try:
            aside = move_aside(candidate)
        except OSError as exc:
            raise CheckpointResumeError(
                exc.errno,
                f"checkpoint {candidate} cannot be resumed from ({problem}) and could not be"
                f" moved aside ({_reason(exc)}): move or delete it, then run again",
            ) from exc
        log.warning(
            "checkpoint %s cannot be resumed from: %s; moved it to %s", candidate, problem, aside
        )
        rejected = True
    if rejected:
        log.warning("no usable checkpoint left in %s: the run starts over", path.parent)
    return None
