"""The mean-field theory (initlab.propagation.theory) on its own: numpy, checked against torch
and against direct numerical integration."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import integrate
from torch import nn

from initlab.mlp import ACTIVATION_MODULES as ACTIVATIONS
from initlab.propagation.theory import (
    ACTIVATION_FUNCTIONS,
    EXACT,
    GAUSSIAN_CLOSED_FORM,
    GAUSSIAN_QUADRATURE,
    LEAKY_RELU_SLOPE,
    NORM_EPS,
    activation_moments,
    c_star,
    chi_1,
    correlation_map,
    critical_sigma_w2,
    depth_scales,
    output_delta_moment,
    pair_moments,
    predict,
    predict_correlation,
    q_star,
)

# a grid over the range pre-activations take, avoiding the kink at 0 (where the derivative is a
# convention), plus 0 itself checked on its own below
GRID = np.concatenate([np.linspace(-12, -1e-3, 400), np.linspace(1e-3, 12, 400)])


def test_no_torch_import():
    """initlab.propagation, its theory and its plots import without torch (torch made
    unimportable), so a report can draw a sweep's records without it."""
    code = (
        "import sys; sys.modules['torch'] = None; "
        "import initlab.propagation, initlab.propagation.theory, initlab.propagation.plots; "
        "assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules "
        "if sys.modules[m] is not None)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_model_activations_are_all_here_with_the_models_constants():
    assert set(ACTIVATION_FUNCTIONS) == set(ACTIVATIONS)
    assert ACTIVATIONS["leaky_relu"]().negative_slope == LEAKY_RELU_SLOPE
    assert nn.BatchNorm1d(3).eps == NORM_EPS == nn.LayerNorm(3).eps


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_numpy_activations_are_torchs(name):
    """phi against the model's module, phi' against autograd, in float64 on the grid and at 0."""
    phi, dphi = ACTIVATION_FUNCTIONS[name]
    x = torch.tensor(np.append(GRID, 0.0), dtype=torch.float64, requires_grad=True)
    out = ACTIVATIONS[name]()(x)
    (grad,) = torch.autograd.grad(out.sum(), x)
    np.testing.assert_allclose(phi(x.detach().numpy()), out.detach().numpy(), rtol=1e-12, atol=0)
    # autograd's tanh' is 1 - tanh^2: exact only to a few float64 ulps of 1 in absolute terms
    np.testing.assert_allclose(dphi(x.detach().numpy()), grad.numpy(), rtol=1e-10, atol=1e-15)


def _integral(f, mean: float, var: float) -> float:
    """E[f(h)] for h ~ N(mean, var) by scipy's adaptive quadrature, independently of the theory's
    rule: pieces split where the activations have their features (0, +-20) and at 12 sd."""
    sd = math.sqrt(var)

    def integrand(h):
        return (
            f(np.array(h)) * math.exp(-0.5 * ((h - mean) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
        )

    lo, hi = mean - 12 * sd, mean + 12 * sd
    cuts = sorted(c for c in (lo, -20.0, 0.0, 20.0, hi) if lo <= c <= hi)
    return sum(
        integrate.quad(integrand, a, b, epsabs=1e-15, epsrel=1e-10, limit=500)[0]
        for a, b in zip(cuts, cuts[1:], strict=False)
    )


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize(
    ("mean", "var"),
    # from nearly linear (small q) to saturated (large_normal's q ~ 784, and far beyond)
    [(0.0, 1e-4), (0.0, 1.0), (0.0, 40.0), (0.0, 784.0), (0.0, 1e8), (-1.0, 2.0), (3.0, 100.0)],
)
def test_activation_moments_are_the_gaussian_integrals(name, mean, var):
    """E[phi(h)^2] and E[phi'(h)^2] against scipy's quadrature of the numpy functions (which the
    test above ties to torch); the method is the one the docs state."""
    phi, dphi = ACTIVATION_FUNCTIONS[name]
    second, deriv, method = activation_moments(name, mean, var)
    assert second == pytest.approx(_integral(lambda h: phi(h) ** 2, mean, var), rel=1e-8)
    assert deriv == pytest.approx(_integral(lambda h: dphi(h) ** 2, mean, var), rel=1e-8)
    if name == "linear" or (name in ("relu", "leaky_relu") and mean == 0):
        assert method == EXACT
    elif name in ("relu", "leaky_relu"):
        assert method == GAUSSIAN_CLOSED_FORM
    else:
        assert method == GAUSSIAN_QUADRATURE


def test_relu_moments_need_only_symmetry():
    """E[relu(h)^2] = E[h^2] / 2 for any symmetric h: a uniform h, not a Gaussian one."""
    h = np.linspace(-3, 3, 600_001)
    relu, drelu = ACTIVATION_FUNCTIONS["relu"]
    second, deriv, method = activation_moments("relu", 0.0, float(np.mean(h**2)))
    assert method == EXACT
    assert second == pytest.approx(float(np.mean(relu(h) ** 2)), rel=1e-5)
    assert deriv == pytest.approx(float(np.mean(drelu(h) ** 2)), rel=1e-5)


@pytest.mark.parametrize("k", [2, 10])
def test_output_delta_moment_limits_and_spread(k):
    """Small logits: p = 1/k exactly, so E[(p - onehot)^2] = (k - 1) / k^2; large logits: p is
    one-hot on a class that is the label with probability 1/k: 2 (k - 1) / k^2."""
    assert output_delta_moment(0.0, k) == pytest.approx((k - 1) / k**2, rel=1e-12)
    assert output_delta_moment(1e8, k) == pytest.approx(2 * (k - 1) / k**2, rel=0.02)
    assert output_delta_moment(1.0, k) == output_delta_moment(1.0, k)  # a fixed generator
    values = [output_delta_moment(q, k) for q in (0.01, 0.1, 1.0, 10.0)]
    assert values == sorted(values)


def test_output_delta_moment_is_the_mean_of_the_softmax_gradient():
    """Against an independent draw (torch's softmax): agreement within 6 standard errors of the
    two Monte Carlo estimates."""
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(200_000, 10, generator=gen, dtype=torch.float64) * math.sqrt(2.0)
    p = torch.softmax(z, dim=1)
    p[:, 0] -= 1.0
    per_sample = p.pow(2).mean(dim=1)
    se = float(per_sample.std()) / math.sqrt(len(per_sample))
    assert abs(output_delta_moment(2.0, 10) - float(per_sample.mean())) < 6 * math.sqrt(2) * se


def test_predict_methods_per_quantity():
    sizes = [784, 256, 256, 10]
    zero = [(0.0, 0.0)] * 3
    he = predict(sizes, [2 / 784, 2 / 256, 2 / 256], zero, 1.0, "relu")
    assert he["q"] == pytest.approx([2.0, 2.0, 2.0])
    assert he["method"]["q"].startswith("exact in expectation")
    assert he["method"]["grad_q"].startswith("gradient independence, an approximation")
    biased = predict(sizes, [2 / 784, 2 / 256, 2 / 256], [(-1.0, 0.0)] * 3, 1.0, "relu")
    assert biased["method"]["post_q"].startswith("Gaussian approximation")
    normed = predict(sizes, [2 / 784, 2 / 256, 2 / 256], zero, 1.0, "relu", "batchnorm")
    assert normed["method"]["grad_q"] is None and normed["grad_q"] == [None] * 3
    unknown = predict(sizes, [None, 1.0, 1.0], zero, 1.0)
    assert unknown["method"] == {"q": None, "post_q": None, "grad_q": None}
    assert unknown["q"] == [None] * 3


def test_backward_recursion_is_the_product_of_layer_factors():
    """E[delta_{l-1}^2] = E[phi'^2] n_l v_l E[delta_l^2]: for ReLU with He, each factor is 1/2 *
    n * 2/n = 1 for square layers."""
    sizes = [100, 50, 50, 50, 10]
    v = [2 / n for n in sizes[:-1]]
    out = predict(sizes, v, [(0.0, 0.0)] * 4, 1.0)
    g = out["grad_q"]
    assert g[1] == pytest.approx(g[2], rel=1e-12)  # a square layer (50 -> 50) keeps it
    assert g[2] == pytest.approx(0.5 * 10 * (2 / 50) * g[3], rel=1e-12)  # into the 10 outputs
    assert g[0] == pytest.approx(g[1], rel=1e-12)


# -- depth scales and the edge of chaos ------------------------------------------------------
# Reference values (tanh, sigma_b2 = 0.05) from independent code, each checked to half a unit in
# its last printed digit, the most that rounding to that digit allows: 0.0005 / 0.744 = 0.07%
# for the 3-digit values (well inside the 1%), 0.05 / 3.6 = 1.4% and 0.05 / 7.0 = 0.7%
# for the "about" 3.6 and 7.0, and 0.5 / 25 = 2% for the "about 25", whose 2 digits are all the
# reference gives.
SB2 = 0.05


def test_tanh_reference_values():
    assert critical_sigma_w2("tanh", SB2) == pytest.approx(1.761, abs=5e-4)
    assert chi_1("tanh", 1.0, SB2) == pytest.approx(0.759, abs=5e-4)
    assert depth_scales("tanh", 1.0, SB2)[1] == pytest.approx(3.6, abs=0.05)
    assert c_star("tanh", 1.0, SB2) == 1.0  # ordered: chi_1 < 1
    assert c_star("tanh", 2.0, SB2) == pytest.approx(0.744, abs=5e-4)
    assert depth_scales("tanh", 2.0, SB2)[1] == pytest.approx(25, abs=0.5)
    assert depth_scales("tanh", 4.0, SB2)[1] == pytest.approx(7.0, abs=0.05)


def test_xi_c_diverges_at_the_edge_of_chaos():
    """xi_c = -1 / log chi_c*, and chi_c* -> chi_1 -> 1 at the critical sigma_w2, from both
    sides: 1% off it, xi_c is already past 50 layers."""
    crit = critical_sigma_w2("tanh", SB2)
    assert chi_1("tanh", crit, SB2) == pytest.approx(1.0, abs=1e-9)
    assert depth_scales("tanh", crit * 0.99, SB2)[1] > 50
    assert depth_scales("tanh", crit * 1.01, SB2)[1] > 50
    assert depth_scales("tanh", crit * 0.9, SB2)[1] < depth_scales("tanh", crit * 0.99, SB2)[1]


@pytest.mark.parametrize("sigma_w2", [0.5, 1.0, 1.9, 2.0, 3.0])
def test_relu_closed_forms(sigma_w2):
    """chi_1 = sigma_w2 / 2 exactly; q* = s_b / (1 - sigma_w2 / 2), none from sigma_w2 = 2 on;
    the edge of chaos at 2, for every sigma_b2."""
    assert chi_1("relu", sigma_w2, 0.1) == sigma_w2 / 2
    expected_q = 0.1 / (1 - sigma_w2 / 2) if sigma_w2 < 2 else math.inf
    assert q_star("relu", sigma_w2, 0.1) == pytest.approx(expected_q, rel=1e-12)
    assert critical_sigma_w2("relu", 0.1) == 2.0
    if sigma_w2 < 2:  # ordered: c* = 1, and xi_c from chi_c* = chi_1
        assert c_star("relu", sigma_w2, 0.1) == 1.0
        assert depth_scales("relu", sigma_w2, 0.1)[1] == pytest.approx(-1 / math.log(sigma_w2 / 2))
    else:
        assert depth_scales("relu", sigma_w2, 0.1) == (math.inf, math.inf)


def _pair_integral(f, q: float, c: float) -> float:
    """E[f(u1, u2)] by scipy's adaptive 2-D quadrature in (z1, z2) out to 12 sd, independent of
    the theory's tensor rule."""
    s = math.sqrt(1 - c * c)

    def integrand(z2, z1):
        u1, u2 = math.sqrt(q) * z1, math.sqrt(q) * (c * z1 + s * z2)
        return f(u1, u2) * math.exp(-0.5 * (z1 * z1 + z2 * z2)) / (2 * math.pi)

    return integrate.dblquad(integrand, -12, 12, -12, 12, epsabs=1e-13, epsrel=1e-10)[0]


@pytest.mark.parametrize("name", ["tanh", "gelu"])
@pytest.mark.parametrize(("q", "c"), [(0.3, 0.5), (2.2, 0.165), (2.2, 0.95), (40.0, -0.7)])
def test_pair_moments_are_the_2d_gaussian_integrals(name, q, c):
    phi, dphi = ACTIVATION_FUNCTIONS[name]
    both, deriv = pair_moments(name, q, c)
    assert both == pytest.approx(_pair_integral(lambda a, b: phi(a) * phi(b), q, c), rel=1e-7)
    assert deriv == pytest.approx(_pair_integral(lambda a, b: dphi(a) * dphi(b), q, c), rel=1e-7)


@pytest.mark.parametrize("c", [-0.9, 0.0, 0.3, 0.99])
def test_relu_pair_moments_are_the_arc_cosine_kernels(c):
    """The closed form against scipy on the region u1, u2 > 0 (z1 > 0, z2 > -c z1 / s): there
    relu(u1) relu(u2) = u1 u2 and relu'(u1) relu'(u2) = 1, smooth integrands."""
    s, q = math.sqrt(1 - c * c), 1.7

    def on_region(f):
        def integrand(z2, z1):
            u1, u2 = math.sqrt(q) * z1, math.sqrt(q) * (c * z1 + s * z2)
            return f(u1, u2) * math.exp(-0.5 * (z1 * z1 + z2 * z2)) / (2 * math.pi)

        return integrate.dblquad(integrand, 0, 12, lambda z1: -c * z1 / s, 12, epsrel=1e-11)[0]

    both, deriv = pair_moments("relu", q, c)
    assert both == pytest.approx(on_region(lambda a, b: a * b), rel=1e-8)
    assert deriv == pytest.approx(on_region(lambda a, b: 1.0), rel=1e-8)
    a = LEAKY_RELU_SLOPE  # leaky relu at c = +-1: E[phi(u)^2] and E[phi(u) phi(-u)] = -a q
    assert pair_moments("leaky_relu", q, 1.0)[0] == pytest.approx((1 + a * a) / 2 * q, rel=1e-12)
    assert pair_moments("leaky_relu", q, -1.0)[0] == pytest.approx(-a * q, rel=1e-12)


@pytest.mark.parametrize(
    ("name", "sigma_w2"),
    [
        ("tanh", 4.0),
        pytest.param("tanh", 2.0, marks=pytest.mark.slow),  # 9 s, 10 s: near the edge, slow
        pytest.param("sigmoid", 150.0, marks=pytest.mark.slow),  # maps converge (-m slow)
    ],
)
def test_c_star_is_the_attractor_and_chi_c_its_slope(name, sigma_w2):
    """Iterating the map from 0.5 for 15 xi_c layers lands on c* (e^-15 of the gap, < 1e-6); the
    map's central-difference slope is chi_c* at c* (difference error ~ h^2 times the third
    derivative ~ 1e-8, inside rel 1e-5); the q map's slope at q* is exp(-1 / xi_q)."""
    xi_q, xi_c = depth_scales(name, sigma_w2, SB2)
    cs = c_star(name, sigma_w2, SB2)
    c = 0.5
    for _ in range(int(15 * xi_c)):
        c = correlation_map(name, sigma_w2, SB2, c)
    assert c == pytest.approx(cs, abs=1e-6)
    h = 1e-4
    up, down = (correlation_map(name, sigma_w2, SB2, cs + d) for d in (h, -h))
    assert (up - down) / (2 * h) == pytest.approx(math.exp(-1 / xi_c), rel=1e-5)
    assert correlation_map(name, sigma_w2, SB2, 1.0) == pytest.approx(1.0, abs=1e-12)
    qs = q_star(name, sigma_w2, SB2)
    q_map = [sigma_w2 * activation_moments(name, 0.0, qs + d)[0] + SB2 for d in (-h, h)]
    assert (q_map[1] - q_map[0]) / (2 * h) == pytest.approx(math.exp(-1 / xi_q), rel=1e-5)


def test_chi_1_is_the_slope_of_the_map_at_one():
    """One-sided difference at c = 1: error ~ h f''(1) / 2, f'' <= a few, so rel 1e-3 at h = 1e-5
    (chi_1 = 1.34 here)."""
    h = 1e-5
    slope = (1.0 - correlation_map("tanh", 4.0, SB2, 1.0 - h)) / h
    assert slope == pytest.approx(chi_1("tanh", 4.0, SB2), rel=1e-3)


def test_q_star_is_the_q_maps_fixed_point():
    q = q_star("tanh", 2.0, SB2)
    assert 2.0 * activation_moments("tanh", 0.0, q)[0] + SB2 == pytest.approx(q, rel=1e-12)


def test_predict_correlation_follows_the_map_and_needs_zero_mean_biases():
    sizes = [100, 64, 64, 10]
    wv = [2.0 / 100, 2.0 / 64, 2.0 / 64]
    bs = [(0.0, SB2)] * 3
    q = predict(sizes, wv, bs, 1.0, "tanh")["q"]
    out = predict_correlation(sizes, wv, bs, q, 1.0, 0.3, "tanh")
    assert out[0] == pytest.approx((2.0 * 0.3 + SB2) / (2.0 + SB2), rel=1e-12)
    assert out[1] == pytest.approx(correlation_map("tanh", 2.0, SB2, out[0], q=q[0]), rel=1e-12)
    assert predict_correlation(sizes, wv, [(0.1, SB2)] * 3, q, 1.0, 0.3, "tanh") == [None] * 3
