"""Residual nets at init: the recursion of the residual stream (theory.predict_residual) against
its measurement per block (initlab.propagation.residual), and the settings around them.

The acceptance test compares, at every block l, the stream's q_l measured on S inits with the
prediction, in log space as tests/test_propagation.py does: t = mean over seeds of log(q_s /
predicted), s their sample standard deviation. For a prediction exact in expectation E[q_s] =
predicted, so E[t] lies between -s^2/2 (Jensen: E log X = log E X - Var(log X)/2 for a
log-normal-ish X) and 0, and t's sampling error is s / sqrt(S): a t interval with S - 1 degrees
of freedom, two-sided at ALPHA = 1e-3 (t = 3.88 for S = 20; the seeds are fixed, so each check
is deterministic). The spread comes from the seeds themselves, not from a bound: a relu stream
without a norm doubles per block, and its per-seed log sd grows like sqrt(l) (0.5 at block 20
of width 256), while a normalized or gated stream's stays at the embedding's (~0.03 on MNIST).
"""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
import subprocess
import sys
from functools import cache

import pytest
import torch
from scipy import stats

from initlab.config import ConfigError, validate
from initlab.fingerprint import determining, fingerprint
from initlab.inits import residual_variances
from initlab.mlp import build_mlp
from initlab.propagation import PLOT_FILE, PROPAGATION_FILE, RESIDUAL_SWEEP_PLOT_FILE
from initlab.propagation.measure import (
    build_network,
    gaussian_inputs,
    init_seeds,
    measure,
    propagate,
    training_split,
)
from initlab.propagation.plots import (
    is_residual,
    plot_residual,
    propagation_problem,
    residual_table,
)
from initlab.propagation.residual import measure_residual, relative_errors
from initlab.propagation.theory import NORM_EPS, predict_residual

from .conftest import ROOT, compose_train

SEEDS = 20
ALPHA = 1e-3
N_INPUTS = 500
SCRIPT = ROOT / "scripts" / "propagate.py"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on 2 shared cores, two spinning threads each run ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def he(**extra) -> dict:
    return {"name": "he", "bias": 0.0, **extra}


def _variances(name="he", blocks=10, m=2, width=256, activation="relu", **params):
    return residual_variances(name, {"bias": 0.0, **params}, 784, width, 10, blocks, m, activation)


# -- the recursion, on paper -------------------------------------------------------------------
@pytest.mark.parametrize("m", [1, 2, 3])
def test_he_relu_branches_double_the_stream_per_block(m):
    """E[f^2] = q_l through any number of He relu layers (exact: symmetric pre-activations), so
    with gate 1 q_l = 2^l q_0: exponential in depth."""
    pred = predict_residual(_variances(m=m), 784, 256, 1.0)
    q0 = 784 * (2 / 784) * 1.0  # the embedding is a Linear on the inputs: no relu before it
    assert pred["q"] == pytest.approx([q0 * 2**block for block in range(11)], rel=1e-12)
    assert pred["branch_q"] == pytest.approx(pred["q"][:-1], rel=1e-12)


@pytest.mark.parametrize("norm", ["batchnorm", "layernorm"])
def test_a_norm_in_the_branch_makes_the_stream_grow_linearly(norm):
    """The branch sees q = s / (s + eps) ~ 1 whatever q_l, so each block adds one constant."""
    pred = predict_residual(_variances(), 784, 256, 1.0, norm=norm)
    steps = [b - a for a, b in zip(pred["q"], pred["q"][1:], strict=False)]
    assert steps == pytest.approx([steps[-1]] * 10, rel=1e-6)
    assert steps[-1] == pytest.approx(1.0, abs=10 * NORM_EPS)  # He: E[f^2] = q_norm = 1
    assert pred["q"][-1] == pytest.approx(2.0 + 10 * steps[-1])


def test_a_bounded_activation_grows_the_stream_at_most_linearly():
    """tanh^2 <= 1: each block adds at most a^2 n v (Yang & Schoenholz's polynomial regime)."""
    pred = predict_residual(_variances(activation="tanh"), 784, 256, 1.0, activation="tanh")
    n_v = 256 * (5 / 3) ** 2 / 256
    steps = [b - a for a, b in zip(pred["q"], pred["q"][1:], strict=False)]
    assert all(0 < s < n_v for s in steps)
    assert steps == sorted(steps)  # E[tanh(h)^2] rises toward its bound 1 as q grows


@pytest.mark.parametrize("name", ["fixup", "skipinit"])
def test_fixup_and_skipinit_keep_the_embeddings_q(name):
    pred = predict_residual(_variances(name), 784, 256, 1.3)
    assert pred["q"] == [pytest.approx(2.0 * 1.3)] * 11
    if name == "skipinit":  # an open branch behind a closed gate
        assert pred["branch_q"][0] == pytest.approx(2.0 * 1.3)
    else:
        assert pred["branch_q"] == [0.0] * 10
        assert pred["q_logits"] == 0.0  # out at 0


def test_the_cross_term_of_a_bias_with_a_mean():
    """Linear activation, biases b: h_0 = W x + b, f = W h + b; q_{l+1} = q_l + 2 mu_l b +
    E[f^2] with mu_{l+1} = mu_l + b, written out by hand."""
    variances = residual_variances("lecun", {"bias": 0.1}, 784, 64, 10, 3, 1, "linear")
    pred = predict_residual(variances, 784, 64, 1.0, activation="linear")
    q, mu, expected = 784 / 784 * 1.0 + 0.01, 0.1, []
    expected.append(q)
    for _ in range(3):
        f2 = 64 * (1 / 64) * q + 0.01
        q, mu = q + 2 * mu * 0.1 + f2, mu + 0.1
        expected.append(q)
    assert pred["q"] == pytest.approx(expected, rel=1e-12)


# -- the measurement -----------------------------------------------------------------------------
def test_measure_residual_reads_the_stream_the_branch_and_the_logits():
    net = build_network(he(), [16] * 2, 784, 10, "relu", "layernorm", 0, residual=True)
    x = torch.randn(20, 784, dtype=torch.float64)
    with torch.no_grad():
        net.block2.gate.fill_(0.5)
        got = measure_residual(net, x)
        h = net.inp(x)
        q, f2, pre = [h.pow(2).mean()], [], []
        for block in (net.block1, net.block2):
            z1 = block.norm1(h)
            u = block.fc1(block.act1(z1))
            z2 = block.norm2(u)
            f = block.fc2(block.act2(z2))
            pre.append([z1.pow(2).mean(), z2.pow(2).mean()])
            h = h + block.gate * f
            q.append(h.pow(2).mean())
            f2.append(f.pow(2).mean())
    assert got["q"] == pytest.approx([float(v) for v in q], rel=1e-12)
    assert got["branch_q"] == pytest.approx([float(v) for v in f2], rel=1e-12)
    assert got["branch_pre"] == [pytest.approx([float(a), float(b)], rel=1e-12) for a, b in pre]
    with torch.no_grad():
        assert got["q_logits"] == pytest.approx(float(net(x).pow(2).mean()), rel=1e-12)


def test_the_plain_measurement_refuses_a_residual_net():
    net = build_network(he(), [16] * 2, 784, 10, residual=True)
    with pytest.raises(ValueError, match="residual net is measured per block") as err:
        measure(net, torch.randn(4, 784, dtype=torch.float64), torch.zeros(4, dtype=torch.long))
    assert "\n" not in str(err.value)


@cache
def mnist_batch(root: str) -> tuple[torch.Tensor, torch.Tensor]:
    data = {"root": root, "name": "mnist", "val_size": 5000, "download": False,
            "fallback": False, "mean": 0.1307, "std": 0.3081, "split_seed": 0}  # fmt: skip
    x, y, dataset = training_split(data)
    assert dataset == "mnist"
    return x[:N_INPUTS], y[:N_INPUTS]


def log_t(per_seed: list[float], predicted: float) -> tuple[float, float, float]:
    """(t, its lower and upper bounds): mean log(q_s / predicted) and the t interval (module
    docstring) around an exact prediction."""
    logs = [math.log(v / predicted) for v in per_seed]
    s, n = statistics.stdev(logs), len(logs)
    half = stats.t.ppf(1 - ALPHA / 2, n - 1) * s / math.sqrt(n)
    return statistics.mean(logs), -(s * s) / 2 - half, half


def check_blocks(record: dict, predicted_scale=lambda index: 1.0) -> list[str]:
    """The blocks whose measured q is outside the t interval around the prediction (times
    ``predicted_scale``: a deliberately wrong prediction)."""
    bad = []
    for layer in record["layers"][1:-1]:
        q = layer["q"]
        t, lo, hi = log_t(q["per_seed"], q["predicted"] * predicted_scale(layer["index"]))
        if not lo <= t <= hi:
            bad.append(f"block {layer['index']}: log gap {t:+.3f} outside [{lo:+.3f}, {hi:+.3f}]")
    return bad


# (init, blocks, width, branch layers, activation, norm): the acceptance cases
CASES = {
    "relu m=1": (he(), 20, 512, 1, "relu", "none"),
    "relu m=2": (he(), 20, 256, 2, "relu", "none"),
    "tanh m=2": (
        {"name": "kaiming", "bias": 0.0, "mode": "fan_in", "distribution": "normal"},
        20,
        256,
        2,
        "tanh",
        "none",
    ),  # fmt: skip
    "relu batchnorm m=2": (he(), 20, 256, 2, "relu", "batchnorm"),
    "relu layernorm m=2": (he(), 20, 256, 2, "relu", "layernorm"),
    "linear, biases 0.1, m=1": ({"name": "lecun", "bias": 0.1}, 10, 256, 1, "linear", "none"),
}


@cache
def case_record(root: str, case: str) -> dict:
    init, blocks, width, m, activation, norm = CASES[case]
    x, y = mnist_batch(root)
    return propagate(
        init, [width] * blocks, x, y, init_seeds(0, SEEDS), activation, norm,
        residual=True, branch_layers=m,
    )  # fmt: skip


@pytest.mark.mnist
@pytest.mark.parametrize("case", list(CASES))
def test_the_recursion_agrees_with_the_measured_stream(mnist_root, case):
    """Acceptance: at every hidden block the measured q_l (mean over 20 inits, 500 MNIST
    images) sits within the t interval of the prediction (docs/propagation.md lists the
    relative errors per block)."""
    record = case_record(str(mnist_root), case)
    assert record["prediction"]["available"]
    assert check_blocks(record) == []
    if record["norm"] in ("batchnorm", "layernorm"):  # linear growth: ~1 per block, measured
        q = [la["q"]["measured"] for la in record["layers"][:-1]]
        assert (q[-1] - q[0]) / (len(q) - 1) == pytest.approx(1.0, rel=0.05)


@pytest.mark.mnist
@pytest.mark.parametrize("case", ["relu m=1", "relu m=2"])
def test_a_five_percent_error_per_block_would_be_caught(mnist_root, case):
    """The interval is narrow enough: a recursion 5% off per block (E[relu(h)^2] taken as
    0.45 q instead of q / 2, with m = 1) is refused by the deep blocks."""
    record = case_record(str(mnist_root), case)
    assert len(check_blocks(record, lambda index: 0.95**index)) >= 5


@pytest.mark.mnist
@pytest.mark.parametrize("name", ["fixup", "skipinit"])
def test_fixup_and_skipinit_keep_the_stream_constant(mnist_root, name):
    """At init every block is the identity: each seed's q_l is its embedding's q_0, exactly, at
    every block, and the recursion predicts that q_0."""
    x, y = mnist_batch(str(mnist_root))
    record = propagate(
        {"name": name, "bias": 0.0}, [256] * 30, x, y, init_seeds(0, SEEDS),
        residual=True, branch_layers=2,
    )  # fmt: skip
    q0 = record["layers"][0]["q"]["per_seed"]
    for layer in record["layers"][1:-1]:
        assert layer["q"]["per_seed"] == q0
        assert layer["q"]["predicted"] == pytest.approx(record["layers"][0]["q"]["predicted"])
    t, lo, hi = log_t(q0, record["layers"][0]["q"]["predicted"])
    assert lo <= t <= hi
    if name == "fixup":
        assert record["layers"][-1]["q"]["per_seed"] == [0.0] * SEEDS  # out at 0
        assert all(la["branch_q"]["measured"] == 0.0 for la in record["layers"][1:-1])


def test_the_record_is_drawn_and_tabulated(tmp_path):
    x, y = gaussian_inputs(100, 784, 10, seed=0)
    record = propagate(he(), [32] * 3, x, y, [0, 1, 2], residual=True, branch_layers=2)
    record["inputs"] = {"kind": "gaussian", "dataset": "gaussian", "n": 100}  # run_propagation's
    assert is_residual(record) and propagation_problem(record) is None
    assert [la["name"] for la in record["layers"]] == ["inp", "block1", "block2", "block3", "out"]
    assert record["residual"]["branch_layers"] == 2 and record["depth"] == 3
    assert set(record["layers"][1]["q"]) >= {"measured", "seed_std", "predicted", "per_seed"}
    assert len(relative_errors(record)) == 3
    text = residual_table(record)
    assert text.count("\n") == 2 + 4 and "| inp |" in text and "| out |" in text
    assert plot_residual(record, tmp_path / "p.png").stat().st_size > 0


# -- the settings ------------------------------------------------------------------------------
def _plain(overrides: list[str]) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(compose_train(["data=synthetic", *overrides]), resolve=True)


def test_the_residual_settings_make_another_run_and_leave_plain_runs_as_they_were():
    plain = _plain([])
    keys = determining(plain)
    assert "model.residual" not in keys and "model.branch_layers" not in keys  # as before them
    assert determining(_plain(["model.branch_layers=3"])) == keys  # no other plain run
    residual = _plain(["model.residual=true", "model.width=64"])
    assert determining(residual)["model.residual"] is True
    prints = {
        fingerprint(cfg, None)["sha256"]
        for cfg in (
            plain,
            residual,
            _plain(["model.residual=true", "model.width=64", "model.branch_layers=1"]),
            _plain(["model.residual=false", "model.width=64"]),
        )
    }
    assert len(prints) == 4


def test_a_residual_net_of_several_widths_is_refused_in_the_schema():
    cfg = _plain(["model.residual=true", "model.hidden_sizes=[64,64,32]"])
    with pytest.raises(ConfigError, match=r"model.hidden_sizes=\[64, 64, 32\].*set model.width"):
        validate(cfg)
    validate(_plain(["model.residual=true", "model.hidden_sizes=[64,64,64]", "init=skipinit"]))


def test_the_report_tells_a_residual_net_from_a_plain_one():
    from initlab.report.aggregate import group_configs

    base = {"init": "he", "norm": "none", "activation": "relu", "hidden_sizes": [64, 64],
            "seed": 0, "dataset": {"name": "synthetic"}}  # fmt: skip
    runs = [
        {**base, "config": {"model": {"residual": False, "branch_layers": 2}}},
        {**base, "seed": 1},  # a record from before residual nets: the plain net
        {**base, "config": {"model": {"residual": True, "branch_layers": 2}}},
        # the record says how the net was built: that, not a config's copy, decides
        {**base, "seed": 2, "branch_layers": None, "config": {"model": {"residual": True}}},
        {**base, "seed": 3, "branch_layers": 3, "config": {"model": {"residual": False}}},
        {**base, "seed": 4, "branch_layers": 2},
    ]
    keys = sorted((c.key["residual"] or "-", len(c.runs)) for c in group_configs(runs))
    assert keys == [("-", 3), ("m=2", 2), ("m=3", 1)]


def test_diagnostics_pair_each_linear_with_the_activation_it_reaches():
    from initlab.diagnostics import hidden_layers

    net = build_mlp(784, [8] * 2, 10, norm="batchnorm", residual=True, branch_layers=2)
    pairs = [(name, lin is net.get_submodule(name), act) for name, lin, act in hidden_layers(net)]
    assert [(n, same) for n, same, _ in pairs] == [
        (n, True) for n in ("inp", "block1.fc1", "block1.fc2", "block2.fc1", "block2.fc2")
    ]
    assert [a for _, _, a in pairs] == [
        net.block1.act1, net.block1.act2, net.block2.act1, net.block2.act2, net.act
    ]  # fmt: skip


def test_propagate_script_measures_a_residual_net(tmp_path):
    """scripts/propagate.py with model.residual=true: the record, its per-block figure, and the
    sweep's residual figure from --plot; init=fixup on a plain MLP: one line, exit 2."""
    run = tmp_path / "run"
    argv = ["data=synthetic", "model.residual=true", "model.width=32", "model.depth=4",
            "init=skipinit", "propagate.seeds=2", "propagate.n_inputs=50",
            f"hydra.run.dir={run}"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((run / PROPAGATION_FILE).read_text())
    assert is_residual(record) and (run / PLOT_FILE).stat().st_size > 0
    assert "| block | gate |" in proc.stdout + proc.stderr
    spec = importlib.util.spec_from_file_location("propagate_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.plot_dir(tmp_path) == [tmp_path / RESIDUAL_SWEEP_PLOT_FILE]  # no plain record
    assert (tmp_path / RESIDUAL_SWEEP_PLOT_FILE).stat().st_size > 0
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "data=synthetic", "init=fixup",
         f"hydra.run.dir={tmp_path / 'bad'}"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert bad.returncode == 2 and "init=fixup needs model.residual=true" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()
