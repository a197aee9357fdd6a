"""Exit status tells the truth, and a failure outside train.py's code never takes a sweep down.

0: every run finished (ok or diverged); 1: a run failed; 2: bad input; 128 + N: signal N stopped
it, with its checkpoint saved (130 Ctrl-C, 143 SIGTERM).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import yaml

from initlab.hydra_callbacks import SweepFailed, SweepSummary

from .conftest import FAST, LONG_RUN, OFFLINE, TRAIN, run_train, start_train, wait_for

LONG = [*LONG_RUN, "logger=none"]


# SIGTERM from outside, at an epoch's end; every other signal and moment (SIGINT, SIGUSR2, two
# Ctrl-C, inside a validation or the test) is drawn by test_lifecycle.py's property test.
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143)])
def test_a_stopped_run_exits_128_plus_the_signal_with_its_checkpoint(tmp_path, signum, code):
    out = tmp_path / "run"
    proc = start_train([*LONG, f"hydra.run.dir={out}"], tmp_path)
    wait_for(out / "checkpoints" / "last.ckpt", proc)  # epoch 1 done
    proc.send_signal(signum)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == code, output[-3000:]
    assert f"stopped by {signal.Signals(signum).name}" in output and "Traceback" not in output
    assert not (out / "results.json").exists()
    resumed = run_train([*LONG, f"hydra.run.dir={out}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout + resumed.stderr
    assert json.loads((out / "results.json").read_text())["status"] == "ok"


def test_an_interrupted_sweep_tallies_what_finished_and_exits_non_zero(tmp_path):
    sweep = tmp_path / "sweep"
    # 8 epochs of 149 steps: a job lasts seconds, long enough to be stopped in the middle
    args = ["-m", "seed=0,1,2", *LONG, "trainer.max_epochs=8", f"hydra.sweep.dir={sweep}"]
    proc = start_train(args, tmp_path)
    jobs = "data.synthetic_train=10000,data.val_size=500,data=synthetic,diagnostics=off,"
    jobs += "logger=none,seed={},trainer.max_epochs=8,trainer.val_check_interval=40"
    wait_for(sweep / jobs.format(0) / "results.json", proc)  # the first job finished
    wait_for(sweep / jobs.format(1) / "checkpoints" / "last.ckpt", proc)  # the second runs
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, output[-3000:]
    assert "sweep stopped by SIGTERM: 1 ok, 0 diverged, 0 failed, 0 unreadable" in output
    assert not (sweep / jobs.format(2)).exists()  # the sweep stopped: no job started after it
    again = run_train(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert "job 1/3 skipped, already finished (ok, " in log  # one line per job
    assert "resuming from" in (sweep / jobs.format(1) / "train.log").read_text()
    assert "3 ok, 0 diverged, 0 failed, 0 unreadable" in log


def test_a_sweep_with_a_failed_run_exits_1_after_its_tally_and_report(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.json").write_text(json.dumps({"status": "failed", "init": "he"}))
    config = {"hydra": {"sweep": {"dir": str(tmp_path)}}}
    from omegaconf import OmegaConf

    with pytest.raises(SweepFailed) as err:
        SweepSummary().on_multirun_end(OmegaConf.create(config))
    assert err.value.code == 1
    assert (tmp_path / "summary.md").exists()
    (tmp_path / "a" / "results.json").write_text("[]")  # unreadable: not a result either
    with pytest.raises(SweepFailed):
        SweepSummary().on_multirun_end(OmegaConf.create(config))


def test_a_job_dir_name_too_long_for_the_filesystem_is_shortened(tmp_path):
    """Hydra names a job's dir after its overrides: 70 hidden layers make a name over 255
    bytes, which no filesystem accepts. It is cut, with a hash of the whole name, and the full
    overrides stay in the job's .hydra/overrides.yaml."""
    sweep = tmp_path / "sweep"
    sizes = "[" + ",".join(["8"] * 70) + "]"
    args = ["-m", f"model.hidden_sizes={sizes}", "seed=0,1", *FAST, "diagnostics=off",
            "+trainer.limit_train_batches=2", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    proc = run_train(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 2 and len({p.name for p in jobs}) == 2
    for job in jobs:
        assert len(job.name.encode()) <= 255
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        assert f"model.hidden_sizes={sizes}" in overrides
        assert json.loads((job / "results.json").read_text())["hidden_sizes"] == [8] * 70
    again = run_train(args, cwd=tmp_path)  # the same names again: both runs are found, skipped
    assert again.stdout.count("skipped, already finished (ok, ") == 2


def test_batch_norm_with_a_last_batch_of_one_sample_finishes(tmp_path):
    """The issue's example: batch 81 over 55,000 images ends each epoch with 1 sample, which
    batch norm cannot train on. Here 801 images in batches of 100: the last one joins the
    batch before it (8 steps an epoch, every image trained on)."""
    args = ["norm=batchnorm", "data=synthetic", "data.val_size=199", "data.batch_size=100",
            "trainer.max_epochs=2", "trainer.val_check_interval=4", "diagnostics=off",
            "progress_bar=false", f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    proc = run_train(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["status"] == "ok"
    assert record["dataset"]["train"] == 801
    assert record["history"][-1]["step"] == 16
    assert record["timing"]["train_samples"] == 2 * 801


_FULL_DISK = """
set -u
mount -t tmpfs -o size=16m tmpfs "$MNT"
"$PY" -c "$FILL_AT_SECOND_SAVE" "$TRAIN" "$@" hydra.run.dir="$MNT/run" \
  > "$OUT/first.out" 2> "$OUT/first.err"
echo $? > "$OUT/first.rc"
ls "$MNT/run/checkpoints" > "$OUT/first.files"
rm -f "$MNT/filler"
"$PY" "$TRAIN" "$@" hydra.run.dir="$MNT/run" > "$OUT/second.out" 2>&1
echo $? > "$OUT/second.rc"
cp "$MNT/run/results.json" "$OUT/results.json"
"""
# train.py, as a user runs it, while another process fills the disk just before epoch 2's save
# (leaving 1 MiB: the logs still fit, the checkpoint does not); the disk had room at the start
_FILL_AT_SECOND_SAVE = """
import os, runpy, sys
import initlab.checkpoint as c
_save, saves = c.AtomicCheckpointIO.save_checkpoint, []
def save_checkpoint(self, checkpoint, path, *a, **k):
    saves.append(path)
    if len(saves) == 2:
        st = os.statvfs(os.environ["MNT"])
        with open(os.path.join(os.environ["MNT"], "filler"), "wb") as f:
            f.write(bytes(st.f_bavail * st.f_frsize - 2**20))
    return _save(self, checkpoint, path, *a, **k)
c.AtomicCheckpointIO.save_checkpoint = save_checkpoint
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_full_disk_stops_the_run_with_one_line_and_it_resumes_once_there_is_space(tmp_path):
    """The run dir on a 16 MiB tmpfs, which another process fills before epoch 2's save: epoch
    1's checkpoint (4.3 MB) is there, epoch 2's does not fit. The run stops with one line, exit
    1, epoch 1's checkpoint intact; with space again, the same command resumes it. In a private
    mount namespace; skipped where mounting is not permitted."""
    import os
    import shutil

    mnt, out = tmp_path / "mnt", tmp_path / "out"
    mnt.mkdir()
    out.mkdir()
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if shutil.which("unshare") is None or probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.strip()}")
    args = [*FAST, "trainer.max_epochs=2", "diagnostics=off", "logger=none"]
    env = {**os.environ, "MNT": str(mnt), "OUT": str(out), "PY": sys.executable}
    env["TRAIN"], env["FILL_AT_SECOND_SAVE"] = str(TRAIN), _FILL_AT_SECOND_SAVE
    subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", _FULL_DISK, "sh", *args],
        cwd=tmp_path,
        env=env,
        timeout=600,
        check=True,
    )
    first_err = (out / "first.err").read_text().strip().splitlines()
    assert (out / "first.rc").read_text().strip() == "1", first_err[-20:]
    assert first_err[-1].startswith("initlab: error: no space left on device while saving")
    assert "the previous checkpoint" in first_err[-1] and "is intact" in first_err[-1]
    assert "Traceback" not in "\n".join(first_err)
    assert (out / "first.files").read_text().split() == ["last.ckpt"]  # no temporary file
    assert (out / "second.rc").read_text().strip() == "0", (out / "second.out").read_text()
    assert "resuming from" in (out / "second.out").read_text()
    assert json.loads((out / "results.json").read_text())["status"] == "ok"


def test_a_sweep_whose_run_fails_goes_on_and_exits_1(tmp_path):
    """One job raises inside train.py (MNIST missing, the network down, no fallback): it is
    recorded as failed, the other job runs, and the sweep ends with its tally and exit 1."""
    sweep = tmp_path / "sweep"
    args = ["-m", "data=synthetic,mnist", f"data.root={tmp_path / 'no-data'}",
            "data.fallback=false", "trainer.max_epochs=1", "+trainer.limit_train_batches=4",
            "trainer.val_check_interval=2", "diagnostics=off", "logger=none",
            "progress_bar=false", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    proc = run_train(args, cwd=tmp_path, env=OFFLINE)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "sweep finished: 1 ok, 0 diverged, 1 failed, 0 unreadable" in proc.stdout + proc.stderr
    records = [json.loads(p.read_text()) for p in sweep.glob("*/results.json")]
    failed = [r for r in records if r["status"] == "failed"]
    assert len(records) == 2 and len(failed) == 1
    assert (
        failed[0]["config"]["data"]["name"] == "mnist" and "not downloadable" in failed[0]["error"]
    )
