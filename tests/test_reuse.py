"""Re-running in a run dir: the run there must be the run asked for (its fingerprint).

The same run finished is skipped, unfinished it resumes, with a larger budget it is extended;
any other setting or other data is refused with one line, and nothing there is touched.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from initlab import data as data_module
from initlab import mnist_files
from initlab.fingerprint import determining, differences, fingerprint
from initlab.run import RunMismatch, run

from .conftest import FAST, compose_train, run_train

SGD = partial(torch.optim.SGD, lr=0.01, momentum=0.5)
QUICK = [*FAST, "diagnostics=off", "logger=none"]


def _files(out: Path) -> dict[str, bytes]:
    """Every file below ``out``, by relative path: what a refusal must leave as it was."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _metrics(record: dict) -> dict:
    history = [{k: v for k, v in h.items() if k != "wall_s"} for h in record["history"]]
    return {"status": record["status"], "final": record["final"], "history": history}


def _run(out: Path, *overrides: str, base: tuple[str, ...] = tuple(QUICK)) -> dict:
    cfg = compose_train([*base, *overrides])
    return run(cfg, out, partial(torch.optim.SGD, **_sgd(cfg)))


def _plain(overrides: list[str]) -> dict:
    return OmegaConf.to_container(compose_train(overrides), resolve=True)


def _sgd(cfg) -> dict:
    return {k: v for k, v in cfg.optimizer.items() if not k.startswith("_")}


# -- what determines a run -----------------------------------------------------------------------
def test_the_fingerprint_leaves_out_bookkeeping_and_keeps_what_determines_the_result():
    cfg = _plain(QUICK)
    keys = determining(cfg, budget_steps=26)
    kept = ["seed", "init.name", "optimizer.lr", "data.batch_size", "budget.steps",
            "model.depth", "norm.name", "data.split_seed", "trainer.val_check_interval",
            ]  # fmt: skip
    # the budget is one number: the keys it is made of are not compared themselves
    left_out = ["data.root", "data.download", "data.fallback", "progress_bar", "force",
                "steps_per_execution", "logger.type", "diagnostics.enabled", "thresholds",
                "checkpoint.signals", "trainer.enable_model_summary", "trainer.max_epochs",
                ]  # fmt: skip
    assert [k for k in kept if k not in keys] == []
    assert [k for k in left_out if k in keys] == []
    a = fingerprint(cfg, {"name": "synthetic", "files": {"x": "1"}})
    b = fingerprint(_plain([*QUICK, "data.root=/elsewhere", "progress_bar=true"]), a["dataset"])
    assert a == b
    c = fingerprint(cfg, {"name": "synthetic", "files": {"x": "2"}})
    assert differences(a, c) == {"dataset.files.x": ("1", "2")}


# -- refused: another configuration, another dataset, an older record ----------------------------
def test_a_finished_run_with_another_setting_is_refused_and_left_as_it_was(tmp_path):
    _run(tmp_path)
    before = _files(tmp_path)
    with pytest.raises(RunMismatch) as err:
        _run(tmp_path, "optimizer.lr=0.5")
    message = str(err.value)
    assert "optimizer.lr 0.01 in the run, 0.5 now" in message and "force=true" in message
    assert "\n" not in message
    assert _files(tmp_path) == before


def test_an_unfinished_run_with_another_setting_is_refused(tmp_path):
    """The issue's example: resuming with optimizer.lr=0.5 trained on at the checkpoint's 0.01
    while results.json said 0.5."""
    _run(tmp_path, "trainer.max_epochs=2")
    (tmp_path / "results.json").unlink()  # as a run killed before it finished leaves it
    before = _files(tmp_path)
    with pytest.raises(RunMismatch, match=r"unfinished run .*optimizer.lr 0.01 in the run, 0.5"):
        _run(tmp_path, "trainer.max_epochs=2", "optimizer.lr=0.5")
    assert _files(tmp_path) == before
    resumed = _run(tmp_path, "trainer.max_epochs=2")  # the same settings resume
    assert resumed["status"] == "ok" and resumed["optimizer"]["lr"] == 0.01


def test_the_command_line_refuses_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    args = [*QUICK, f"hydra.run.dir={out}"]
    first = run_train(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    before = _files(out)
    proc = run_train([*args, "optimizer.lr=0.5"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "optimizer.lr 0.01 in the run, 0.5 now" in proc.stderr and "force=true" in proc.stderr
    assert _files(out) == before
    forced = run_train([*args, "optimizer.lr=0.5", "force=true"], cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert json.loads((out / "results.json").read_text())["optimizer"]["lr"] == 0.5


def test_a_sweep_dir_rerun_without_debug_smoke_is_refused(tmp_path):
    """The issue's example: rerunning a sweep dir after debug=smoke reported the smoke runs."""
    sweep = tmp_path / "sweep"
    common = ["-m", "init=zero,he", "progress_bar=false", f"hydra.sweep.dir={sweep}"]
    smoke = run_train([*common, "debug=smoke"], cwd=tmp_path)
    assert smoke.returncode == 0, smoke.stderr[-3000:]
    before = _files(sweep)
    proc = run_train(common, cwd=tmp_path)  # the same jobs, the same dirs, no longer smoke
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "holds a finished run (ok) of another configuration" in proc.stderr
    assert "data.name 'synthetic' in the run, 'mnist' now" in proc.stderr
    assert _files(sweep) == before


def _fake_mnist(root: Path, seed: int) -> dict[str, tuple[int, int, str]]:
    """Small MNIST-format files (20 train, 10 test) whose content depends on ``seed``."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    checks = {}
    for prefix, n in (("train", 20), ("t10k", 10)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        for kind, array, magic in (("images-idx3", images, 2051), ("labels-idx1", labels, 2049)):
            header = bytes([0, 0, 8, array.ndim]) + b"".join(
                int(d).to_bytes(4, "big") for d in array.shape
            )
            content = header + array.tobytes()
            name = f"{prefix}-{kind}-ubyte"
            (raw / f"{name}.gz").write_bytes(gzip.compress(content))
            checks[name] = (len(content), magic, hashlib.md5(content).hexdigest())
    return checks


def test_the_same_config_on_other_data_is_refused(tmp_path, monkeypatch):
    """The dataset's identity is the checksums of the files read, not the path: other files
    under the same settings are another run."""
    a, b = tmp_path / "a", tmp_path / "b"
    checks_a, checks_b = _fake_mnist(a, 0), _fake_mnist(b, 1)
    monkeypatch.setattr(data_module, "MNIST_SIZES", {"train": 20, "test": 10})
    monkeypatch.setattr(mnist_files, "MNIST_CHECKS", checks_a)
    args = ["data.val_size=10", "data.batch_size=5", "data.eval_batch_size=10"]
    base = tuple(o for o in QUICK if o != "data=synthetic")
    _run = partial(globals()["_run"], base=base)
    out = tmp_path / "run"
    record = _run(out, *args, f"data.root={a}")
    assert record["dataset"]["files"] == {k: v[2] for k, v in checks_a.items()}
    monkeypatch.setattr(mnist_files, "MNIST_CHECKS", checks_b)
    before = _files(out)
    with pytest.raises(RunMismatch, match=r"dataset.files.train-images-idx3-ubyte"):
        _run(out, *args, f"data.root={b}")
    assert _files(out) == before
    # the same files somewhere else are the same data: the finished run is skipped
    monkeypatch.setattr(mnist_files, "MNIST_CHECKS", checks_a)
    moved = tmp_path / "moved"
    a.rename(moved)
    assert _run(out, *args, f"data.root={moved}") == json.loads((out / "results.json").read_text())


@pytest.mark.mnist
def test_fixing_data_root_after_a_fallback_run_is_refused(tmp_path, mnist_root):
    """The issue's example: the first sweep fell back to the 5k set; rerunning with data.root
    fixed must not report the fallback runs as MNIST runs."""
    out = tmp_path / "run"
    args = ["trainer.max_epochs=1", "+trainer.limit_train_batches=3", "diagnostics=off",
            "logger=none", "progress_bar=false", f"hydra.run.dir={out}"]  # fmt: skip
    first = run_train([*args, f"data.root={tmp_path / 'empty'}", "data.download=false"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert json.loads((out / "results.json").read_text())["dataset"]["name"] == "mnist-embedded-5k"
    proc = run_train([*args, f"data.root={mnist_root}"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "dataset.name 'mnist-embedded-5k' in the run, 'mnist' now" in proc.stderr


def test_a_record_without_a_fingerprint_is_not_trusted(tmp_path):
    _run(tmp_path)
    record = json.loads((tmp_path / "results.json").read_text())
    del record["fingerprint"]  # as an initlab before fingerprints wrote it
    (tmp_path / "results.json").write_text(json.dumps(record))
    with pytest.raises(RunMismatch, match="without a fingerprint"):
        _run(tmp_path)


# -- allowed: bookkeeping, thresholds, a larger budget ------------------------------------------
def test_bookkeeping_changes_skip_the_finished_run(tmp_path):
    first = _run(tmp_path)
    for change in (["progress_bar=true"], ["diagnostics=default"], ["logger=tensorboard"],
                   ["steps_per_execution=1"], ["data.root=/somewhere/else"]):  # fmt: skip
        assert _run(tmp_path, *change) == first, change


def test_other_thresholds_are_recomputed_from_the_history(tmp_path):
    first = _run(tmp_path)
    again = _run(tmp_path, "thresholds=[0.5,0.99]")
    assert set(again["steps_to_val_acc"]) == {"0.50", "0.99"}
    reached = next(h["step"] for h in first["history"] if h["val_acc"] >= 0.5)
    assert again["steps_to_val_acc"]["0.50"] == reached
    assert again["final"] == first["final"] and again["history"] == first["history"]
    assert json.loads((tmp_path / "results.json").read_text()) == again


def test_a_finished_run_is_extended_exactly_as_if_it_had_run_longer(tmp_path):
    longer = _run(tmp_path / "two", "trainer.max_epochs=2")
    _run(tmp_path / "extended", "trainer.max_epochs=1")
    extended = _run(tmp_path / "extended", "trainer.max_epochs=2")
    assert extended["max_epochs"] == 2
    assert _metrics(extended) == _metrics(longer)
    a = torch.load(tmp_path / "two" / "checkpoints" / "last.ckpt", weights_only=False)
    b = torch.load(tmp_path / "extended" / "checkpoints" / "last.ckpt", weights_only=False)
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    # a budget cannot shrink below what was trained
    before = _files(tmp_path / "extended")
    with pytest.raises(RunMismatch, match=r"budget\.steps 26 in the run, 13 now"):
        _run(tmp_path / "extended", "trainer.max_epochs=1")
    assert _files(tmp_path / "extended") == before


def test_the_checkpoint_carries_the_fingerprint_of_results_json(tmp_path):
    record = _run(tmp_path)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["initlab"]["fingerprint"]["sha256"] == record["fingerprint"]


def test_the_optimizer_in_results_json_is_the_one_built(tmp_path):
    """Every hyperparameter the optimizer trained with, as torch states it, not the config's."""
    record = _run(tmp_path, "+optimizer.weight_decay=0.001")
    built = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01, momentum=0.5,
                            weight_decay=0.001)  # fmt: skip
    expected = {k: v for k, v in built.defaults.items()}
    assert record["optimizer"] == {"name": "sgd", **expected}


def test_an_unfinished_run_cannot_resume_under_a_budget_it_has_trained_past(tmp_path):
    _run(tmp_path, "trainer.max_epochs=2")
    (tmp_path / "results.json").unlink()  # killed after its last checkpoint (epoch 2)
    before = _files(tmp_path)
    with pytest.raises(RunMismatch, match="unfinished run that has trained 26 steps, past the 13"):
        _run(tmp_path, "trainer.max_epochs=1")
    assert _files(tmp_path) == before
    assert _run(tmp_path, "trainer.max_epochs=3")["max_epochs"] == 3  # a larger one resumes
