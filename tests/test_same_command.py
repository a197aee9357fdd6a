"""The same command again resumes, with the default timestamped directories: it finds the
unfinished run or sweep it started (``initlab.rerun``); and the command printed at a stop, which
names the directory, pastes into a shell as printed."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hypothesis import given, settings
from hypothesis import strategies as st

from initlab.cli import Checked
from initlab.rerun import find_unfinished, quoted_override, resume_command
from initlab.rundir import RunDir

from .conftest import LONG_RUN, run_train, start_train

LONG = [*LONG_RUN, "logger=none"]


def _stop(args: list[str], cwd: Path, wait: str) -> tuple[str, Path]:
    """Start train.py with ``args`` in ``cwd``, Ctrl-C it once ``wait`` (a glob below cwd)
    exists; its output and the directory it made."""
    proc = start_train(args, cwd)
    deadline = time.monotonic() + 300
    while not (found := sorted(cwd.glob(wait))):
        assert proc.poll() is None, "it ended first:\n" + proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, f"{wait} never appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output[-3000:]
    return output, found[0]


def _again(command: list[str] | str, cwd: Path) -> subprocess.CompletedProcess:
    """train.py again from ``cwd``: with ``command``'s arguments (run_train), or the printed
    ``command`` pasted into bash, in run_train's environment."""
    if not isinstance(command, str):
        return run_train(command, cwd)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, capture_output=True, text=True, env=env, timeout=300
    )


def _printed_command(output: str) -> str:
    lines = output.splitlines()
    at = next(i for i, line in enumerate(lines) if "naming its directory:" in line)
    return lines[at + 1].strip()


def test_the_same_command_resumes_a_stopped_run_in_its_timestamped_directory(tmp_path):
    args = [*LONG, "init=xavier"]
    output, ckpt = _stop(args, tmp_path, "outputs/runs/*/*/checkpoints/last.ckpt")
    run_dir = ckpt.parents[1]
    assert "init=xavier" in run_dir.name  # named after its overrides, and its time
    again = _again(args, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"continuing the unfinished run in {run_dir.relative_to(tmp_path)}" in again.stderr
    assert "resuming from" in (run_dir / "train.log").read_text()
    assert json.loads((run_dir / "results.json").read_text())["status"] == "ok"
    assert list((tmp_path / "outputs" / "runs").glob("*/*")) == [run_dir]  # no new directory
    # finished now: the same command once more is a new run, in a new directory
    assert "continuing" not in _again([*args, "trainer.max_epochs=1"], tmp_path).stderr


def test_the_printed_command_pasted_into_a_shell_resumes_the_run(tmp_path):
    args = [*LONG, "model.hidden_sizes=[64,32]"]  # a name with '=', ',', '[' and ']'
    output, ckpt = _stop(args, tmp_path, "outputs/runs/*/*/checkpoints/last.ckpt")
    run_dir = ckpt.parents[1]
    printed = _printed_command(output)
    assert "hydra.run.dir=" in printed
    # another unfinished run of the same command, newer: the printed one names its own
    newer = run_dir.parent / ("99-" + run_dir.name[3:])
    (newer / ".hydra").mkdir(parents=True)
    (newer / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(args))
    again = _again(printed, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" in (run_dir / "train.log").read_text()
    assert json.loads((run_dir / "results.json").read_text())["status"] == "ok"
    assert not (newer / "results.json").exists()


def test_the_same_command_finishes_a_stopped_sweep_in_its_directory(tmp_path):
    args = ["-m", "seed=0,1", *LONG, "trainer.max_epochs=4"]
    output, ckpt = _stop(args, tmp_path, "outputs/multirun/*/*/*seed=1*/checkpoints/last.ckpt")
    sweep = ckpt.parents[2]
    assert "naming its directory:" in output
    again = _again(args, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert f"continuing the unfinished sweep in {sweep.relative_to(tmp_path)}" in log
    assert "job 1/2 skipped, already finished" in log
    assert "2 ok, 0 diverged, 0 failed, 0 unreadable" in log
    assert list((tmp_path / "outputs" / "multirun").glob("*/*")) == [sweep]


# -- the search, without training: directories made by hand --------------------------------
def _run_dir(root: Path, name: str, overrides: list[str], status: str | None) -> Path:
    path = root / name
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if status is not None:
        (path / "results.json").write_text(json.dumps({"status": status}))
    return path


_HOLD = """
import sys, time
from initlab.rundir import RunDir
RunDir(sys.argv[1]).claim()
print("held", flush=True)
time.sleep(60)
"""


def test_find_unfinished_takes_the_newest_unfinished_run_of_the_same_command(tmp_path, monkeypatch):
    monkeypatch.setattr("initlab.rerun.finished", lambda p: (p / "results.json").exists())
    cmd = ["init=he", "norm=none"]
    runs = tmp_path / "outputs" / "runs"
    old = _run_dir(runs, "d1/10-00-00_x", cmd, None)
    _run_dir(runs, "d1/11-00-00_x", cmd, "ok")  # finished: skipped
    _run_dir(runs, "d1/12-00-00_x", ["norm=none"], None)  # another command
    reordered = _run_dir(runs, "d1/13-00-00_x", list(reversed(cmd)), None)
    _run_dir(runs, "d2/09-00-00_y", cmd, None)  # does not match the pattern
    pattern = str(runs / "*" / "*_x")
    assert find_unfinished(pattern, cmd, None, ".hydra") == reordered
    assert find_unfinished(pattern, cmd, None, ".hydra", exclude=reordered) == old
    holder = subprocess.Popen(  # another process runs there: left alone
        [sys.executable, "-c", _HOLD, str(reordered)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert RunDir(reordered).holder() is not None
        assert find_unfinished(pattern, cmd, None, ".hydra") == old
    finally:
        holder.kill()
        holder.wait()
    assert find_unfinished(pattern, cmd, None, None) is None  # no record of the overrides


# -- the printed command: a shell and Hydra read back exactly the directory -----------------
_DIR_CHARS = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/"), min_size=1
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(names=st.lists(_DIR_CHARS, min_size=1, max_size=3), multirun=st.booleans())
def test_the_printed_command_reads_back_as_the_directory_in_a_shell_and_in_hydra(names, multirun):
    out = Path("outputs", *names)
    checked = Checked(multirun, out)
    argv = ["python", "train.py", "model.hidden_sizes=[64,32]", f"hydra.sweep.dir={names[0]}"]
    line = resume_command(argv, checked.pinned())
    words = shlex.split(line)  # as bash splits it (shlex is POSIX-mode sh)
    assert words[:3] == argv[:3]
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    pins = [w for w in words if w.split("=", 1)[0] == key]
    assert pins == [quoted_override(key, str(out))]
    assert OverridesParser.create().parse_override(pins[0]).value() == str(out)


@pytest.mark.parametrize("name", ["10-00-00_init=he,norm=none", 'it\'s $HOME `x` \\ "q" !'])
def test_bash_reads_the_printed_command_as_printed(tmp_path, name):
    out = Path("outputs", name)
    line = resume_command(["python", "train.py"], Checked(False, out).pinned())
    echoed = subprocess.run(
        ["bash", "-c", 'printf "%s\\n" ' + line.split(" ", 2)[2]], capture_output=True, text=True
    )
    value = echoed.stdout.rstrip("\n")
    assert OverridesParser.create().parse_override(value).value() == str(out)
