"""One owner per run dir: the process that runs there holds its lock, and everything it writes goes
through ``initlab.rundir.RunDir``: a second process is refused and the first untouched, force=true
moves the old run aside, a resumed or extended run continues its logs, and job dirs stay inside
their sweep dir whatever the values.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from initlab.errors import RunDirBusy
from initlab.paths import job_dirname
from initlab.rundir import RunDir

from .conftest import FAST, LONG_RUN, ROOT, run_train, start_train, wait_for


def _scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of every event of ``tag`` in the run dir's own event files."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    out = []
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == tag:
                    number = value.simple_value if value.HasField("simple_value") else None
                    if number is None:
                        from tensorboard.util import tensor_util

                        number = float(tensor_util.make_ndarray(value.tensor))
                    out.append((event.step, number))
    return sorted(out)


def test_a_second_process_in_a_run_dir_is_refused_and_the_first_untouched(tmp_path):
    out = tmp_path / "run"
    long = [*LONG_RUN, "trainer.max_epochs=100"]  # runs until stopped below
    first = start_train([*long, "optimizer.lr=0.01", f"hydra.run.dir={out}"], cwd=tmp_path)
    try:
        wait_for(out / "checkpoints" / "last.ckpt", first)
        config_before = (out / ".hydra" / "config.yaml").read_text()
        second = run_train([*long, "optimizer.lr=0.05", f"hydra.run.dir={out}"], cwd=tmp_path)
        assert second.returncode == 2, second.stdout + second.stderr
        assert "is in use by process" in second.stderr and str(first.pid) in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        assert first.poll() is None  # still running, untouched
        assert (out / ".hydra" / "config.yaml").read_text() == config_before
        first.send_signal(signal.SIGTERM)
        output, _ = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 143, output[-2000:]
    assert "lr=0.05" not in (out / "train.log").read_text()
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["optimizer_states"][0]["param_groups"][0]["lr"] == 0.01  # the first's own


def test_a_lock_left_by_a_killed_process_is_taken_over_and_says_so(tmp_path):
    out = tmp_path / "run"
    code = (
        "import os, signal, sys; sys.path.insert(0, {!r})\n"
        "from initlab.rundir import RunDir\n"
        "RunDir({!r}).claim(); print('held', flush=True); os.kill(os.getpid(), signal.SIGKILL)"
    ).format(str(ROOT / "src"), str(out))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL and "held" in proc.stdout
    assert json.loads((out / ".initlab.lock").read_text())["pid"] > 0  # the dead one's
    result = run_train([*FAST, f"hydra.run.dir={out}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "took over the lock left by process" in result.stderr  # said on the terminal
    assert (out / ".initlab.lock").read_text() == ""  # train.py released it as it ended
    again = run_train([*FAST, f"hydra.run.dir={out}"], cwd=tmp_path)  # a clean end: no takeover
    assert again.returncode == 0 and "took over" not in again.stderr, again.stderr[-2000:]


def test_claims_are_exclusive_between_processes_and_reentrant_within_one(tmp_path):
    rd = RunDir(tmp_path / "run")
    with rd:
        with RunDir(tmp_path / "run"):  # the same process again: re-entrant
            assert rd.owned
        assert rd.owned
        code = (
            "import sys; sys.path.insert(0, {!r})\n"
            "from initlab.rundir import RunDir\n"
            "from initlab.errors import RunDirBusy\n"
            "try:\n    RunDir({!r}).claim()\nexcept RunDirBusy as e:\n    print('busy:', e)"
        ).format(str(ROOT / "src"), str(tmp_path / "run"))
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert f"busy: {tmp_path / 'run'} is in use by process {os.getpid()}" in proc.stdout
    assert not rd.owned
    assert (tmp_path / "run" / ".initlab.lock").read_text() == ""  # released, not left


def _run(out: Path, *overrides: str) -> dict:
    """A run in this process (the library's run, as train.py's)."""
    from functools import partial

    from omegaconf import OmegaConf

    from initlab.run import run

    from .conftest import compose_train

    cfg = OmegaConf.to_container(compose_train([*FAST, *overrides]), resolve=True)
    lr = cfg["optimizer"]["lr"]
    return run(cfg, out, partial(torch.optim.SGD, lr=lr, momentum=0.5))


def test_force_moves_the_old_run_aside_and_never_mixes_it_in(tmp_path):
    out = tmp_path / "run"
    _run(out, "optimizer.lr=0.5")
    old = _scalars(out, "val/acc")
    _run(out, "force=true", "optimizer.lr=0.001")
    new = _scalars(out, "val/acc")
    steps = [s for s, _ in new]
    assert len(steps) == len(set(steps))  # one value per step: not two runs on one chart
    aside = out / ".replaced-1"
    assert _scalars(aside, "val/acc") == old
    assert json.loads((aside / "results.json").read_text())["optimizer"]["lr"] == 0.5
    assert json.loads((out / "results.json").read_text())["optimizer"]["lr"] == 0.001
    assert (aside / "checkpoints" / "last.ckpt").is_file()


def test_the_csv_logger_keeps_its_rows_when_a_run_is_extended(tmp_path):
    args = ["logger=csv", "diagnostics=off"]
    _run(tmp_path / "x", *args)
    _run(tmp_path / "x", *args, "trainer.max_epochs=2")
    _run(tmp_path / "y", *args, "trainer.max_epochs=2")

    def rows(d: str) -> list[tuple[str, str]]:
        with open(tmp_path / d / "metrics.csv") as f:
            return [(r["step"], r.get("val/acc", "")) for r in csv.DictReader(f)]

    assert rows("x") == rows("y")
    assert any(int(step) <= 13 for step, _ in rows("x"))  # epoch 1's rows are kept


def test_a_resumed_run_logs_each_step_once(tmp_path, monkeypatch):
    """A run stopped at once (two Ctrl-C: nothing saved past its epoch-end checkpoint) had
    logged steps it trains again when it resumes: they are logged once."""
    from initlab.lifecycle import RunInterrupted
    from initlab.module import Classifier

    out, args = tmp_path / "run", ["trainer.max_epochs=2", "trainer.log_every_n_steps=1"]
    original = Classifier.on_train_batch_end

    def stop_in_epoch_2(self, *a, **k):
        if self.global_step == 20:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(Classifier, "on_train_batch_end", stop_in_epoch_2)
        with pytest.raises(RunInterrupted):
            _run(out, *args, "steps_per_execution=1")
    assert max(s for s, _ in _scalars(out, "train/loss")) >= 20  # logged past epoch 1's end
    _run(out, *args, "steps_per_execution=1")
    for tag in ("val/acc", "train/loss"):
        steps = [s for s, _ in _scalars(out, tag)]
        assert steps == sorted(set(steps)), tag


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.text(min_size=0, max_size=400))
def test_a_job_dir_stays_inside_its_sweep_dir_whatever_the_values(name):
    sweep = Path("/sweep")
    job = sweep / job_dirname(name)
    assert job.parent == sweep
    assert job.name not in ("", ".", "..")
    assert len(job.name.encode()) <= 255


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda run: run.write_text("not a dir"), "is a file, not a directory"),
        (lambda run: (run / "results.json").mkdir(parents=True), "is a directory, where the run"),
        (
            lambda run: (
                (run / "checkpoints").parent.mkdir() or (run / "checkpoints").write_text("")
            ),
            "is not a directory, where the run keeps its checkpoints",
        ),  # fmt: skip
    ],
)
def test_what_stands_where_the_run_writes_is_refused(tmp_path, make, says):
    from initlab.cli import BadInput, check

    from .conftest import CONF

    make(tmp_path / "run")
    with pytest.raises(BadInput, match=says):
        check(["data=synthetic", f"hydra.run.dir={tmp_path / 'run'}"], CONF, "train")


def test_a_run_dir_busy_in_the_library_is_refused_without_touching_it(tmp_path):
    from functools import partial

    import torch
    from omegaconf import OmegaConf

    from initlab.run import run

    from .conftest import compose_train

    cfg = OmegaConf.to_container(compose_train(FAST), resolve=True)
    out = tmp_path / "run"
    code = (
        "import sys, time; sys.path.insert(0, {!r})\n"
        "from initlab.rundir import RunDir\n"
        "RunDir({!r}).claim(); print('held', flush=True); time.sleep(60)"
    ).format(str(ROOT / "src"), str(out))
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirBusy, match="is in use by process"):
            run(cfg, out, partial(torch.optim.SGD, lr=0.01))
        assert sorted(p.name for p in out.iterdir()) == [".initlab.lock"]
    finally:
        holder.kill()
        holder.wait()
