"""The launchers of conf/hydra/launcher: local (N jobs at once) and slurm, with failure isolation.

The SLURM test submits for real when INITLAB_SLURM=1 (.ci/run sets it when
scripts/slurm/start.sh brought a local cluster up); otherwise it is skipped, saying so, and its
fallback runs the same sweep on submitit's local executor (hydra/launcher=slurm_local).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import OFFLINE, run_train, start_train

# Tiny jobs: 4 synthetic batches, no TensorBoard, no per-layer statistics.
SMOKE = ["debug=smoke", "logger=none", "diagnostics=off", "progress_bar=false"]
# smoke-sized training without debug=smoke (which would fix data=synthetic)
TINY = ["trainer.max_epochs=1", "+trainer.limit_train_batches=4", "trainer.val_check_interval=2",
        "trainer.log_every_n_steps=2"]  # fmt: skip
SWEEP_TIMEOUT_S = 300  # a sweep that has not returned by then has hung
HEADER = re.compile(r"(?:local|slurm|submitit local) launcher: job (\d+) of (\d+), .*")


def _results(sweep: Path) -> dict[str, dict]:
    """Each job dir's results.json, by job dir name."""
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/results.json")}


def _header(job_dir: Path) -> str:
    """The launcher's first line in the job's log (train.log)."""
    log = job_dir / "train.log"
    match = HEADER.search(log.read_text()) if log.is_file() else None
    assert match, f"no launcher line in {log}"
    return match.group(0)


def _start_sweep(args: list[str], cwd: Path) -> subprocess.Popen:
    return start_train(args, cwd)


def _wait_for_header(proc: subprocess.Popen, job_dir: Path, timeout: float) -> str:
    """Wait until the job's log has the launcher's line (the job is running); return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = job_dir / "train.log"
        if log.is_file() and (match := HEADER.search(log.read_text())):
            return match.group(0)
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    out = proc.communicate()[0]
    pytest.fail(f"job {job_dir.name} did not start within {timeout:.0f} s:\n{out[-3000:]}")


def _finish(proc: subprocess.Popen, returncode: int | None = None) -> str:
    """The sweep's output, once it ends (with ``returncode``, when given)."""
    try:
        out = proc.communicate(timeout=SWEEP_TIMEOUT_S)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        out = proc.communicate()[0]
        pytest.fail(f"the sweep hung (> {SWEEP_TIMEOUT_S} s):\n{out[-3000:]}")
    if returncode is not None:
        assert proc.returncode == returncode, out[-3000:]
    return out


# --- local -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gpus_seen", "kwargs", "expected"),
    [
        # no GPU: one job per core, cores // jobs threads; never more workers than jobs
        ([], dict(num_jobs=27, cpus=2), (2, 1, (None, None), False)),
        ([], dict(num_jobs=27, cpus=16, n_jobs=4), (4, 4, (None,) * 4, False)),
        ([], dict(num_jobs=1, cpus=2), (1, 2, (None,), False)),
        # k GPUs: k jobs at once, worker i on GPU i mod k
        (["0", "1"], dict(num_jobs=27, cpus=16), (2, 8, ("0", "1"), False)),
        (
            ["0", "1"],
            dict(num_jobs=27, cpus=16, gpus=[0, 0, 1, 1]),
            (4, 4, ("0", "0", "1", "1"), False),
        ),
        (["0", "1"], dict(num_jobs=27, cpus=16, n_jobs=3), (3, 5, ("0", "1", "0"), False)),
        # gpus=[] on a GPU machine: CPU jobs, GPUs hidden from the workers
        (["0"], dict(num_jobs=27, cpus=4, gpus=[]), (4, 1, (None,) * 4, True)),
    ],
)
def test_local_launcher_plan(monkeypatch, gpus_seen, kwargs, expected):
    from hydra_plugins.initlab_launchers import _common

    monkeypatch.setattr(_common, "visible_gpus", lambda: list(gpus_seen))
    plan = _common.plan_resources(**kwargs)
    assert (plan.n_jobs, plan.threads, plan.devices, plan.hide_gpus) == expected


def test_local_launcher_runs_two_jobs_at_once_one_thread_each(tmp_path):
    """2 jobs on 2 cores: two workers, 1 torch thread each; a job that raises (MNIST missing,
    the network down, no fallback) is recorded as failed by train.py and the sweep goes on to
    its tally, then exits 1 (a run failed)."""
    sweep = tmp_path / "sweep"
    proc = run_train(
        ["-m", "data=synthetic,mnist", f"data.root={tmp_path / 'no-data'}", "data.fallback=false"]
        + [*TINY, "logger=none", "diagnostics=off", "progress_bar=false"]
        + ["hydra/launcher=local", "hydra.launcher.cpus=2", "hydra.launcher.gpus=[]"]
        + [f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
        timeout=SWEEP_TIMEOUT_S,
        env=OFFLINE,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert "local launcher: 2 jobs, 2 jobs at once, 1 torch thread each (2 cores)" in out
    assert "1 ok, 0 diverged, 1 failed, 0 unreadable" in out
    results = _results(sweep)
    assert len(results) == 2, sorted(results)
    by_data = {r["config"]["data"]["name"]: r for r in results.values()}
    assert by_data["synthetic"]["status"] == "ok"
    assert by_data["mnist"]["status"] == "failed"
    assert "not downloadable" in by_data["mnist"]["error"]
    pids = set()
    for name in results:
        header = _header(sweep / name)
        assert ", 2 jobs at once, 1 torch thread, device cpu, worker pid " in header, header
        pids.add(header.rsplit(" ", 1)[-1])
    assert len(pids) == 2  # each job in its own worker, side by side
    assert "1 ok, 0 diverged, 1 failed" in out


def test_local_launcher_survives_a_killed_worker(tmp_path):
    """A worker killed mid-job: that job is recorded as failed, the other job's result stands,
    the sweep neither hangs nor stops early, and its exit status says a run failed (1)."""
    sweep = tmp_path / "sweep"
    proc = _start_sweep(
        ["-m", *SMOKE, "trainer.max_epochs=1,100000"]  # the second one runs until killed
        + ["hydra/launcher=local", "hydra.launcher.cpus=2", "hydra.launcher.gpus=[]"]
        + [f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
    )
    victim = next(iter(sweep.glob("*max_epochs=100000")), None)
    deadline = time.monotonic() + 120
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        victim = next(iter(sweep.glob("*max_epochs=100000")), None)
    assert victim is not None, "the long job never started"
    header = _wait_for_header(proc, victim, timeout=120)
    pid = int(header.rsplit(" ", 1)[-1])
    os.kill(pid, signal.SIGKILL)
    out = _finish(proc, returncode=1)
    results = _results(sweep)
    assert len(results) == 2, sorted(results)
    killed = results[victim.name]
    assert killed["status"] == "failed" and killed["recorded_by"] == "launcher"
    assert f"worker process {pid} was killed by SIGKILL" in killed["error"]
    assert killed["init"] == "he" and killed["max_epochs"] == 100000  # the job's own config
    others = [r for name, r in results.items() if name != victim.name]
    assert [r["status"] for r in others] == ["ok"]
    assert "1 ok, 0 diverged, 1 failed" in out


# --- slurm -----------------------------------------------------------------------------------


def _slurm_up() -> bool:
    return os.environ.get("INITLAB_SLURM") == "1"


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(stat.parent.name))
    return found


def _cluster_has_gpus() -> bool:
    out = subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True, check=True)
    return "gpu" in out.stdout


@pytest.mark.slurm
@pytest.mark.parametrize("backend", ["slurm", "slurm_local"])
def test_slurm_sweep_records_a_killed_job_as_failed(tmp_path, backend):
    """3 jobs through hydra/launcher=slurm, one of them killed (scancel --signal=KILL) while it
    runs: every job has its results.json (2 ok, the killed one failed, recorded by the
    launcher), the sweep returns with its tally, exit status 1 (a run failed).

    Without a cluster (INITLAB_SLURM unset) the slurm case is skipped, saying so, and the same
    sweep runs on submitit's local executor (slurm_local), the killed job a killed process.
    """
    if backend == "slurm" and not _slurm_up():
        pytest.skip(
            "no SLURM cluster (INITLAB_SLURM unset; scripts/slurm/start.sh starts one): "
            "FALLBACK: the same sweep ran on submitit's local executor (slurm_local) instead"
        )
    if backend == "slurm_local" and _slurm_up():
        pytest.skip("a SLURM cluster is up: the sweep ran through SLURM itself")
    if backend == "slurm":
        assert shutil.which("sbatch"), "INITLAB_SLURM=1 but there is no sbatch"
        resources = ["hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10"]
        if not _cluster_has_gpus():
            resources.append("hydra.launcher.gpus_per_node=null")
    else:
        resources = []
    sweep = tmp_path / "sweep"
    t0 = time.monotonic()
    proc = _start_sweep(
        ["-m", *SMOKE, "trainer.max_epochs=1,2,100000"]  # the last one runs until killed
        + [f"hydra/launcher={backend}", "hydra.launcher.cpus_per_task=1", *resources]
        + [f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
    )
    victim = sweep / "diagnostics=off,logger=none,trainer.max_epochs=100000"
    header = _wait_for_header(proc, victim, timeout=180)
    job_id = re.search(r"job (\S+) on ", header).group(1)
    if backend == "slurm":
        assert "slurm launcher: job 3 of 3, SLURM job " in header, header
        subprocess.run(["scancel", "--signal=KILL", job_id], check=True)
    else:
        assert "submitit local launcher: job 3 of 3, job " in header, header
        # the job id is submitit's controller process: kill the training task it runs too
        for pid in [*_children(int(job_id)), int(job_id)]:
            os.kill(pid, signal.SIGKILL)
    out = _finish(proc, returncode=1)
    elapsed = time.monotonic() - t0
    results = _results(sweep)
    assert len(results) == 3, sorted(results)
    killed = results.pop(victim.name)
    assert killed["status"] == "failed" and killed["recorded_by"] == "launcher"
    assert job_id in killed["error"] and "without a result" in killed["error"]
    assert [r["status"] for r in results.values()] == ["ok", "ok"]
    for name in results:
        header = _header(sweep / name)
        assert ", 1 torch thread, device " in header, header
        if backend == "slurm":
            assert "SLURM job" in header, header
    assert "2 ok, 0 diverged, 1 failed" in out
    print(f"{backend}: 3 jobs, one killed ({killed['error']}), sweep returned in {elapsed:.0f} s")


@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_requeued_job_resumes_in_its_output_dir(tmp_path):
    """A job signalled as preempted (USR2, as submitit's timeout signal) is checkpointed and
    requeued by submitit, runs again in the same output dir and finishes ok. Slow: SLURM holds a
    requeued job about two minutes before it starts again."""
    if not _slurm_up():
        pytest.skip("no SLURM cluster (INITLAB_SLURM unset; scripts/slurm/start.sh starts one)")
    resources = ["hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10"]
    if not _cluster_has_gpus():
        resources.append("hydra.launcher.gpus_per_node=null")
    sweep = tmp_path / "sweep"
    proc = _start_sweep(
        ["-m", *SMOKE, "trainer.max_epochs=300", "hydra/launcher=slurm"]
        + ["hydra.launcher.cpus_per_task=1", *resources, f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
    )
    job_dir = sweep / "diagnostics=off,logger=none,trainer.max_epochs=300"
    header = _wait_for_header(proc, job_dir, timeout=180)
    job_id = re.search(r"job (\S+) on ", header).group(1)
    time.sleep(2)  # a few epochs in
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    out = _finish(proc)
    assert proc.returncode == 0, out[-3000:]
    r = json.loads((job_dir / "results.json").read_text())
    assert r["status"] == "ok"
    headers = HEADER.findall((job_dir / "train.log").read_text())
    log = (job_dir / "train.log").read_text()
    assert len(headers) == 2 and f"SLURM job {job_id} on " in log
    assert "restart 0," in log and "restart 1," in log
    assert "1 ok, 0 diverged, 0 failed" in out
