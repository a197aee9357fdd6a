"""End to end: the library's run() and train.py as a user runs it."""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from initlab.dashboard import (
    DIVERGED,
    TEST_ACC,
    TEST_LOSS,
    TRAIN_ACC,
    TRAIN_LOSS,
    VAL_ACC,
    VAL_AUC,
    VAL_LOSS,
)
from initlab.mnist_files import MNIST_FILES
from initlab.results import STATUSES, threshold_key
from initlab.run import record_failure, run

from .conftest import CONF, FAST, compose_train, run_train

SGD = partial(torch.optim.SGD, lr=0.01, momentum=0.5)
REQUIRED = [
    "status", "init", "norm", "activation", "depth", "hidden_sizes", "seed", "optimizer",
    "batch_size", "max_epochs", "dataset", "final", "history", "steps_to_val_acc", "timing",
]  # fmt: skip
FINAL = ["train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"]


def _check_results(path: Path) -> dict:
    r = json.loads(path.read_text())
    missing = [k for k in REQUIRED if k not in r]
    assert not missing, f"results.json lacks {missing}"
    assert r["status"] in STATUSES
    evaluated = ["train_eval_loss", "train_eval_acc"] if "train_eval" in r["dataset"] else []
    assert sorted(r["final"]) == sorted(FINAL + evaluated)  # the training subset: debug=smoke's
    assert set(r["optimizer"]) >= {"name", "lr", "momentum", "dampening", "weight_decay"}
    assert set(r["dataset"]) == {"name", "train", "val", "test", "files"} | (
        {"train_eval"} if evaluated else set()
    )
    assert isinstance(r["fingerprint"], str) and len(r["fingerprint"]) == 64
    asked = r["config"]["thresholds"]  # the defaults, or an experiment's own (isometry's)
    assert set(r["steps_to_val_acc"]) == {threshold_key(t) for t in asked}
    assert set(r["timing"]) >= {"wall_s", "train_s", "val_s", "test_s", "train_samples_per_s"}
    for h in r["history"]:
        assert set(h) == {
            "step",
            "epoch",
            "val_loss",
            "val_acc",
            "train_loss",
            "wall_s",
            *evaluated,
        }
    assert set(r["seconds_to_val_acc"]) == set(r["steps_to_val_acc"])
    if r["status"] == "ok":
        assert r["history"][0]["step"] == 0 and r["history"][0]["train_loss"] is None
        assert 0 <= r["auc_val_acc"] <= 1
    return r


def _scalars(logdir: Path) -> set[str]:
    ea = EventAccumulator(str(logdir))
    ea.Reload()
    return set(ea.Tags()["scalars"])


def test_the_training_subset_is_evaluated_without_changing_the_training(tmp_path):
    """data.train_eval_size: the same images for every seed, evaluated at every validation
    (history, final, TensorBoard); the weights and every other number equal those of the run
    without it, bit for bit; the record says how the arithmetic was done."""
    from initlab.dashboard import TRAIN_EVAL_ACC, TRAIN_EVAL_LOSS

    base = [*FAST, "trainer.max_epochs=2", "diagnostics=off"]
    plain = run(compose_train(base), tmp_path / "plain", SGD)
    with_eval = {
        seed: run(
            compose_train([*base, "data.train_eval_size=300", f"seed={seed}"]),
            tmp_path / f"eval{seed}",
            SGD,
        )
        for seed in (0, 1)
    }
    r = with_eval[0]
    assert r["dataset"]["train_eval"] == 300 and "train_eval" not in plain["dataset"]
    assert [h["step"] for h in r["history"]] == [h["step"] for h in plain["history"]]
    for h, p in zip(r["history"], plain["history"], strict=True):
        assert 0 <= h["train_eval_acc"] <= 1 and h["train_eval_loss"] > 0
        assert (h["val_acc"], h["val_loss"], h["train_loss"]) == (
            p["val_acc"], p["val_loss"], p["train_loss"]
        )  # fmt: skip
    last = r["history"][-1]
    assert (
        r["final"]["train_eval_acc"] == last["train_eval_acc"] > r["history"][0]["train_eval_acc"]
    )
    assert {k: v for k, v in r["final"].items() if not k.startswith("train_eval")} == plain["final"]
    weights = [
        torch.load(d / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
        for d in (tmp_path / "plain", tmp_path / "eval0")
    ]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    # the subset is fixed by data.split_seed, not by the run's seed: seed 1 is judged on the
    # same images (its untrained net at step 0 differs, the images do not)
    from initlab.run import data_module

    subsets = [
        data_module(compose_train([*base, f"seed={s}", "data.train_eval_size=300"])) for s in (0, 1)
    ]
    for dm in subsets:
        dm.setup("fit")
    assert torch.equal(subsets[0].train_eval.x, subsets[1].train_eval.x)
    scalars = _scalars(tmp_path / "eval0")
    assert {TRAIN_EVAL_ACC, TRAIN_EVAL_LOSS} <= scalars
    assert (
        r["runtime"]["torch_threads"] == torch.get_num_threads() and r["runtime"]["device"] == "cpu"
    )
    assert r["runtime"]["deterministic_algorithms"] is True


def test_run_trains_on_synthetic_data(tmp_path):
    cfg = compose_train([*FAST, "trainer.max_epochs=2"])
    r = run(cfg, tmp_path, SGD)
    saved = _check_results(tmp_path / "results.json")
    assert saved["status"] == "ok" and r["status"] == "ok"
    sizes = {k: saved["dataset"][k] for k in ("name", "train", "val", "test")}
    assert sizes == {"name": "synthetic", "train": 800, "val": 200, "test": 200}
    assert sorted(saved["dataset"]["files"]) == sorted(MNIST_FILES)
    assert saved["hidden_sizes"] == [512, 256] and saved["depth"] == 2
    assert saved["branch_layers"] is None  # a plain MLP, as built
    assert saved["final"]["test_acc"] > 0.5  # ten classes: chance is 0.1
    # at step 0, every 5 steps (counted across epochs) and at each epoch end (13 steps per epoch)
    assert [h["step"] for h in saved["history"]] == [0, 5, 10, 13, 15, 20, 25, 26]
    assert [h["epoch"] for h in saved["history"]] == [0, 0, 0, 0, 1, 1, 1, 1]
    walls = [h["wall_s"] for h in saved["history"]]
    assert walls == sorted(walls)
    assert saved["final"]["val_acc"] == saved["history"][-1]["val_acc"]
    assert saved["timing"]["train_samples"] == 1600
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    tags = _scalars(tmp_path)
    expected = {TRAIN_LOSS, TRAIN_ACC, VAL_LOSS, VAL_ACC, TEST_LOSS, TEST_ACC}
    assert expected <= tags


def _events(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    ea = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "histograms": 0})
    ea.Reload()
    out = {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}
    for t in ea.Tags()["histograms"]:
        out[t] = [(e.step, e.histogram_value.sum) for e in ea.Histograms(t)]
    return out


def test_blocks_of_steps_train_exactly_as_one_step_per_batch(tmp_path):
    """steps_per_execution changes the speed only: same weights, history and TensorBoard."""
    common = [
        *FAST,
        "trainer.max_epochs=2",
        "trainer.log_every_n_steps=2",
        "diagnostics.every_n_steps=3",
        "diagnostics.histogram_every_n_steps=4",
    ]
    records, events = {}, {}
    for k in (1, 5):  # 13 steps per epoch: blocks of 5 start off the epoch's start
        cfg = compose_train([*common, f"steps_per_execution={k}"])
        records[k] = run(cfg, tmp_path / str(k), SGD)
        events[k] = _events(tmp_path / str(k))
    a, b = records[1], records[5]
    assert a["status"] == b["status"] == "ok"
    assert a["final"] == b["final"]
    drop_wall = [{k: v for k, v in h.items() if k != "wall_s"} for h in a["history"]]
    assert drop_wall == [{k: v for k, v in h.items() if k != "wall_s"} for h in b["history"]]
    assert a["timing"]["train_samples"] == b["timing"]["train_samples"] == 1600
    wa = torch.load(tmp_path / "1" / "checkpoints" / "last.ckpt", weights_only=False)
    wb = torch.load(tmp_path / "5" / "checkpoints" / "last.ckpt", weights_only=False)
    for name, tensor in wa["state_dict"].items():
        assert torch.equal(tensor, wb["state_dict"][name]), name
    assert events[1].keys() == events[5].keys()
    for tag in events[1]:
        assert events[1][tag] == events[5][tag], tag
    # every metric at its optimizer step: training every 2, diagnostics every 3, validation every 5
    assert [s for s, _ in events[5]["train/loss"]] == list(range(2, 27, 2))
    assert [s for s, _ in events[5]["watch/act_std/fc1"]] == [0, 3, 6, 9, 12, 15, 18, 21, 24, 25]
    assert [s for s, _ in events[5]["watch/distinct_units/fc1"]] == [0, 12, 25]
    assert [s for s, _ in events[5]["watch/weight/fc1"]] == [0, 4, 8, 12, 16, 20, 24, 25]
    assert [s for s, _ in events[5]["val/acc"]] == [0, 5, 10, 13, 15, 20, 25, 26]


def test_hparams_reach_tensorboard(tmp_path):
    run(compose_train(FAST), tmp_path, SGD)
    ea = EventAccumulator(str(tmp_path))
    ea.Reload()
    content = ea.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in content
    blob = content["_hparams_/session_start_info"]
    for name in [b"init", b"norm", b"depth", b"widths", b"lr", b"batch_size", b"seed", b"data"]:
        assert name in blob
    assert "_hparams_/session_end_info" in content
    assert "_hparams_/experiment" not in content  # the sweep's, never a run's (initlab.dashboard)
    scalars = set(ea.Tags()["scalars"])
    assert {VAL_ACC, TEST_ACC, VAL_AUC, DIVERGED} <= scalars  # HPARAMS' metrics
    assert "epoch" not in scalars and not [t for t in scalars if t.startswith("hp/")]
    # written once, at the last step: no placeholder at step 0
    assert [e.step for e in ea.Scalars(TEST_ACC)] == [ea.Scalars(VAL_ACC)[-1].step]
    assert [e.value for e in ea.Scalars(DIVERGED)] == [0.0]


def test_same_seed_same_results(tmp_path):
    a = run(compose_train(FAST), tmp_path / "a", SGD)
    b = run(compose_train(FAST), tmp_path / "b", SGD)
    c = run(compose_train([*FAST, "seed=1"]), tmp_path / "c", SGD)

    def metrics(r):  # wall-clock times differ between runs, the metrics must not
        return [{k: v for k, v in h.items() if k != "wall_s"} for h in r["history"]]

    assert a["final"] == b["final"] and metrics(a) == metrics(b)
    assert a["final"] != c["final"]


def test_divergence_is_a_result(tmp_path):
    cfg = compose_train([*FAST, "trainer.log_every_n_steps=1", "init.gain=50.0", "init=xavier"])
    r = run(cfg, tmp_path, partial(torch.optim.SGD, lr=1e4))
    assert r["status"] == "diverged"
    assert r["diverged_at_step"] is not None and r["diverged_at_step"] < 13
    saved = json.loads((tmp_path / "results.json").read_text())  # strict JSON: NaN became null
    assert saved["status"] == "diverged" and saved["final"]["train_loss"] is None


def test_failure_is_recorded_then_raised(tmp_path):
    """run() without the command line's checks: lsuv measures its batch of 1 in training mode,
    which batch norm refuses. The failure is recorded, then raised."""
    cfg = compose_train([*FAST, "init=lsuv", "init.batch_size=1", "norm=batchnorm"])
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        run(cfg, tmp_path, SGD)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["status"] == "failed" and "more than 1 value per channel" in saved["error"]
    assert saved["init"] == "lsuv" and saved["config"]["init"]["batch_size"] == 1


def test_a_failure_never_replaces_a_finished_record(tmp_path):
    """A rerun that fails before it can tell what the run dir holds (its data does not load,
    say) keeps the finished record there; a dir without one gets the failed record."""
    run(compose_train(FAST), tmp_path / "done", SGD)
    before = (tmp_path / "done" / "results.json").read_bytes()
    assert record_failure(tmp_path / "done", {}, "DataError: the disk is gone") is None
    assert (tmp_path / "done" / "results.json").read_bytes() == before
    path = record_failure(tmp_path / "new", {"init": {"name": "he"}}, "DataError: no data")
    saved = json.loads(path.read_text())
    assert saved["status"] == "failed" and saved["error"] == "DataError: no data"
    assert saved["init"] == "he"  # an invalid config: what can be said of it


@pytest.mark.parametrize("norm", ["none", "batchnorm", "layernorm", "weightnorm"])
def test_every_norm_trains(tmp_path, norm):
    r = run(compose_train([*FAST, f"norm={norm}", "model.depth=3"]), tmp_path, SGD)
    assert r["status"] == "ok" and r["hidden_sizes"] == [512, 256, 256]
    assert r["norm"] == norm


def test_cli_single_run(tmp_path):
    out = tmp_path / "run"
    proc = run_train([*FAST, "init=xavier", f"hydra.run.dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = _check_results(out / "results.json")
    assert r["init"] == "xavier" and r["status"] == "ok"
    assert "epoch 1/1" in proc.stdout + proc.stderr  # one concise line per epoch, no bar
    assert (out / "train.log").is_file() and (out / ".hydra" / "config.yaml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing else in the cwd


@pytest.mark.parametrize("init", ["fixup", "skipinit"])
def test_cli_trains_a_residual_net(tmp_path, init):
    """train.py with model.residual=true: the run, its record, and the diagnostics per block (the
    gates, the stream at each block's last Linear) in TensorBoard."""
    out = tmp_path / "run"
    residual = ["model.residual=true", "model.width=32", "model.depth=3", f"init={init}"]
    argv = [*FAST, *residual, "+trainer.limit_train_batches=10", f"hydra.run.dir={out}"]
    proc = run_train(argv, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = _check_results(out / "results.json")
    assert r["init"] == init and r["status"] == "ok" and r["hidden_sizes"] == [32] * 3
    assert r["config"]["model"]["residual"] is True
    first = r["layer_profile"]["first"]
    assert first["layers"] == ["inp"] + [f"block{b}.fc{i}" for b in (1, 2, 3) for i in (1, 2)]
    # at init every block is the identity: the stream's q at each block's end is inp's
    stream = first["preact_q"][0::2]
    assert stream == pytest.approx([stream[0]] * 4, rel=1e-5)
    tags = _scalars(out)
    assert {f"watch/gate/block{b}" for b in (1, 2, 3)} <= tags
    assert "watch/preact_q/block3.fc2" in tags


def test_cli_multirun_sweeps_init_x_norm(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_train(
        ["-m", "init=zero,xavier,he", "norm=none,batchnorm", *FAST, f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    # override_dirname: the job's overrides, sorted, minus bookkeeping keys (progress_bar, ...)
    fixed = [o for o in FAST if not o.startswith("progress_bar")]
    expected = sorted(
        ",".join(sorted([f"init={i}", f"norm={n}", *fixed]))
        for i in ("zero", "xavier", "he")
        for n in ("none", "batchnorm")
    )
    assert jobs == expected
    for job in jobs:
        r = _check_results(sweep / job / "results.json")
        assert f"init={r['init']},norm={r['norm']}" in job
        assert list((sweep / job).glob("events.out.tfevents.*"))
    assert "6 ok, 0 diverged, 0 failed" in proc.stdout + proc.stderr


def test_cli_config_error_is_one_line_and_exit_2(tmp_path):
    proc = run_train([*FAST, "model.depth=0", f"hydra.run.dir={tmp_path / 'x'}"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "model.depth=0 must be a positive integer" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x" / "results.json").exists()


@pytest.mark.mnist
def test_zero_init_predicts_the_majority_class(tmp_path, mnist_root):
    """All-zero weights can only learn the output bias: the net predicts '1' (1,135 of 10,000)."""
    cfg = compose_train(["init=zero", f"data.root={mnist_root}", "trainer.max_epochs=1"])
    r = run(cfg, tmp_path, SGD)
    assert r["dataset"]["name"] == "mnist"
    assert r["final"]["test_acc"] == pytest.approx(0.1135, abs=1e-6)


@pytest.mark.mnist
@pytest.mark.slow
def test_he_reaches_the_tutorials_accuracy(tmp_path, mnist_root):
    r = run(compose_train(["init=he", f"data.root={mnist_root}"]), tmp_path, SGD)
    assert r["status"] == "ok" and r["final"]["test_acc"] >= 0.965
    assert not math.isnan(r["timing"]["train_samples_per_s"])


# A slice of each experiment's grid (command-line sweeps take precedence over the experiment's
# sweeper params); every job of every grid is composed and validated in test_config.py.
SMOKE_SLICES = {
    "tutorial": ["init=zero,tutorial_he", "seed=0"],
    "init_x_norm": ["init=he", "norm=none,weightnorm", "seed=1"],
    "depth": ["init=lsuv", "norm=batchnorm", "model.depth=2,8", "seed=0"],
    "he2015": ["seed=0"],
    "glorot2010": ["seed=0"],
    "phase_diagram": ["init.sigma_w2=1.0,4.0", "model.depth=10", "seed=0"],
    "isometry": ["model.activation=tanh", "init.weights=gaussian,orthogonal", "model.depth=10"]
    + ["seed=0"],
    "fixup2019": ["init=fixup,skipinit", "norm=none", "model.depth=10", "seed=0"],
}
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_runs_in_smoke_mode(tmp_path, name):
    """Every experiment in conf/experiment (a new one fails here until it has a slice)."""
    assert name in SMOKE_SLICES, f"add a 2-run slice of experiment={name} to SMOKE_SLICES"
    sweep = tmp_path / "sweep"
    args = ["-m", f"experiment={name}", "debug=smoke", *SMOKE_SLICES[name]]
    proc = run_train([*args, f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = sorted(sweep.glob("*/results.json"))
    assert len(results) == 2
    for path in results:
        r = _check_results(path)
        assert r["status"] == "ok" and r["study"] == name
        assert r["dataset"]["name"] == "synthetic" and r["timing"]["train_samples"] == 4 * 64


def test_sweep_survives_a_diverging_job(tmp_path):
    """One job diverges (lr 1e4): a result, not a crash; the sweep goes on, tallies it, its
    report lists it, and it exits 0 (every run finished). init=zero under weight norm trains
    (its zero rows are registered as g = 0)."""
    sweep = tmp_path / "sweep"
    args = ["-m", "init=zero,xavier", "norm=none,weightnorm", "optimizer.lr=10000"]
    proc = run_train(
        [*args, *FAST, "trainer.log_every_n_steps=1", f"hydra.sweep.dir={sweep}"], cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = {}
    for path in sweep.glob("*/results.json"):
        r = json.loads(path.read_text())
        status[(r["init"], r["norm"])] = r["status"]
    assert len(status) == 4 and "failed" not in status.values()
    assert status[("xavier", "none")] == "diverged"
    counts = {s: list(status.values()).count(s) for s in STATUSES}
    tally = f"{counts['ok']} ok, {counts['diverged']} diverged, 0 failed, 0 unreadable"
    assert tally in proc.stdout + proc.stderr
    summary = (sweep / "summary.md").read_text()
    assert "diverged" in summary and "weightnorm" in summary


def test_progress_bar_counts_optimizer_steps(tmp_path, capfd):
    """A training batch is a block of steps (5 here); the bar still counts the 13 steps."""
    run(compose_train([*FAST, "trainer.max_epochs=2"]), tmp_path, SGD, progress_bar=True)
    out = capfd.readouterr().out  # Lightning's bars write to stdout
    assert "epoch 2/2: 100%" in out and "13/13" in out, out[-2000:]  # 1-based, as the lines
    assert "/3 " not in out  # not the 3 blocks of the epoch
