"""Killed, interrupted and re-launched runs: nothing is lost and the results do not change."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from functools import partial
from pathlib import Path

import pytest
import torch

from initlab.run import run

from .conftest import FAST, LONG_RUN, compose_train, run_train, start_train, wait_for

ARGS = LONG_RUN  # 149 steps per epoch, 3 epochs: long enough to interrupt a run mid-way


def _train(out: Path, *extra: str) -> subprocess.Popen:
    return start_train([*ARGS, *extra, f"hydra.run.dir={out}"], cwd=out.parent)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, output[-3000:]
    return output


def _metrics(out: Path) -> dict:
    r = json.loads((out / "results.json").read_text())
    history = [{k: v for k, v in h.items() if k != "wall_s"} for h in r["history"]]
    return {"status": r["status"], "final": r["final"], "history": history}


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resume") / "uninterrupted"
    _finish(_train(out))
    return out


def _assert_same_run(a: Path, b: Path) -> None:
    assert _metrics(a) == _metrics(b)
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key  # bitwise: CPU, deterministic order


def test_sigkill_after_first_checkpoint_then_resume(tmp_path, reference):
    out = tmp_path / "killed"
    proc = _train(out)
    wait_for(out / "checkpoints" / "last.ckpt", proc)
    proc.kill()  # SIGKILL: nothing is saved beyond the epoch-end checkpoint
    proc.wait()
    assert not (out / "results.json").exists()
    output = _finish(_train(out))
    assert "resuming from" in output
    _assert_same_run(reference, out)


def test_sigterm_mid_epoch_checkpoints_and_resumes(tmp_path, reference):
    # Epoch 2 (149 steps) takes a few tenths of a second: a signal sent soon after epoch 1's
    # checkpoint lands inside it; should a slow start put it on the epoch's end, try sooner.
    for delay in (0.1, 0.03, 0.0):
        out = tmp_path / f"terminated-{delay}"
        proc = _train(out)
        wait_for(out / "checkpoints" / "last.ckpt", proc)  # epoch 1 done
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
        assert "stopped by SIGTERM" in output and "Traceback" not in output
        ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
        assert not (out / "results.json").exists()
        (loader,) = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]
        if ckpt["global_step"] % 149:
            break
    else:
        pytest.fail("every SIGTERM arrived at an epoch's end")
    # it stopped inside an epoch (149 steps each: 9,500 images), and the loader knew where
    assert ckpt["global_step"] % 149 == loader["batches_done"] > 0
    output = _finish(_train(out))
    assert "resuming from" in output
    _assert_same_run(reference, out)


def test_relaunch_skips_finished_runs_and_force_reruns(tmp_path, reference):
    out = tmp_path / "again"
    first = _finish(_train(out, "trainer.max_epochs=1"))
    assert "skipping" not in first
    before = (out / "results.json").read_text()
    second = _finish(_train(out, "trainer.max_epochs=1"))
    assert "already finished (status ok): skipping it" in second
    assert (out / "results.json").read_text() == before
    third = _finish(_train(out, "trainer.max_epochs=1", "force=true"))
    assert "skipping" not in third
    assert json.loads((out / "results.json").read_text())["status"] == "ok"


def test_half_written_results_are_not_trusted(tmp_path):
    """A truncated results.json does not count as a finished run: the run is done again."""
    (tmp_path / "results.json").write_text('{"status": "ok", "final": {"test_')
    r = run(compose_train(FAST), tmp_path, partial(torch.optim.SGD, lr=0.01))
    assert r["status"] == "ok" and "final" in r
    assert json.loads((tmp_path / "results.json").read_text())["final"] == r["final"]


def test_relaunched_sweep_skips_its_finished_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "init=zero,he", *FAST, f"hydra.sweep.dir={sweep}"]
    first = run_train(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    before = {p: p.read_text() for p in sweep.glob("*/results.json")}
    assert len(before) == 2
    second = run_train(args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("skipped, already finished (ok, ") == 2
    assert {p: p.read_text() for p in sweep.glob("*/results.json")} == before
    assert "2 ok, 0 diverged, 0 failed" in second.stdout + second.stderr
