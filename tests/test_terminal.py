"""What a terminal shows: a progress bar for a run, one line per finished job for a sweep, help,
tab completion and the refusal of bad input without torch; Lightning's and the dependencies'
boilerplate only in the runs' train.log (initlab.callbacks.route_terminal,
initlab.hydra_callbacks)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
import warnings
from io import StringIO
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import initlab.hydra_callbacks as hc
from initlab.callbacks import TerminalFilter, epoch_log, route_terminal

from .conftest import FAST, ROOT, TRAIN, run_train
from .test_report import record

# Each a line Lightning or a dependency prints per job unless routed to the log file: the device
# summary, the litlogger tip, the end of fit, the srun hint, the GPU rank line, deprecations.
BOILERPLATE = re.compile(
    r"GPU available|TPU available|💡|litlogger|`Trainer\.fit` stopped|srun|LOCAL_RANK"
    r"|LeafSpec|is deprecated|DeprecationWarning|FutureWarning"
)
JOB_LINE = re.compile(
    r"^job (\d+)/(\d+) (?:done|skipped, already finished) \((ok|diverged), test_acc [\d.]+\)"
    r", elapsed \S+(?:, ETA \S+)?: (.*)$",
    re.M,
)
QUICK = [*FAST, "logger=none", "diagnostics=off"]
HEAVY = ("torch", "lightning", "torchvision", "torchmetrics", "pytorch_lightning")


def _imported(stderr: str) -> set[str]:
    """The modules a ``python -X importtime`` run imported."""
    return {
        line.rsplit("|", 1)[-1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def _python(args: list[str], cwd: Path, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


# -- sweeps -------------------------------------------------------------------------------------
LAUNCHERS = {
    "basic": ([], ["init=zero,he", "norm=none,batchnorm"]),
    "local": (
        ["hydra/launcher=local", "hydra.launcher.cpus=2", "hydra.launcher.gpus=[]"],
        ["init=zero,he"],
    ),
    "slurm_local": (["hydra/launcher=slurm_local"], ["init=zero,he"]),
}


@pytest.mark.parametrize(
    "launcher",
    # basic in make test; the spawning launchers (11-12 s each) with -m slow
    [pytest.param(n, marks=pytest.mark.slow) if n != "basic" else n for n in sorted(LAUNCHERS)],
)
def test_a_sweep_prints_its_plan_one_line_per_job_and_no_boilerplate(tmp_path, launcher):
    extra, grid = LAUNCHERS[launcher]
    sweep = tmp_path / "sweep"
    proc = run_train(["-m", *grid, *QUICK, *extra, f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert not BOILERPLATE.search(out), BOILERPLATE.search(out).group(0) + "\n" + out[-3000:]
    n = 4 if launcher == "basic" else 2
    assert f"sweep: {n} jobs (init: zero, he" in out and f"-> {sweep}" in out
    lines = JOB_LINE.findall(proc.stdout)
    assert [int(k) for k, *_ in lines] == list(range(1, n + 1)), out[-3000:]
    assert {int(total) for _, total, *_ in lines} == {n}
    named = sorted(who for *_, who in lines)  # each job named by what varies, once
    if launcher == "basic":
        norms = ("none", "batchnorm")
        assert named == sorted(f"init={i} norm={m}" for i in ("zero", "he") for m in norms)
    else:
        assert named == ["init=he", "init=zero"]
    assert re.search(r"took \d+s; summary\.md's top rows:\ninit +norm +n +status", out)
    assert "#0 :" not in out and "launcher: job 1 of" not in out  # no per-job listing
    logs = list(sweep.glob("*/train.log"))
    assert len(logs) == n
    for log in logs:  # what the terminal was spared is in each job's log
        text = log.read_text()
        assert "GPU available" in text and "epoch 1/1 step" in text, text


def test_a_relaunched_sweep_says_each_job_was_skipped(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "seed=0,1", *QUICK, f"hydra.sweep.dir={sweep}"]
    assert run_train(args, cwd=tmp_path).returncode == 0
    again = run_train(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    skipped = re.findall(r"^job (\d)/2 skipped, already finished \(ok, ", again.stdout, re.M)
    assert skipped == ["1", "2"], again.stdout[-3000:]
    assert "2 skipped as already finished (force=true runs them again)" in again.stdout


# -- a single run -------------------------------------------------------------------------------
def test_a_run_shows_one_bar_and_keeps_its_epoch_lines_in_train_log(tmp_path):
    out = tmp_path / "run"
    args = [*QUICK, "trainer.max_epochs=2", "progress_bar=true", f"hydra.run.dir={out}"]
    proc = run_train(args, cwd=tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    assert not BOILERPLATE.search(text), text[-3000:]
    bar = proc.stdout.splitlines()  # text mode: each \r of the bar reads as a new line
    assert any(re.match(r"epoch 2/2: 100%.*13/13 .*loss=[\d.]+, val_acc=[\d.]+\]", b) for b in bar)
    assert any(b.startswith("epoch 1/2:") for b in bar)
    for other in ("Sanity Checking", "Validation", "Testing", "Epoch "):  # Lightning's bars
        assert other not in text
    assert "epoch 1/2 step" not in text  # the epoch lines: in the log, not under the bar
    log = (out / "train.log").read_text()
    assert "epoch 1/2 step 13 " in log and "epoch 2/2 step 26 " in log
    assert "ok: test_acc" in text  # the run's last line


def test_terminal_filter_keeps_errors_and_the_runs_own_lines(tmp_path):
    """Unit: the routing of each kind of record, and of warnings, to terminal and file."""
    root = logging.getLogger()
    term, file = logging.StreamHandler(StringIO()), logging.FileHandler(tmp_path / "train.log")
    root.addHandler(term)
    root.addHandler(file)
    level = root.level
    root.setLevel(logging.INFO)
    lightning = {  # route_terminal takes Lightning's own handlers away: given back after
        name: (lg, list(lg.handlers), lg.propagate)
        for name in ("lightning", "lightning.pytorch", "lightning.fabric")
        for lg in [logging.getLogger(name)]
    }
    try:
        route_terminal(progress_bar=True)
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False")
        logging.getLogger("lightning.pytorch").error("a Lightning error")
        epoch_log.info("epoch 1/2 step 13")
        logging.getLogger("initlab.run").info("ok: test_acc 0.97")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("old API is deprecated", DeprecationWarning, stacklevel=1)
        route_terminal(sweep_job=True)  # again, for a job of a sweep: warnings and errors only
        assert sum(isinstance(f, TerminalFilter) for f in term.filters) == 1
        logging.getLogger("initlab.run").info("resuming from last.ckpt")
        logging.getLogger("initlab.data").warning("FALLING BACK to 5,000 digits")
    finally:
        logging.captureWarnings(False)
        for h in (term, file):
            root.removeHandler(h)
            h.close()
        root.setLevel(level)
        for lg, handlers, propagate in lightning.values():
            lg.handlers[:] = handlers
            lg.propagate = propagate
    shown = term.stream.getvalue()
    assert shown.splitlines() == [
        "a Lightning error",
        "ok: test_acc 0.97",
        "FALLING BACK to 5,000 digits",
    ]
    kept = (tmp_path / "train.log").read_text()
    for line in ("GPU available", "epoch 1/2 step 13", "is deprecated", "resuming from"):
        assert line in kept


# -- the job lines and the end of a sweep, unit by unit ------------------------------------------
def _results(directory: Path, rec: dict, age_s: float = 0.0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "results.json"
    path.write_text(json.dumps(rec))
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))
    return directory


def test_job_lines_count_jobs_time_them_and_name_them(tmp_path, capsys):
    progress = hc.SweepProgress(total=4, varying=["init"])
    progress.started = time.time() - 10  # the sweep began 10 s ago
    ran = _results(tmp_path / "a", record("he", "none", 0, test=0.97))
    old = _results(tmp_path / "b", record("zero", "none", 0, test=0.1135), age_s=3600)
    failed = _results(tmp_path / "c", {**record("xavier", "none", 0), "status": "failed",
                                       "error": "ValueError: boom\nsecond line"})  # fmt: skip
    lines = [
        progress.job_done(ran, ["init=he", "seed=0"]),
        progress.job_done(old, ["init=zero", "seed=0"]),
        progress.job_done(failed, ["init=xavier", "seed=0"]),
        progress.job_done(tmp_path / "never", ["init=lsuv", "seed=0"]),
    ]
    assert lines == [
        "job 1/4 done (ok, test_acc 0.9700), elapsed 10s, ETA 30s: init=he",
        "job 2/4 skipped, already finished (ok, test_acc 0.1135), elapsed 10s, ETA 20s: init=zero",
        "job 3/4 done (failed: ValueError: boom second line), elapsed 10s, ETA 5s: init=xavier",
        "job 4/4 done (no results.json), elapsed 10s: init=lsuv",
    ]
    assert capsys.readouterr().out.splitlines() == lines
    assert hc.duration(59.6) == "1m00s" and hc.duration(3725) == "1h02m"


def test_the_plan_line_counts_the_grid_or_the_trials(monkeypatch, capsys):
    monkeypatch.setattr(hc, "_sweep", None)
    grid = OmegaConf.create(
        {
            "hydra": {
                "sweeper": {
                    "_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                    "params": {"seed": "0,1,2"},
                },  # fmt: skip
                "overrides": {"task": ["init=zero,he", "norm=none", "seed=0,1"]},
                "sweep": {"dir": "/x/sweep"},
            }
        }
    )
    progress = hc.start_sweep(grid)
    # the command line's seed=0,1 replaces the sweeper's params (Hydra's basic sweeper)
    assert capsys.readouterr().out == "sweep: 4 jobs (seed: 0, 1; init: zero, he) -> /x/sweep\n"
    assert progress.total == 4 and progress.varying == {"init", "seed"}
    search = OmegaConf.create(
        {"hydra": {"sweeper": {"_target_": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper."
                               "OptunaSweeper", "n_trials": 20}, "sweep": {"dir": "/x/s"}}}
    )  # fmt: skip
    assert hc.start_sweep(search).total == 20
    assert capsys.readouterr().out == "sweep: 20 trials -> /x/s\n"


def test_the_end_shows_the_top_rows_of_summary_md(tmp_path):
    rows = [f"| init{i} | none | 1 | 1 ok | 0.{90 + i} |" for i in range(7)]
    (tmp_path / "summary.md").write_text(
        "# Sweep report\n\ntext | with a pipe\n\n| init | norm | n | status | test acc |\n"
        "|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n| second | table |\n"
    )
    lines = hc.top_rows(tmp_path / "summary.md", n=5)
    assert lines[0] == "init   norm  n  status  test acc"
    assert lines[1] == "init0  none  1  1 ok    0.90"
    assert len(lines) == 7 and lines[-1] == "(2 more rows in summary.md)"


# -- start-up: help and tab completion without torch ---------------------------------------------
def test_help_lists_the_groups_and_examples_without_importing_torch(tmp_path):
    proc = _python(["-X", "importtime", str(TRAIN), "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = _imported(proc.stderr)
    assert "hydra" in imported  # the check sees the imports
    assert not {m for m in imported if m.split(".")[0] in HEAVY}
    text = proc.stdout
    assert "== Config groups (group=option) ==" in text and "README.md" in text
    assert re.search(r"^init: .*\bxavier\b", text, re.M) and re.search(r"^norm: ", text, re.M)
    assert len(re.findall(r"^  python train\.py", text, re.M)) == 5
    assert "$APP_CONFIG_GROUPS" not in text and "== Config ==" not in text


def test_tab_completion_does_not_import_torch(tmp_path):
    proc = _python(
        ["-X", "importtime", str(TRAIN), "-sc", "query=bash"],
        tmp_path,
        env={"COMP_LINE": "python train.py init=xa", "COMP_POINT": "26"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["init=xavier", "init=xavier_normal"]
    assert not {m for m in _imported(proc.stderr) if m.split(".")[0] in HEAVY}


def test_hydra_help_lists_each_launcher_once_and_says_what_it_is(tmp_path):
    proc = _python([str(TRAIN), "--hydra-help"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (listed,) = re.findall(r"^hydra/launcher: (.*)$", proc.stdout, re.M)
    names = listed.split(", ")
    assert "local" in names and "initlab_local" not in names and len(set(names)) == len(names)
    explained = proc.stdout.split("== Launchers", 1)[1]
    for name in names:
        assert re.search(rf"^  (?:\S+, )?{name}\b", explained, re.M), name


def test_the_scripts_help_says_what_they_write_and_their_groups(tmp_path):
    report = _python([str(ROOT / "scripts" / "report.py"), "--help"], tmp_path)
    assert report.returncode == 0 and "summary.md" in report.stdout and not report.stderr
    prop = _python([str(ROOT / "scripts" / "propagate.py"), "--help"], tmp_path)
    assert prop.returncode == 0, prop.stderr[-2000:]
    assert "propagation.json" in prop.stdout
    section = prop.stdout.split("== Config groups (group=option) ==\n", 1)[1].split("\n\n")[0]
    groups = [line.split(":")[0] for line in section.splitlines()]
    assert groups == ["init", "norm", "model", "data"]  # conf/propagate.yaml's, no others


# -- start-up: bad input refused, and help printed, before torch loads ---------------------------
# (entry point, its arguments, exit status, what its last line says). Each is refused (or its
# help printed) by what needs no torch: torch, Lightning and torchvision take seconds to import,
# which a refusal of a typo must not wait for (``initlab.config.validate``: torch-free checks
# first; the scripts parse their arguments before importing them).
NO_TORCH = [
    ("train.py", ["model.depth=0"], 2, "model.depth=0 must be a positive integer"),
    ("train.py", ["optimizer.lr=-1"], 2, "optimizer.lr=-1 must be a number > 0"),
    ("train.py", ["init=xavier", "init.gain=-1"], 2, "init.gain=-1 must be a number > 0"),
    ("train.py", ["+model.dept=3"], 2, "model.dept is not a key of 'model'"),
    # a sweep whose later job is bad: every job's torch-free checks come before any torch check
    ("train.py", ["-m", "model.depth=2,0"], 2, "model.depth=0 must be a positive integer"),
    ("train.py", ["-m", "init=he,xavier", "optimizer.lr=0.1,-1"], 2, "optimizer.lr=-1 must be"),
    ("train.py", ["-m", "data.fallback=true,false", "data.download=false"], 2, "MNIST is not in"),
    ("train.py", ["-m", "hparams_search=gain", "optimizer.lr=interval(-1,0.1)"], 2, "lower bound"),
    ("scripts/propagate.py", ["model.depth=0"], 2, "model.depth=0 must be a positive integer"),
    ("scripts/propagate.py", ["propagate.seeds=1"], 2, "propagate.seeds=1 must be an integer >= 2"),
    ("scripts/propagate.py", ["+model.dept=3"], 2, "model.dept is not a key of 'model'"),
    ("scripts/propagate.py", ["optimizer.lr=1"], 2, "optimizer.lr is not a key of the config"),
    ("scripts/propagate.py", ["-m", "model.depth=2,0"], 2, "model.depth=0 must be a positive"),
    ("scripts/propagate.py", ["--plot"], 2, "usage: python scripts/propagate.py --plot"),
    ("scripts/propagate.py", ["--plot", "nowhere"], 2, "cannot plot nowhere"),
    ("scripts/propagate.py", ["--help"], 0, "Its own settings: propagate.inputs, propagate.n_"),
    ("scripts/bench.py", ["--bogus"], 2, "unrecognized arguments: --bogus"),
    ("scripts/bench.py", ["--variants", "AX"], 2, "argument --variants"),
    ("scripts/bench.py", ["--epochs", "0"], 2, "argument --epochs"),
    ("scripts/bench.py", ["--help"], 0, "--data-root"),
    ("scripts/tutorial_loop.py", [], 2, "the following arguments are required: --data-root"),
    ("scripts/tutorial_loop.py", ["--data-root", "nowhere"], 2, "argument --data-root"),
    ("scripts/tutorial_loop.py", ["--help"], 0, "--data-root"),
    ("scripts/report.py", [], 2, "usage: python scripts/report.py"),
    ("scripts/report.py", ["nowhere"], 2, "nowhere is not a directory"),
    ("scripts/report.py", ["--help"], 0, "summary.md"),
]


@pytest.mark.parametrize(
    ("entry", "args", "status", "line"),
    NO_TORCH,
    ids=[f"{e.rsplit('/', 1)[-1]} {' '.join(a) or '(no arguments)'}" for e, a, *_ in NO_TORCH],
)
def test_bad_input_and_help_come_before_torch_loads(tmp_path, entry, args, status, line):
    proc = _python(["-X", "importtime", str(ROOT / entry), *args], tmp_path)
    said = [ln for ln in proc.stderr.splitlines() if not ln.startswith("import time:")]
    last = (proc.stdout if status == 0 else "\n".join(said)).strip().splitlines()
    assert proc.returncode == status, "\n".join(said)[-3000:]
    assert last and (line in last[-1] if status else line in proc.stdout), last[-5:]
    heavy = {m for m in _imported(proc.stderr) if m.split(".")[0] in HEAVY}
    assert not heavy, f"imported {sorted(heavy)[:5]}"
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_every_entry_point_is_checked_for_a_refusal_and_its_help_without_torch():
    """A new script in scripts/ gets its bad input and --help into NO_TORCH."""
    scripts = {
        f"scripts/{p.name}"
        for p in (ROOT / "scripts").glob("*.py")
        if 'if __name__ == "__main__":' in p.read_text()
    }
    checked = {e for e, _, status, _ in NO_TORCH if status == 2}
    helped = {e for e, args, status, _ in NO_TORCH if status == 0 and "--help" in args}
    assert scripts | {"train.py"} <= checked
    assert scripts <= helped  # train.py's: test_help_lists_the_groups_and_examples_without_...
