"""Checkpoints are atomic in the run directory, and a bad one never blocks a resume."""

from __future__ import annotations

import builtins
import errno
import io
import json
import logging
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import zipfile
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins import TorchCheckpointIO
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from initlab.checkpoint import (
    AtomicCheckpointIO,
    CheckpointWriteError,
    checkpoint_problem,
    prepare_resume,
    previous_path,
    remove_stale_temp_files,
)
from initlab.module import Classifier

from .conftest import bare_trainer

pytestmark = pytest.mark.filterwarnings("ignore:You defined a `validation_step`:UserWarning")

STEPS_PER_EPOCH = 2


class _CountBatches(L.Callback):
    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1


def _fit(root: Path, max_epochs: int, io=None, ckpt_path=None) -> tuple[L.Trainer, _CountBatches]:
    """The real initlab module on a tiny net: 2 optimizer steps per epoch."""
    L.seed_everything(0, verbose=False)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 4, generator=gen), torch.randint(0, 3, (16,), generator=gen)
    module = Classifier(nn.Linear(4, 3), partial(torch.optim.SGD, lr=0.1), num_classes=3)
    counter = _CountBatches()
    trainer = bare_trainer(
        max_epochs=max_epochs,
        default_root_dir=root,
        plugins=[io] if io is not None else None,
        callbacks=[counter],
    )
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    trainer.fit(module, loader, ckpt_path=ckpt_path)
    return trainer, counter


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[int, bytes]:
    """Real checkpoints of the same run after epoch 1 and after epoch 2, as bytes."""
    root = tmp_path_factory.mktemp("ckpts")
    trainer, _ = _fit(root, 1)
    trainer.save_checkpoint(root / "epoch1.ckpt")
    trainer, _ = _fit(root, 2, ckpt_path=root / "epoch1.ckpt")
    trainer.save_checkpoint(root / "epoch2.ckpt")
    return {e: (root / f"epoch{e}.ckpt").read_bytes() for e in (1, 2)}


def _files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "initlab.checkpoint"]


def _tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# -- saving ---------------------------------------------------------------------------------


def test_a_save_replaces_the_checkpoint_and_keeps_the_previous_one(tmp_path):
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    trainer, _ = _fit(tmp_path / "root", 1, io=AtomicCheckpointIO())
    trainer.save_checkpoint(ckpt)
    first = ckpt.read_bytes()
    assert _files(ckpt.parent) == {"last.ckpt"}  # nothing to keep yet
    trainer, _ = _fit(tmp_path / "root", 2, io=AtomicCheckpointIO())
    trainer.save_checkpoint(ckpt)
    assert _files(ckpt.parent) == {"last.ckpt", "last.ckpt.prev"}
    assert previous_path(ckpt).read_bytes() == first
    assert torch.load(ckpt, weights_only=False)["global_step"] == 2 * STEPS_PER_EPOCH
    assert checkpoint_problem(ckpt) is None and checkpoint_problem(previous_path(ckpt)) is None
    umask = os.umask(0)
    os.umask(umask)
    assert ckpt.stat().st_mode & 0o777 == 0o666 & ~umask  # as a plain open() would create it
    AtomicCheckpointIO().remove_checkpoint(ckpt)
    assert not any(ckpt.parent.iterdir())


def test_a_save_writes_nothing_outside_the_checkpoint_directory(tmp_path, monkeypatch):
    """No temporary file in $TMPDIR (another filesystem, where a move is a copy): the save
    works even with no usable $TMPDIR at all. Lightning's own save fails here."""
    trainer, _ = _fit(tmp_path / "root", 1, io=AtomicCheckpointIO())
    gone = tmp_path / "no-such-tmpdir"
    monkeypatch.setenv("TMPDIR", str(gone))
    monkeypatch.setattr(tempfile, "tempdir", str(gone))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    before = _tree(tmp_path)
    trainer.save_checkpoint(ckpt)
    trainer.save_checkpoint(ckpt)
    assert _tree(tmp_path) - before == {ckpt, previous_path(ckpt)}
    assert not gone.exists()


class _FillingFile:
    """A file on a disk with ``disk.free`` bytes left: the write that does not fit writes what
    fits, then raises ENOSPC."""

    def __init__(self, f, disk: _Disks) -> None:
        self._f, self._disk = f, disk

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        if len(view) <= self._disk.free:
            self._disk.free -= len(view)
            return self._f.write(view)
        self._f.write(view[: self._disk.free])
        self._f.flush()
        self._disk.free = 0
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


class _Disks:
    """Two filesystems below tmp_path, ``tmpfs`` ($TMPDIR) and ``disk`` (the run directory): a
    rename from one to the other fails with EXDEV (so a move is a copy), and once ``fill`` is
    called, the disk has ``free`` bytes left."""

    def __init__(self, tmp_path: Path, monkeypatch) -> None:
        self.tmpfs, self.disk = tmp_path / "tmpfs", tmp_path / "disk"
        self.tmpfs.mkdir()
        self.disk.mkdir()
        self.free = 0
        self._mp = monkeypatch
        monkeypatch.setenv("TMPDIR", str(self.tmpfs))
        monkeypatch.setattr(tempfile, "tempdir", str(self.tmpfs))

    def _fs(self, path) -> str | None:
        path = Path(os.path.abspath(path))
        for root in (self.tmpfs, self.disk):
            if path == root or root in path.parents:
                return root.name
        return None

    def fill(self, free: int) -> None:
        self.free = free
        mp, real_open = self._mp, builtins.open

        def open_(file, mode="r", *args, **kwargs):
            f = real_open(file, mode, *args, **kwargs)
            writes = any(c in mode for c in "wax+")
            on_disk = isinstance(file, (str, os.PathLike)) and self._fs(file) == "disk"
            return _FillingFile(f, self) if writes and on_disk else f

        def across(real):
            def op(src, dst, *args, **kwargs):
                if self._fs(src) != self._fs(dst):
                    raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
                return real(src, dst, *args, **kwargs)

            return op

        mp.setattr(builtins, "open", open_)
        for name in ("rename", "replace", "link"):
            mp.setattr(os, name, across(getattr(os, name)))
        # shutil's copy then goes through write() too
        mp.setattr(shutil, "_USE_CP_SENDFILE", False, raising=False)
        mp.setattr(shutil, "_USE_CP_COPY_FILE_RANGE", False, raising=False)


@pytest.mark.parametrize(
    "io_class",
    [
        AtomicCheckpointIO,
        pytest.param(
            TorchCheckpointIO,
            marks=pytest.mark.xfail(
                strict=True,
                raises=AssertionError,
                reason="Lightning's save copies $TMPDIR's file into last.ckpt: a full disk cuts it",
            ),
        ),
    ],
)
def test_a_full_disk_during_a_save_leaves_the_previous_checkpoint_intact(
    tmp_path, monkeypatch, ckpts, io_class
):
    disks = _Disks(tmp_path, monkeypatch)
    ckpt = disks.disk / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(ckpts[1])
    trainer, _ = _fit(tmp_path / "root", 2, io=io_class())
    disks.fill(free=1000)
    with pytest.raises(OSError) as raised:
        trainer.save_checkpoint(ckpt)
    monkeypatch.undo()
    assert ckpt.read_bytes() == ckpts[1], "the previous checkpoint was damaged"
    assert _files(ckpt.parent) == {"last.ckpt"}, "a temporary file was left behind"
    assert not any(disks.tmpfs.iterdir())
    error = raised.value
    assert isinstance(error, CheckpointWriteError) and error.errno == errno.ENOSPC
    message = str(error)
    assert "\n" not in message
    assert message == (
        f"no space left on device while saving checkpoint {ckpt}; the previous checkpoint"
        f" {ckpt} is intact: free space and run the same command again to resume from it"
    )
    assert prepare_resume(ckpt) == ckpt


def test_any_error_in_a_save_is_one_line_and_leaves_nothing_behind(tmp_path):
    ckpt = tmp_path / "last.ckpt"
    with pytest.raises(CheckpointWriteError) as raised:
        AtomicCheckpointIO().save_checkpoint({"fn": lambda: 0}, ckpt)  # torch.save cannot
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"could not save checkpoint {ckpt} (")
    assert message.endswith(
        f"no checkpoint was saved before in {tmp_path}: run the same command again"
    )
    assert not any(tmp_path.iterdir())


def test_a_save_killed_midway_leaves_the_checkpoint_intact_and_a_temp_file_that_resume_removes(
    tmp_path, ckpts, caplog
):
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(ckpts[1])
    new = tmp_path / "epoch2.ckpt"
    new.write_bytes(ckpts[2])
    child = (  # killed once the new checkpoint is in its temporary file, before the rename
        "import os, signal, sys, torch\n"
        "from initlab.checkpoint import AtomicCheckpointIO\n"
        "os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)\n"
        "checkpoint = torch.load(sys.argv[2], weights_only=False)\n"
        "AtomicCheckpointIO().save_checkpoint(checkpoint, sys.argv[1])\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", child, str(ckpt), str(new)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert ckpt.read_bytes() == ckpts[1]
    temps = [p for p in ckpt.parent.iterdir() if p.name != "last.ckpt"]
    assert len(temps) == 1 and temps[0].name.startswith(".last.ckpt.")
    with caplog.at_level(logging.INFO, logger="initlab.checkpoint"):
        assert prepare_resume(ckpt) == ckpt
    assert _files(ckpt.parent) == {"last.ckpt"}
    assert f"removed {temps[0]}, left by a save that was interrupted" in caplog.text


def _can_mount_tmpfs(mnt: Path) -> str | None:
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return "needs Linux and unshare"
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    return None if probe.returncode == 0 else f"cannot mount a tmpfs: {probe.stderr.strip()}"


_TMPFS_CHILD = """
import json, os, sys, torch
from lightning.pytorch.plugins import TorchCheckpointIO
from initlab.checkpoint import AtomicCheckpointIO
mnt, kind = sys.argv[1], sys.argv[2]
io = AtomicCheckpointIO() if kind == "atomic" else TorchCheckpointIO()
path = os.path.join(mnt, "checkpoints", "last.ckpt")
io.save_checkpoint({"state_dict": {"w": torch.ones(1000)}}, path)
before = open(path, "rb").read()
try:
    io.save_checkpoint({"state_dict": {"w": torch.ones(300_000)}}, path)  # 1.2 MB
    out = {"error": None}
except Exception as exc:
    out = {"error": type(exc).__name__, "errno": getattr(exc, "errno", None), "message": str(exc)}
out["intact"] = open(path, "rb").read() == before
out["files"] = sorted(os.listdir(os.path.dirname(path)))
print(json.dumps(out))
"""


@pytest.mark.parametrize(
    "kind",
    [
        "atomic",
        pytest.param(
            "lightning",
            marks=pytest.mark.xfail(
                strict=True, raises=AssertionError, reason="Lightning's save truncates last.ckpt"
            ),
        ),
    ],
)
def test_a_real_full_disk_leaves_the_previous_checkpoint_intact(tmp_path, kind):
    """A 512 KiB tmpfs for the run directory ($TMPDIR stays on another filesystem), in a private
    mount namespace; skipped where mounting is not permitted."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if (why := _can_mount_tmpfs(mnt)) is not None:
        pytest.skip(why)
    tmpdir = tmp_path / "tmp"  # another filesystem than the tmpfs, and cleaned up
    tmpdir.mkdir()
    proc = subprocess.run(
        [
            *("unshare", "-m", "--propagation", "private", "sh", "-c"),
            'mount -t tmpfs -o size=512k tmpfs "$1" && exec "$2" -c "$3" "$1" "$4"',
            *("sh", str(mnt), sys.executable, _TMPFS_CHILD, kind),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmpdir)},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["errno"] == errno.ENOSPC, out
    assert out["intact"], f"the previous checkpoint was damaged: {out}"
    assert out["files"] == ["last.ckpt"], out
    path = mnt / "checkpoints" / "last.ckpt"
    assert out["error"] == "CheckpointWriteError"
    assert out["message"].startswith(f"no space left on device while saving checkpoint {path};")


# -- resuming -------------------------------------------------------------------------------


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _cut_end(data: bytes) -> bytes:
    return data[:-10]


def _bit_flip(data: bytes) -> bytes:
    """One bit flipped in the first tensor's bytes (what torch.load does not notice)."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo("archive/data/0")
    name_len, extra_len = struct.unpack(
        "<HH", data[info.header_offset + 26 : info.header_offset + 30]
    )
    i = info.header_offset + 30 + name_len + extra_len + 5
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


DAMAGE = {
    "empty": lambda data: b"",
    "truncated": _truncated,
    "end cut off": _cut_end,
    "garbage": lambda data: b"not a checkpoint\n" * 100,
    "bit flip": _bit_flip,
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_checkpoint_is_moved_aside_and_the_run_resumes_from_the_previous_one(
    tmp_path, ckpts, caplog, damage
):
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir()
    bad = DAMAGE[damage](ckpts[2])
    ckpt.write_bytes(bad)
    previous_path(ckpt).write_bytes(ckpts[1])
    if damage != "bit flip":  # torch.load reads a flipped bit as a different weight
        with pytest.raises((RuntimeError, EOFError, KeyError, OSError, pickle.UnpicklingError)):
            # what every resume did until now
            _fit(tmp_path / "root", 2, ckpt_path=ckpt)

    with caplog.at_level(logging.WARNING, logger="initlab.checkpoint"):
        resume = prepare_resume(ckpt)
    assert resume == previous_path(ckpt)
    assert _files(ckpt.parent) == {"last.ckpt.corrupt-1", "last.ckpt.prev"}
    assert (ckpt.parent / "last.ckpt.corrupt-1").read_bytes() == bad  # never deleted
    lines = _lines(caplog)
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"checkpoint {ckpt} cannot be resumed from: ")
    assert lines[0].endswith(f"; moved it to {ckpt}.corrupt-1")
    assert lines[1] == f"resuming from the previous checkpoint {resume}"

    trainer, counter = _fit(tmp_path / "root", 2, ckpt_path=resume)
    assert counter.batches == STEPS_PER_EPOCH  # epoch 2 only: it resumed after epoch 1
    assert trainer.global_step == 2 * STEPS_PER_EPOCH

    caplog.clear()  # running it again: nothing left to move, the same answer
    with caplog.at_level(logging.WARNING, logger="initlab.checkpoint"):
        assert prepare_resume(ckpt) == resume
    assert _lines(caplog) == [f"resuming from the previous checkpoint {resume}"]


def test_without_a_previous_checkpoint_the_run_starts_over(tmp_path, ckpts, caplog):
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(_truncated(ckpts[2]))
    (tmp_path / "last.ckpt.corrupt-1").write_bytes(b"an earlier one")
    with caplog.at_level(logging.WARNING, logger="initlab.checkpoint"):
        assert prepare_resume(ckpt) is None
    assert _files(tmp_path) == {"last.ckpt.corrupt-1", "last.ckpt.corrupt-2"}
    assert (tmp_path / "last.ckpt.corrupt-1").read_bytes() == b"an earlier one"
    assert _lines(caplog) == [
        f"checkpoint {ckpt} cannot be resumed from: truncated ({len(ckpts[2]) // 2} bytes,"
        f" the end of the archive is missing); moved it to {ckpt}.corrupt-2",
        f"no usable checkpoint left in {tmp_path}: the run starts over",
    ]
    caplog.clear()
    assert prepare_resume(ckpt) is None and not _lines(caplog)  # again: nothing to do


def test_both_damaged_are_moved_aside(tmp_path, ckpts):
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"")
    previous_path(ckpt).write_bytes(_cut_end(ckpts[1]))
    assert prepare_resume(ckpt) is None
    assert _files(tmp_path) == {"last.ckpt.corrupt-1", "last.ckpt.prev.corrupt-1"}


def test_a_good_checkpoint_is_resumed_from_untouched(tmp_path, ckpts, caplog):
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(ckpts[2])
    previous_path(ckpt).write_bytes(ckpts[1])
    with caplog.at_level(logging.INFO, logger="initlab.checkpoint"):
        assert prepare_resume(ckpt) == ckpt
    assert not _lines(caplog)
    assert ckpt.read_bytes() == ckpts[2] and previous_path(ckpt).read_bytes() == ckpts[1]
    assert prepare_resume(tmp_path / "nothing" / "last.ckpt") is None  # a fresh run


def test_a_checkpoint_that_loads_but_cannot_resume_is_moved_aside(tmp_path, ckpts):
    ckpt = tmp_path / "last.ckpt"
    data = torch.load(io.BytesIO(ckpts[2]), weights_only=False)
    torch.save({"state_dict": data["state_dict"], "epoch": 1}, ckpt)  # weights only
    assert checkpoint_problem(ckpt) == (
        "not a checkpoint to resume from: no loops, optimizer_states, lr_schedulers, global_step"
    )
    assert prepare_resume(ckpt) is None
    assert _files(tmp_path) == {"last.ckpt.corrupt-1"}


def test_stale_temp_files_are_removed_and_nothing_else(tmp_path):
    stale = [".last.ckpt.4711.0123abcd.partial", ".last.ckpt.prev.12.deadbeef.partial"]
    kept = ["last.ckpt.corrupt-1", "notes.partial", ".last.ckpt.x.partial", "last.ckpt.prev"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x")
    removed = remove_stale_temp_files(tmp_path)
    assert sorted(p.name for p in removed) == sorted(stale)
    assert _files(tmp_path) == set(kept)
