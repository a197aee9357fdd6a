"""One owner per run dir: the process that runs in it holds its lock, and everything it writes
there (checkpoints, event files, metrics.csv, results.json) goes through ``RunDir``.

- ``RunDir.claim(path)``: an exclusive ``flock`` on ``<path>/.initlab.lock``, which also names
  the holder (pid, host, start, command). A second process gets ``RunDirBusy``, one line naming
  the holder; nothing of the first is touched. The kernel drops the lock of a process that dies,
  so a killed run's lock is simply taken over, and the takeover says whose it was. A sweep's
  process holds its sweep dir the same way. Claims are re-entrant within a process (the command
  line claims a single run's dir before Hydra writes into it; the run claims it again).
- ``move_aside()``: ``force=true`` starts over from a clean dir: what the previous run wrote is
  moved into ``.replaced-<N>/`` in the run dir (never mixed in, never deleted).
- ``truncate_logs(step)``: a resumed or extended run continues its logs: event files and
  metrics.csv keep every entry up to the step it resumes from and lose the ones a killed
  attempt wrote after it, which the resumed run writes again.

No torch, no Lightning, no Hydra.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import errno
import fcntl
import io
import json
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from initlab.atomic import remove_stale_temp_files, write_atomic
from initlab.errors import RunDirBusy
from initlab.results import RESULTS_FILE, file_kind

log = logging.getLogger(__name__)

LOCK_FILE = ".initlab.lock"
CHECKPOINT = Path("checkpoints") / "last.ckpt"  # below the run dir: what a resume starts from
METRICS_CSV = "metrics.csv"  # logger=csv
HPARAMS_YAML = "hparams.yaml"  # logger=csv
EVENTS_GLOB = "events.out.tfevents.*"  # logger=tensorboard
REPLACED_PREFIX = ".replaced-"  # force=true: .replaced-1, .replaced-2, ...
# What a run writes, moved aside together by force=true (train.log and .hydra/ are Hydra's, and
# already hold the new run's first lines)
RUN_OUTPUTS = (RESULTS_FILE, CHECKPOINT.parts[0], METRICS_CSV, HPARAMS_YAML)


def _holder() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv)[:300],
    }


def describe_holder(holder: dict[str, Any]) -> str:
    """'process 123 on host since ... (command)': who holds a run dir."""
    pid, host = holder.get("pid", "?"), holder.get("host", "?")
    since = f" since {holder['started']}" if holder.get("started") else ""
    command = f" ({holder['command']})" if holder.get("command") else ""
    return f"process {pid} on {host}{since}{command}"


class _Lock:
    def __init__(self, fd: int) -> None:
        self.fd, self.count = fd, 1


_HELD: dict[str, _Lock] = {}  # this process's claims: a lock is the process's, as flock's is


class RunDir:
    """A run (or sweep) dir and what is written in it; ``claim`` it before writing."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # -- files ---------------------------------------------------------------------------
    @property
    def results(self) -> Path:
        return self.path / RESULTS_FILE

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    def log_dir(self, subdir: str | None) -> Path:
        """Where the logger writes: the run dir itself, or ``logger.subdir`` below it."""
        return self.path / subdir if subdir else self.path

    # -- the lock ------------------------------------------------------------------------
    @property
    def _key(self) -> str:
        return str(self.path.resolve())

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock now (None: nobody), without taking it."""
        lock = self.path / LOCK_FILE
        if self._key in _HELD or not lock.is_file() or lock.is_symlink():
            return None
        fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            return _read_holder(fd) or {}
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def claim(self) -> RunDir:
        """Take the dir's lock (creating the dir); raise RunDirBusy if another process has it."""
        held = _HELD.get(self._key)
        if held is not None:
            held.count += 1
            return self
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / LOCK_FILE
        if os.path.lexists(lock) and (lock.is_symlink() or file_kind(lock) is not None):
            kind = file_kind(lock) or f"a symlink to {os.readlink(lock)}"
            raise RunDirBusy(f"{lock} is {kind}, not the lock file initlab writes: delete it")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd) or {}
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise RunDirBusy(
                f"{self.path} is in use by {describe_holder(holder)}: wait for it to end, or "
                "choose another output dir (hydra.run.dir=... or hydra.sweep.dir=...)"
            ) from None
        left = _read_holder(fd)
        if left and left.get("pid") != os.getpid():
            log.warning(
                "%s: took over the lock left by %s, which ended without releasing it (killed?)",
                self.path,
                describe_holder(left),
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(_holder()) + "\n").encode(), 0)
        _HELD[self._key] = _Lock(fd)
        return self

    def release(self) -> None:
        """Drop one claim; the last one clears the holder and unlocks."""
        held = _HELD.get(self._key)
        if held is None:
            return
        held.count -= 1
        if held.count:
            return
        del _HELD[self._key]
        with contextlib.suppress(OSError):
            os.ftruncate(held.fd, 0)  # an empty lock file: released, not left by a kill
        fcntl.flock(held.fd, fcntl.LOCK_UN)
        os.close(held.fd)

    @property
    def owned(self) -> bool:
        return self._key in _HELD

    def __enter__(self) -> RunDir:
        return self.claim()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- starting over, continuing -------------------------------------------------------
    def move_aside(self, log_subdir: str | None = None) -> Path | None:
        """Move what a previous run wrote here into ``.replaced-<N>/`` (None: nothing was)."""
        assert self.owned, "claim the run dir first"
        log_dir = self.log_dir(log_subdir)
        found = [self.path / name for name in RUN_OUTPUTS if (self.path / name).exists()]
        found += [p for p in sorted(log_dir.glob(EVENTS_GLOB)) if p.is_file()]
        found += [log_dir / n for n in (METRICS_CSV, HPARAMS_YAML) if (log_dir / n).is_file()]
        found = list(dict.fromkeys(found))
        if not found:
            return None
        n = 1
        while (self.path / f"{REPLACED_PREFIX}{n}").exists():
            n += 1
        aside = self.path / f"{REPLACED_PREFIX}{n}"
        aside.mkdir()
        for path in found:
            target = aside / path.relative_to(self.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
        return aside

    def remove_stale_temp_files(self) -> list[Path]:
        """Temporary files of writes a killed process left (the owner alone may remove them)."""
        assert self.owned, "claim the run dir first"
        removed = remove_stale_temp_files(self.path)
        removed += remove_stale_temp_files(self.checkpoint.parent)
        return removed

    def truncate_logs(
        self,
        step: int,
        log_subdir: str | None = None,
        ended: Callable[[str], bool] | None = None,
    ) -> int:
        """Drop the logged entries after optimizer step ``step`` (a resumed attempt writes them
        again), and at ``step`` those whose tag is ``ended`` (an extended run's earlier end:
        its test and record, which the longer run supersedes); return how many went."""
        assert self.owned, "claim the run dir first"
        log_dir = self.log_dir(log_subdir)
        dropped = _truncate_csv(log_dir / METRICS_CSV, step, ended)
        for path in sorted(log_dir.glob(EVENTS_GLOB)):
            if path.is_file() and not path.is_symlink():
                dropped += _truncate_events(path, step, ended)
        return dropped


def _read_holder(fd: int) -> dict[str, Any] | None:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", errors="replace").strip()
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return {"pid": "?"}


def _truncate_csv(path: Path, step: int, ended: Callable[[str], bool] | None) -> int:
    if not path.is_file() or path.is_symlink():
        return 0
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        rows = list(reader)

    def keep(row: dict[str, Any]) -> bool:
        at = _step(row.get("step"))
        if at is None or at < step:
            return True
        if at > step:
            return False
        return ended is None or not any(ended(k) for k, v in row.items() if v not in ("", None))

    kept = [r for r in rows if keep(r)]
    if len(kept) == len(rows):
        return 0

    def write(f: Any) -> None:
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
        f.write(text.getvalue().encode("utf-8"))

    write_atomic(path, write)
    return len(rows) - len(kept)


def _step(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _truncate_events(path: Path, step: int, ended: Callable[[str], bool] | None) -> int:
    """Rewrite one event file without its events after ``step``, nor the ``ended`` values at
    it (TensorBoard's own reader and record writer; events without a step are kept)."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event

    records = list(RawEventFileLoader(str(path)).Load())
    kept: list[bytes] = []
    for record in records:
        event = Event.FromString(record)
        if event.step > step:
            continue
        if event.step == step and ended is not None and event.HasField("summary"):
            values = [v for v in event.summary.value if not ended(v.tag)]
            if len(values) < len(event.summary.value):
                if not values:
                    continue
                del event.summary.value[:]
                event.summary.value.extend(values)
                record = event.SerializeToString()
        kept.append(record)
    if kept == records:
        return 0
    from tensorboard.summary.writer.record_writer import RecordWriter

    def write(f: Any) -> None:
        writer = RecordWriter(f)
        for record in kept:
            writer.write(record)
        writer.flush()

    write_atomic(path, write)
    return len(records) - len(kept)


@contextlib.contextmanager
def owning(path: str | Path) -> Iterator[RunDir]:
    """``with owning(path) as rd:``: the run dir, claimed for the block."""
    rd = RunDir(path).claim()
    try:
        yield rd
    finally:
        rd.release()
