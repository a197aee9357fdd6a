"""Dynamical isometry: the spectrum of the hidden stack's Jacobian J = dh_L/dh_1 at init, measured
(initlab.propagation.spectrum) against the free-probability prediction (theory.jacobian_moments;
Pennington, Schoenholz & Ganguli 2017).

Statistics: per input, the eigenvalues lambda of J J^T give m1 = mean(lambda) and spread =
var(lambda) / m1^2; per init, their mean over the inputs; the inits are the independent units,
so a prediction agrees when it lies in the 99% t interval of the per-seed means (mean +- t(0.995,
S - 1) sd / sqrt(S)). The seeds are fixed, so the tests are deterministic.
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from omegaconf import OmegaConf
from scipy import stats

from initlab.config import WEIGHT_ENSEMBLES
from initlab.fingerprint import fingerprint
from initlab.inits import INITS
from initlab.mlp import ACTIVATION_MODULES, build_mlp
from initlab.propagation.measure import build_network, init_seeds, propagate, training_split
from initlab.propagation.plots import plot_spectrum, plot_spectrum_sweep
from initlab.propagation.spectrum import (
    MAX_WIDTH,
    activation_derivative,
    hidden_stack,
    jacobian,
    measure_spectrum,
    singular_values,
    spectrum_stats,
    weight_ensemble,
)
from initlab.propagation.theory import (
    LEAKY_RELU_SLOPE,
    WEIGHT_S1,
    chi_1,
    critical_sigma_w2,
    derivative_moments,
    fixed_point_jacobian_moments,
    jacobian_moments,
    q_star,
)

from .conftest import CONF, compose_train

Z = 5.0  # Monte Carlo tolerances: Z standard errors (a false alarm with p < 1e-6)
SB2 = 1e-3  # the acceptance net: tanh at the edge of chaos, small q* (phi' near 1)
WIDTH, DEPTH, INPUTS, SEEDS = 256, 50, 16, 4


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on 2 shared cores, two spinning threads each run ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def init_spec(name: str, **overrides) -> dict:
    spec = OmegaConf.to_container(OmegaConf.load(CONF / "init" / f"{name}.yaml"))
    return {**spec, **overrides}


def seed_interval(per_seed: list[float], level: float = 0.99) -> tuple[float, float]:
    """(mean, half-width) of the two-sided t interval of the per-seed means."""
    n = len(per_seed)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * statistics.stdev(per_seed) / math.sqrt(n)
    return statistics.fmean(per_seed), half


# -- theory -----------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "gelu"])
@pytest.mark.parametrize("q", [0.1072923561478622, 1.0, 5.0])
def test_derivative_moments_against_monte_carlo(activation, q):
    """E[phi'(h)^2] and E[phi'(h)^4] for h ~ N(0, q), phi' by autograd through the model's own
    activation module (not theory's formulas), within Z standard errors of the sample."""
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(400_000, generator=gen, dtype=torch.float64) * math.sqrt(q)
    d2 = activation_derivative(ACTIVATION_MODULES[activation](), h).pow(2)
    mu1, mu2 = derivative_moments(activation, q)
    for value, sample in ((mu1, d2), (mu2, d2.pow(2))):
        se = float(sample.std()) / math.sqrt(len(sample))
        assert abs(value - float(sample.mean())) < Z * se


def test_derivative_moments_exact_for_piecewise_linear():
    for q in (1e-3, 1.0, 1e4):  # no dependence on q: phi'^2 takes two values, each half the time
        assert derivative_moments("relu", q) == (0.5, 0.5)
        assert derivative_moments("linear", q) == (1.0, 1.0)
        a = LEAKY_RELU_SLOPE
        assert derivative_moments("leaky_relu", q) == ((1 + a**2) / 2, (1 + a**4) / 2)


def test_weight_s1_from_sampled_weights():
    """s1 = 1 - m2/m1^2 of W^T W, m_k = tr((W^T W)^k) / N. Gaussian W with entry variance 1/N:
    E m1 = 1 and E m2 = 2 + 1/N exactly (real Wishart: E tr(A^2) = N^2 (2N + 1) for unit
    entries), so the estimate is -1 - 1/N up to its sampling error, which the tolerance adds
    (Z standard errors of the mean of m2 over the draws). Orthogonal: m2 = m1^2 to rounding."""
    assert set(WEIGHT_S1) == set(WEIGHT_ENSEMBLES)
    n, draws = 200, 40
    gen = torch.Generator().manual_seed(0)
    m1, m2 = [], []
    for _ in range(draws):
        w = torch.randn(n, n, generator=gen, dtype=torch.float64) / math.sqrt(n)
        a = w.T @ w
        m1.append(float(a.trace()) / n)
        m2.append(float((a @ a).trace()) / n)
    s1 = 1 - statistics.fmean(m2) / statistics.fmean(m1) ** 2
    se = statistics.stdev(m2) / math.sqrt(draws)
    assert abs(s1 - WEIGHT_S1["gaussian"]) < 1 / n + Z * se + 2 * Z * statistics.stdev(
        m1
    ) / math.sqrt(draws)
    w = torch.empty(n, n, dtype=torch.float64)
    torch.nn.init.orthogonal_(w, gain=math.sqrt(1.7), generator=gen)
    a = w.T @ w
    m1o, m2o = float(a.trace()) / n, float((a @ a).trace()) / n
    assert 1 - m2o / m1o**2 == pytest.approx(WEIGHT_S1["orthogonal"], abs=1e-10)


def test_jacobian_moments_compose_per_factor():
    # linear, Gaussian: products of k Ginibre matrices, whose J J^T has the Fuss-Catalan moments
    # m1 = 1, m2 = k + 1: spread k; orthogonal: an orthogonal matrix, spread 0
    for k in (1, 5, 30):
        assert jacobian_moments("linear", [1.0] * k, [1.0] * k)["spread"] == pytest.approx(k)
        assert jacobian_moments("linear", [1.0] * k, [1.0] * k, "orthogonal")["spread"] == 0.0
    # relu: mu2/mu1^2 = 2 per factor, so (L-1)(1 - s1); m1 the product of sigma_w2 mu1
    out = jacobian_moments("relu", [2.0, 2.0, 3.0], [1.0, 7.0, 0.1])
    assert out == {"m1": pytest.approx(1.5), "spread": 6.0, "var": pytest.approx(1.5**2 * 6.0)}
    assert jacobian_moments("relu", [2.0] * 3, [1.0] * 3, "orthogonal")["spread"] == 3.0
    with pytest.raises(ValueError, match="weights='haar' is not one of: gaussian, orthogonal"):
        jacobian_moments("relu", [2.0], [1.0], "haar")
    with pytest.raises(ValueError, match="2 weight variances but 1 q values"):
        jacobian_moments("relu", [2.0, 2.0], [1.0])


def test_fixed_point_moments_at_the_edge_of_chaos():
    """tanh, sigma_b2 = 1e-3: critical sigma_w2 1.18919, q* 0.10729; m1 = chi_1^(L-1) = 1 and
    the spread (L-1)(mu2/mu1^2 - 1 - s1) with mu2/mu1^2 = 1.044: 51.16 Gaussian, 2.16 orthogonal."""
    sw2 = critical_sigma_w2("tanh", SB2)
    assert sw2 == pytest.approx(1.18919, abs=1e-5)
    assert q_star("tanh", sw2, SB2) == pytest.approx(0.10729, abs=1e-5)
    gauss = fixed_point_jacobian_moments("tanh", sw2, SB2, DEPTH - 1)
    orth = fixed_point_jacobian_moments("tanh", sw2, SB2, DEPTH - 1, "orthogonal")
    for out in (gauss, orth):
        assert out["m1"] == pytest.approx(1.0, abs=1e-6)
        assert out["chi_1_power"] == pytest.approx(chi_1("tanh", sw2, SB2) ** (DEPTH - 1))
    assert gauss["spread"] == pytest.approx(51.158, abs=1e-3)
    assert orth["spread"] == pytest.approx(2.158, abs=1e-3)
    assert gauss["spread"] - orth["spread"] == pytest.approx(DEPTH - 1)  # s1: -1 against 0


# -- the measurement ----------------------------------------------------------------------------
def _autograd_singular_values(net, x):
    """Singular values of dh_L/dh_1 by torch.func.jacrev on the hidden stack, one input."""
    fcs, acts = hidden_stack(net)
    h1 = fcs[0](x.flatten())

    def stack(h):
        for fc, act in zip(fcs[1:], acts[:-1], strict=True):
            h = fc(act(h))
        return h

    return torch.linalg.svdvals(torch.func.jacrev(stack)(h1))


@pytest.mark.parametrize(
    ("widths", "activation"), [([8, 8, 8, 8], "tanh"), ([12, 8, 10], "gelu"), ([6, 9], "relu")]
)
def test_measured_spectrum_is_autograds(widths, activation):
    """The batched product W_l (d * J) against autograd's Jacobian of the stack, per input; a
    rectangular stack (12 -> 8 -> 10) has min(n_L, n_1) singular values. The Gram route agrees
    on the large ones."""
    net = build_network({"name": "he", "bias": 0.1}, widths, 20, 3, activation, seed=1)
    x = torch.randn(5, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s = measure_spectrum(net, x)
    assert s.shape == (5, min(widths[0], widths[-1]))
    for i in range(5):
        torch.testing.assert_close(
            s[i], _autograd_singular_values(net, x[i]), rtol=1e-10, atol=1e-12
        )
    fcs, acts = hidden_stack(net)
    h, derivs, a = None, [], x
    for fc, act in zip(fcs[:-1], acts[:-1], strict=True):
        h = fc(a)
        derivs.append(activation_derivative(act, h))
        a = act(h)
    gram = singular_values(jacobian([fc.weight for fc in fcs[1:]], derivs), exact=False)
    big = s > 1e-6 * s[:, :1]
    torch.testing.assert_close(gram[big], s[big], rtol=1e-7, atol=0)
    st = spectrum_stats(s)
    lam = s.pow(2)
    torch.testing.assert_close(st["spread"], lam.var(1, correction=0) / lam.mean(1) ** 2)


def test_unsupported_nets_say_why_in_one_line():
    cases = [
        (
            build_mlp(20, [8, 8], 3, norm="batchnorm"),
            "without norm layers (this net has BatchNorm1d)",
        ),
        (build_mlp(20, [8, 8], 3, norm="layernorm"), "LayerNorm"),
        (build_mlp(20, [8], 3), "at least 2 hidden layers; this net has 1"),
        (build_mlp(20, [MAX_WIDTH + 1, 8], 3), f"up to width {MAX_WIDTH}"),
        (torch.nn.Sequential(torch.nn.Linear(20, 8), torch.nn.ReLU()), "plain MLP"),
    ]
    for net, part in cases:
        with pytest.raises(ValueError) as err:
            hidden_stack(net)
        assert part in str(err.value) and "\n" not in str(err.value)
    hidden_stack(build_mlp(20, [8, 8], 3, norm="weightnorm"))  # the effective weight: measured


def test_weight_ensemble_of_each_init():
    assert weight_ensemble({"name": "mean_field"}) == "gaussian"
    assert weight_ensemble({"name": "mean_field", "weights": "orthogonal"}) == "orthogonal"
    assert weight_ensemble({"name": "orthogonal"}) == "orthogonal"
    assert weight_ensemble({"name": "he_uniform"}) == "gaussian"  # i.i.d.: the same s1
    assert weight_ensemble({"name": "zero_identity"}) is None


def test_propagation_record_holds_the_spectrum():
    """propagate(jacobian_inputs=n): the record's jacobian section, measured beside predicted;
    no prediction for a rectangular stack (said why); a norm: not measured (said why)."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 784, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    seeds = init_seeds(0, 3)
    r = propagate(init_spec("he"), [64] * 4, x, y, seeds, jacobian_inputs=6)["jacobian"]
    assert r["available"] and r["inputs"] == 6 and r["factors"] == 3 and r["shape"] == [64, 64]
    assert r["weights"] == "gaussian" and r["prediction_note"] is None
    assert r["spread"]["predicted"] == 6.0 and r["m1"]["predicted"] == pytest.approx(1.0)
    assert r["s_max"]["predicted"] is None and len(r["spread"]["per_seed"]) == 3
    assert r["spread"]["measured"] == pytest.approx(statistics.fmean(r["spread"]["per_seed"]))
    se = statistics.stdev(r["m1"]["per_seed"]) / math.sqrt(3)
    assert r["m1"]["seed_se"] == pytest.approx(se)
    h = r["histogram"]
    assert len(h["log10_edges"]) == len(h["counts"]) + 1
    assert sum(h["counts"]) == round((1 - h["zero_fraction"]) * 3 * 6 * 64)
    assert 0.3 < h["zero_fraction"] < 0.7  # relu: the D's zero about half the directions
    rect = propagate(init_spec("he"), [64, 32], x, y, seeds, jacobian_inputs=6)["jacobian"]
    assert rect["shape"] == [32, 64] and rect["spread"]["measured"] > 0
    assert rect["spread"]["predicted"] is None and "one hidden width" in rect["prediction_note"]
    bn = propagate(init_spec("he"), [64] * 3, x, y, seeds, norm="batchnorm", jacobian_inputs=6)
    assert bn["jacobian"]["available"] is False and "BatchNorm1d" in bn["jacobian"]["note"]
    assert propagate(init_spec("he"), [64] * 3, x, y, seeds)["jacobian"] is None  # off


# -- acceptance: real MNIST ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist_batch(mnist_root):
    data = {
        "root": str(mnist_root), "name": "mnist", "val_size": 5000, "download": False,
        "fallback": False, "mean": 0.1307, "std": 0.3081, "split_seed": 0,
    }  # fmt: skip
    x, y, dataset = training_split(data)
    assert dataset == "mnist"
    return x[:INPUTS].double(), y[:INPUTS]


def _spectrum(init: dict, depth: int, x, y, activation: str) -> dict:
    record = propagate(init, [WIDTH] * depth, x.float(), y, init_seeds(0, SEEDS), activation,
                       jacobian_inputs=INPUTS)  # fmt: skip
    j = record["jacobian"]
    assert j["available"] and j["inputs"] == INPUTS and j["factors"] == depth - 1
    return j


@pytest.mark.mnist
def test_tanh_at_the_edge_of_chaos_orthogonal_weights_keep_the_spectrum_narrow(mnist_batch):
    """tanh, depth 50, width 256, sigma_b2 = 1e-3 at its critical sigma_w2, on MNIST images each
    scaled so that the first layer puts it at q* (the paper's q^0 = q*). (a) m1 agrees with
    chi_1^(L-1) = 1; (b) the spread with the prediction, Gaussian and orthogonal; (c) orthogonal
    weights give a spread over 5 times smaller (about 24 times: 0.044 against 1.044 per layer)."""
    x, y = mnist_batch
    sw2 = critical_sigma_w2("tanh", SB2)
    qs = q_star("tanh", sw2, SB2)
    x = x * math.sqrt((qs - SB2) / sw2) / x.pow(2).mean(1, keepdim=True).sqrt()
    spreads = {}
    for weights in ("gaussian", "orthogonal"):
        init = init_spec("mean_field", sigma_w2=sw2, sigma_b2=SB2, weights=weights)
        j = _spectrum(init, DEPTH, x, y, "tanh")
        assert j["weights"] == weights
        assert j["chi_1_power"] == pytest.approx(1.0, abs=1e-6)
        mean, half = seed_interval(j["m1"]["per_seed"])
        assert abs(mean - j["chi_1_power"]) <= half, (weights, mean, half)
        expected = fixed_point_jacobian_moments("tanh", sw2, SB2, DEPTH - 1, weights)["spread"]
        assert j["spread"]["predicted"] == pytest.approx(expected, rel=1e-6)  # the q path at q*
        mean, half = seed_interval(j["spread"]["per_seed"])
        assert abs(mean - expected) <= half, (weights, mean, half, expected)
        spreads[weights] = mean
    assert spreads["gaussian"] >= 5 * spreads["orthogonal"]


@pytest.mark.mnist
def test_relu_spectrum_spreads_with_depth_whatever_the_weights(mnist_batch):
    """ReLU with He's Gaussian weights and orthogonal ones at the same gain (sqrt 2), depths 5,
    20, 50: the spread grows strictly with depth for both, and follows (L-1)(2 - 1 - s1): 2 per
    layer Gaussian, 1 orthogonal. The prediction is the infinite-width limit; at width N a
    product of L-1 random factors departs from it by O((L-1)/N) (Hanin & Nica 2019: such
    products are governed by L/N), measured here as +4% at depths 5 and 20 and -14% for He at
    depth 50 (width 256; 1% at width 512), so the interval is the 99% t interval widened by
    (L-1)/N times the prediction."""
    x, y = mnist_batch
    for name in ("he", "orthogonal"):
        means = []
        for depth in (5, 20, 50):
            j = _spectrum(init_spec(name), depth, x, y, "relu")
            s1 = WEIGHT_S1[j["weights"]]
            assert j["spread"]["predicted"] == (depth - 1) * (2 - 1 - s1)
            mean, half = seed_interval(j["spread"]["per_seed"])
            finite_width = (depth - 1) / WIDTH * j["spread"]["predicted"]
            assert abs(mean - j["spread"]["predicted"]) <= half + finite_width, (name, depth, mean)
            means.append(mean)
        assert means == sorted(means) and len(set(means)) == 3, (name, means)


def test_an_orthogonal_linear_stack_is_an_isometry():
    """Every singular value 1 (log10 s = 0, none counted as zero), spread 0 as predicted (to
    the float32 init's orthogonality)."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 784, generator=gen), torch.zeros(4, dtype=torch.long)
    spec = {"name": "orthogonal", "bias": 0.0}
    j = propagate(spec, [16, 16, 16], x, y, [0, 1], "linear", jacobian_inputs=4)["jacobian"]
    h = j["histogram"]
    assert h["zero_fraction"] == 0.0 and sum(h["counts"]) == 2 * 4 * 16
    assert h["log10_edges"][0] <= 0.0 <= h["log10_edges"][-1]
    assert j["spread"]["measured"] == pytest.approx(0.0, abs=1e-10)  # float32 weights
    assert j["spread"]["predicted"] == 0.0 and j["m1"]["measured"] == pytest.approx(1.0)


def test_gaussian_mean_field_keeps_its_fingerprint():
    """init.weights=gaussian draws what mean_field drew before the setting existed (the same
    normal_ call): left out of the fingerprint, so those runs are still found; orthogonal is
    another run."""
    cfg = OmegaConf.to_container(compose_train(["init=mean_field", "data=synthetic"]))
    assert cfg["init"]["weights"] == "gaussian"
    before = {**cfg, "init": {k: v for k, v in cfg["init"].items() if k != "weights"}}
    assert fingerprint(cfg, None)["sha256"] == fingerprint(before, None)["sha256"]
    orth = {**cfg, "init": {**cfg["init"], "weights": "orthogonal"}}
    assert fingerprint(orth, None)["sha256"] != fingerprint(cfg, None)["sha256"]
    torch.manual_seed(0)
    w = torch.empty(64, 32)
    INITS["mean_field"](w, sigma_w2=1.5)
    torch.manual_seed(0)
    assert torch.equal(w, torch.empty(64, 32).normal_(0.0, math.sqrt(1.5 / 32)))


def test_spectrum_plots_draw_records_with_a_spectrum(tmp_path):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 784, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    records = [
        {**propagate(init_spec(name), [32] * depth, x, y, [0, 1], jacobian_inputs=4),
         "inputs": {"kind": "gaussian", "dataset": "gaussian", "n": 8}}
        for name in ("he", "orthogonal") for depth in (2, 4)
    ]  # fmt: skip
    assert plot_spectrum(records[0], tmp_path / "s.png").stat().st_size > 0
    assert plot_spectrum_sweep(records, tmp_path / "sweep.png").stat().st_size > 0
    off = {**records[0], "jacobian": None}
    assert plot_spectrum(off, tmp_path / "no.png") is None
    assert plot_spectrum_sweep([off], tmp_path / "no.png") is None
    assert not (tmp_path / "no.png").exists()
