"""A run stopped by a signal at any moment, then run again, ends with the record (and weights) of a
run never stopped: the property behind "run the same command again to resume".

Hypothesis draws a schedule (block size; epochs, max_steps and limit_train_batches; validation
interval, per epoch or across epochs) and a moment: after any optimizer step, inside any
validation, inside the test, while the record is written, during set-up; and the signal (SIGTERM,
SIGINT, or SIGUSR2 from ``checkpoint.signals``). The run is stopped there (in this process: the
signal is sent with os.kill, and initlab.lifecycle.StopGuard handles it as a user's would be),
must exit with RunInterrupted (128 + N) and its state saved, and is run again until it finishes;
its results.json and last.ckpt must equal those of the same run uninterrupted, bit for bit.
The derandomized draw is fixed: the same cases every time (CASES in CI, more with -m slow).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from initlab.lifecycle import RunInterrupted
from initlab.module import Classifier
from initlab.results import read_results
from initlab.run import run

from .conftest import compose_train

CASES = 24  # drawn in `make test` (each: one interrupted run, its resume, its reference)
SLOW_CASES = 150

# Fields that state how long things took, which no two runs share.
_TIMING = {"timing", "seconds_to_val_acc", "output_dir"}

_REFERENCES: dict[tuple, tuple[dict[str, Any], dict[str, torch.Tensor]]] = {}


def _config(schedule: dict[str, Any]) -> dict[str, Any]:
    overrides = [
        "data=synthetic",
        "data.synthetic_train=420",
        "data.synthetic_test=60",
        "data.val_size=100",
        "data.batch_size=32",  # 10 steps per epoch
        "data.eval_batch_size=50",
        "progress_bar=false",
        "diagnostics.every_n_steps=3",
        "trainer.log_every_n_steps=2",
        "checkpoint.signals=[SIGUSR2]",
        "model.width=32",
        f"trainer.max_epochs={schedule['epochs']}",
        f"trainer.val_check_interval={schedule['interval']}",
        f"steps_per_execution={schedule['block']}",
    ]
    if schedule["per_epoch"]:
        overrides.append("trainer.check_val_every_n_epoch=1")
    if schedule["max_steps"] is not None:
        overrides.append(f"+trainer.max_steps={schedule['max_steps']}")
    if schedule["limit"] is not None:
        overrides.append(f"+trainer.limit_train_batches={schedule['limit']}")
    cfg = OmegaConf.to_container(compose_train(overrides), resolve=True)
    assert isinstance(cfg, dict)
    return cfg


def _optimizer():
    return partial(torch.optim.SGD, lr=0.05, momentum=0.5)


def _comparable(out: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    record = {k: v for k, v in read_results(out / "results.json").items() if k not in _TIMING}
    record["history"] = [{k: v for k, v in h.items() if k != "wall_s"} for h in record["history"]]
    weights = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    return record, weights


def _reference(schedule: dict[str, Any], root: Path, monkeypatch) -> tuple[dict, dict, dict]:
    """The uninterrupted run's record and weights, and how often each moment occurs in it."""
    key = tuple(sorted(schedule.items()))
    if key not in _REFERENCES:
        out = root / f"reference-{len(_REFERENCES)}"
        counter = _Moment("", 0, 0)
        with monkeypatch.context() as m:
            _patch_moments(m, counter)
            run(_config(schedule), out, _optimizer())
        _REFERENCES[key] = (*_comparable(out), dict(counter.counts))
    return _REFERENCES[key]


class _Moment:
    """Sends ``signum`` to this process (twice: ``twice``) at the ``n``-th occurrence of
    ``where``; counts the occurrences of every moment (``counts``)."""

    def __init__(self, where: str, n: int, signum: int, twice: bool = False) -> None:
        self.where, self.n, self.signum, self.twice = where, n, signum, twice
        self.counts: dict[str, int] = {}
        self.sent = False

    def __call__(self, where: str) -> None:
        self.counts[where] = self.counts.get(where, 0) + 1
        if self.sent or where != self.where or self.counts[where] != self.n:
            return
        self.sent = True
        os.kill(os.getpid(), self.signum)
        if self.twice:  # a second Ctrl-C: stop at once
            os.kill(os.getpid(), self.signum)


def _patch_moments(monkeypatch: pytest.MonkeyPatch, moment: _Moment) -> None:
    """Let ``moment`` fire inside the run: after a block of training steps, inside a
    validation or the test (at a batch of it), while the record is written, in set-up."""
    import initlab.run as run_module

    def hook(name: str, original: Any):
        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            moment(name)
            return original(self, *args, **kwargs)

        return wrapped

    monkeypatch.setattr(
        Classifier, "on_train_batch_end", hook("step", Classifier.on_train_batch_end)
    )
    monkeypatch.setattr(
        Classifier, "validation_step", hook("validation", Classifier.validation_step)
    )
    monkeypatch.setattr(Classifier, "test_step", hook("test", Classifier.test_step))
    final_metrics = run_module.final_metrics

    def record_moment(record: Any) -> Any:
        moment("record")
        return final_metrics(record)

    monkeypatch.setattr(run_module, "final_metrics", record_moment)
    schedule_of = run_module.schedule_of

    def setup_moment(*args: Any) -> Any:
        moment("setup")
        return schedule_of(*args)

    monkeypatch.setattr(run_module, "schedule_of", setup_moment)


schedules = st.fixed_dictionaries(
    {
        "block": st.sampled_from([1, 2, 3, 7, "auto"]),
        "epochs": st.integers(1, 3),
        "max_steps": st.one_of(st.none(), st.integers(1, 28)),
        "limit": st.one_of(st.none(), st.integers(1, 12), st.sampled_from([0.5, 0.75])),
        "interval": st.sampled_from([1, 2, 3, 4, 6, 100]),
        "per_epoch": st.booleans(),
    }
).filter(lambda s: not (s["per_epoch"] and isinstance(s["limit"], int) and s["interval"] > 4))
moments = st.tuples(
    st.sampled_from(["step", "validation", "test", "record", "setup"]),
    st.floats(0, 1, exclude_max=True),  # which occurrence of it, as a share of them all
    st.sampled_from(["SIGTERM", "SIGINT", "SIGUSR2", "SIGINT twice"]),
)


def _check(schedule: dict, moment_drawn: tuple, tmp_path: Path, monkeypatch) -> None:
    expected_record, expected_weights, counts = _reference(schedule, tmp_path, monkeypatch)
    out = tmp_path / f"case-{len(list(tmp_path.iterdir()))}"
    where, share, name = moment_drawn
    signum = getattr(signal, name.split()[0])
    n = 1 + int(share * counts[where])
    moment = _Moment(where, n, signum, twice=name.endswith("twice"))
    with monkeypatch.context() as m:
        _patch_moments(m, moment)
        with pytest.raises(RunInterrupted) as stopped:
            run(_config(schedule), out, _optimizer())
    assert moment.sent and stopped.value.code == 128 + signum
    run(_config(schedule), out, _optimizer())  # the same command again: it finishes
    record, weights = _comparable(out)
    assert record == expected_record
    assert weights.keys() == expected_weights.keys()
    for key in weights:
        assert torch.equal(weights[key], expected_weights[key]), key


@settings(
    max_examples=CASES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(schedule=schedules, moment=moments)
def test_a_run_stopped_at_any_moment_resumes_to_the_uninterrupted_record(
    schedule, moment, tmp_path, monkeypatch
):
    _check(schedule, moment, tmp_path, monkeypatch)


@pytest.mark.slow
@settings(
    max_examples=SLOW_CASES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(schedule=schedules, moment=moments)
def test_many_stops_resume_to_the_uninterrupted_record(schedule, moment, tmp_path, monkeypatch):
    _check(schedule, moment, tmp_path, monkeypatch)


# -- signals at the moments that were unguarded, as a user sends them ---------------------------
_WRAPPER = """
import os, runpy, signal, sys, time
sys.argv = [{train!r}, *{args!r}]
{patch}
runpy.run_path({train!r}, run_name="__main__")
"""

# Each patch sends the signal from inside the phase it names (the first time it gets there).
_AT = {
    "test": (
        "import initlab.module as m\n"
        "_step = m.Classifier.test_step\n"
        "def test_step(self, *a, **k):\n"
        "    if not getattr(test_step, 'sent', False):\n"
        "        test_step.sent = True; os.kill(os.getpid(), signal.{sig})\n"
        "    return _step(self, *a, **k)\n"
        "m.Classifier.test_step = test_step"
    ),
    "validation": (
        "import initlab.module as m\n"
        "_step = m.Classifier.validation_step\n"
        "def validation_step(self, *a, **k):\n"
        "    validation_step.n = getattr(validation_step, 'n', 0) + 1\n"
        "    if validation_step.n == 3:  # inside the validation at step 5, mid-epoch\n"
        "        os.kill(os.getpid(), signal.{sig})\n"
        "    return _step(self, *a, **k)\n"
        "m.Classifier.validation_step = validation_step"
    ),
    "report": (
        "import initlab.report as r\n"
        "_write = r.write_report\n"
        "def write_report(*a, **k):\n"
        "    os.kill(os.getpid(), signal.{sig}); time.sleep(0.05)\n"
        "    return _write(*a, **k)\n"
        "r.write_report = write_report"
    ),
    "save": (  # a storm: a signal every few ms across a checkpoint's save
        "import initlab.checkpoint as c\n"
        "_save = c.AtomicCheckpointIO.save_checkpoint\n"
        "def save_checkpoint(self, *a, **k):\n"
        "    for _ in range(200):\n"
        "        os.kill(os.getpid(), signal.{sig}); time.sleep(0.003)\n"
        "    return _save(self, *a, **k)\n"
        "c.AtomicCheckpointIO.save_checkpoint = save_checkpoint"
    ),
}


def _train_at(moment: str, sig: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    from .conftest import TRAIN

    code = _WRAPPER.format(train=str(TRAIN), args=args, patch=_AT[moment].format(sig=sig))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )


def _record(out: Path) -> dict[str, Any]:
    return _comparable(out)[0]


def _same_command(out: Path) -> None:
    """What ``python train.py *_CLI hydra.run.dir=out`` runs, in this process (the library's run,
    with the config and optimizer train.py composes: the same fingerprint)."""
    from hydra.utils import instantiate

    cfg = OmegaConf.to_container(compose_train(_CLI), resolve=True)
    run(cfg, out, instantiate(cfg["optimizer"]))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("uninterrupted")
    _same_command(root / "run")
    return _record(root / "run")


_CLI = [
    "data=synthetic",
    "trainer.max_epochs=2",
    "trainer.val_check_interval=5",
    "trainer.log_every_n_steps=5",
    "progress_bar=false",
]


@pytest.mark.parametrize(
    ("moment", "sig", "phase"),
    [
        ("test", "SIGTERM", "test"),  # was: exit 0, no results.json, then refused
        ("test", "SIGINT", "test"),  # was: exit 1, nothing said
        ("validation", "SIGTERM", "fit"),  # was: the resumed history lacked that validation
        ("save", "SIGTERM", "fit"),  # a storm: was 125,000 lines of "Logging error"
    ],
)
def test_a_signal_in_any_phase_exits_128_plus_n_and_the_same_command_finishes_the_run(
    tmp_path, uninterrupted, moment, sig, phase
):
    args = [*_CLI, f"hydra.run.dir={tmp_path / 'run'}"]
    stopped = _train_at(moment, sig, args, tmp_path)
    output = stopped.stdout + stopped.stderr
    assert stopped.returncode == 128 + getattr(signal, sig), output[-3000:]
    assert "Traceback" not in output and "Logging error" not in output, output[-3000:]
    lines = [ln for ln in output.splitlines() if "stopped by" in ln]
    assert len(lines) == 1 and f"stopped by {sig}" in lines[0] and f"its {phase} phase" in lines[0]
    assert not (tmp_path / "run" / "results.json").exists()
    _same_command(tmp_path / "run")  # the same command again (here in-process: quicker)
    assert _record(tmp_path / "run") == uninterrupted


def test_a_signal_during_the_report_of_a_sweep_keeps_its_tally_and_report(tmp_path):
    args = [
        "-m",
        *_CLI,
        "trainer.max_epochs=1",
        "init=he,xavier",
        f"hydra.sweep.dir={tmp_path / 's'}",
    ]
    stopped = _train_at("report", "SIGTERM", args, tmp_path)
    output = stopped.stdout + stopped.stderr
    assert stopped.returncode == 143, output[-3000:]
    assert "sweep finished: 2 ok, 0 diverged, 0 failed, 0 unreadable" in output
    assert "stopped by SIGTERM after its report was written" in output
    assert "before any run finished" not in output and "Traceback" not in output
    assert (tmp_path / "s" / "summary.md").is_file()


@pytest.mark.parametrize(("where", "says"), [("setup", "in its setup phase"),
                                             ("record", "with the run finished")])  # fmt: skip
def test_every_stop_says_in_one_line_where_it_stopped_and_what_it_saved(
    tmp_path, monkeypatch, caplog, where, says
):
    schedule = {"block": "auto", "epochs": 1, "max_steps": None, "limit": None, "interval": 4,
                "per_epoch": False}  # fmt: skip
    with monkeypatch.context() as m:
        _patch_moments(m, _Moment(where, 1, signal.SIGTERM))
        with caplog.at_level("WARNING", logger="initlab.run"), pytest.raises(RunInterrupted):
            run(_config(schedule), tmp_path / "run", _optimizer())
    stops = [r.getMessage() for r in caplog.records if "stopped by" in r.getMessage()]
    assert len(stops) == 1 and stops[0].startswith("stopped by SIGTERM") and says in stops[0]
