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

from initlab.mlp import ACTIVATIONS
from initlab.propagation.theory import (
    ACTIVATION_FUNCTIONS,
    EXACT,
    GAUSSIAN_CLOSED_FORM,
    GAUSSIAN_QUADRATURE,
    LEAKY_RELU_SLOPE,
    NORM_EPS,
    activation_moments,
    output_delta_moment,
    predict,
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
