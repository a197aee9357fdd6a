"""Mean-field theory of an MLP at init: per-layer second moments from the weight variances alone.

numpy and math only, no torch, so the theory can be read, tested and extended (correlation maps,
depth scales) without the measuring machinery. The recursions (n_l the widths, v_l the per-entry
weight variance of layer l, b and s_b^2 the bias mean and variance):

    q_1 = n_0 v_1 q_0 + s_b^2 + b^2,     q_l = n_{l-1} v_l E[phi(h_{l-1})^2] + s_b^2 + b^2,
    E[delta_{l-1}^2] = E[phi'(h_{l-1})^2] n_l v_l E[delta_l^2].

Given E[phi(h_{l-1})^2], the forward step is exact in expectation for any zero-mean weights
independent of the layer's input. E[phi(h)^2] itself is exact only where the symmetry of h is
enough (ReLU, leaky ReLU, linear, with zero-mean symmetric biases); elsewhere h is taken as
N(b, q - b^2). The backward step rests on gradient independence (the backward weights taken
independent of the forward pass): an approximation at every width (docs/propagation.md measures
its error).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# nn.LeakyReLU's default slope, which the model's leaky_relu uses (a test checks they agree).
LEAKY_RELU_SLOPE = 0.01
NORM_EPS = 1e-5  # BatchNorm1d / LayerNorm default eps (a test checks it)
QUADRATURE_POINTS = 20  # Gauss-Legendre nodes per panel (``gaussian_expectation``)
OUTPUT_MC_SAMPLES = 200_000

# How E[phi(h)^2] and E[phi'(h)^2] were computed (activation_moments' third value).
EXACT = "exact"
GAUSSIAN_CLOSED_FORM = "gaussian closed form"
GAUSSIAN_QUADRATURE = "gaussian quadrature"

Array = np.ndarray
_erf = np.vectorize(math.erf, otypes=[float])


def _gauss_cdf(x: Array) -> Array:
    return 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))


def _gauss_pdf(x: Array) -> Array:
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _sigmoid(x: Array) -> Array:
    e = np.exp(-np.abs(x))  # no overflow, and full relative precision in both tails
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _tanh_prime(x: Array) -> Array:
    e = np.exp(-2.0 * np.abs(x))  # sech^2 without cosh's overflow, or 1 - tanh^2's cancellation
    return 4.0 * e / (1.0 + e) ** 2


# name -> (phi, phi'): the model's activations (initlab.mlp.ACTIVATIONS) in numpy. GELU is the
# exact erf form, nn.GELU's default; phi' at a kink (0) is autograd's choice (0 for relu).
ACTIVATION_FUNCTIONS: dict[str, tuple[Callable[[Array], Array], Callable[[Array], Array]]] = {
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float)),
    "leaky_relu": (
        lambda x: np.where(x > 0, x, LEAKY_RELU_SLOPE * x),
        lambda x: np.where(x > 0, 1.0, LEAKY_RELU_SLOPE),
    ),
    "tanh": (np.tanh, _tanh_prime),
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * (1.0 - _sigmoid(x))),
    "gelu": (lambda x: x * _gauss_cdf(x), lambda x: _gauss_cdf(x) + x * _gauss_pdf(x)),
    "linear": (lambda x: x, np.ones_like),
}


def gaussian_expectation(
    fs: Sequence[Callable[[Array], Array]], mean: float, var: float
) -> list[float]:
    """E[f(h)] for h ~ N(mean, var), for each f of ``fs``: composite Gauss-Legendre quadrature.

    Panels at the Gaussian's scale (sd / 2, out to 12 sd) and, within |h| < 20, at the
    activations' (0.5, with an edge at 0): Gauss-Hermite with a fixed number of nodes misses the
    unit-scale features (tanh'(h)^2's bump) once var >> 1 (121 nodes: E[tanh'(h)^2] 6x too
    large at var 784).
    """
    sd = math.sqrt(max(var, 0.0))
    if sd == 0.0:
        return [float(f(np.array(mean))) for f in fs]
    lo, hi = mean - 12.0 * sd, mean + 12.0 * sd
    inner = np.arange(-20.0, 20.25, 0.5)
    edges = np.unique(np.concatenate([np.linspace(lo, hi, 49), inner[(inner > lo) & (inner < hi)]]))
    nodes, weights = np.polynomial.legendre.leggauss(QUADRATURE_POINTS)
    a, b = edges[:-1, None], edges[1:, None]
    h = (a + b) / 2 + (b - a) / 2 * nodes
    w = (b - a) / 2 * weights * _gauss_pdf((h - mean) / sd) / sd
    return [float((w * f(h)).sum()) for f in fs]


def activation_moments(activation: str, mean: float, var: float) -> tuple[float, float, str]:
    """(E[phi(h)^2], E[phi'(h)^2], method) for h ~ N(mean, var).

    ``EXACT`` for relu / leaky_relu / linear with mean 0: only the symmetry of h is used, not its
    law. ``GAUSSIAN_CLOSED_FORM`` for relu / leaky_relu with a mean; ``GAUSSIAN_QUADRATURE``
    (``gaussian_expectation``) for the smooth activations.
    """
    if activation not in ACTIVATION_FUNCTIONS:
        raise ValueError(
            f"activation={activation!r} is not one of: {', '.join(ACTIVATION_FUNCTIONS)}"
        )
    sd = math.sqrt(max(var, 0.0))
    if activation == "linear":
        return mean * mean + var, 1.0, EXACT
    if activation in ("relu", "leaky_relu"):
        alpha = LEAKY_RELU_SLOPE if activation == "leaky_relu" else 0.0
        if mean == 0.0:
            return (1 + alpha**2) / 2 * var, (1 + alpha**2) / 2, EXACT
        if sd == 0.0:
            slope = 1.0 if mean > 0 else alpha
            return (slope * mean) ** 2, slope**2, EXACT
        t = np.array(mean / sd)
        cdf, cdf_neg, pdf = float(_gauss_cdf(t)), float(_gauss_cdf(-t)), float(_gauss_pdf(t))
        pos = (mean * mean + var) * cdf + mean * sd * pdf  # E[h^2 1{h>0}]
        neg = (mean * mean + var) * cdf_neg - mean * sd * pdf  # E[h^2 1{h<0}]
        return pos + alpha**2 * neg, cdf + alpha**2 * cdf_neg, GAUSSIAN_CLOSED_FORM
    phi, dphi = ACTIVATION_FUNCTIONS[activation]
    second, deriv = gaussian_expectation([lambda h: phi(h) ** 2, lambda h: dphi(h) ** 2], mean, var)
    return second, deriv, GAUSSIAN_QUADRATURE


def output_delta_moment(
    q_logits: float, num_classes: int, samples: int = OUTPUT_MC_SAMPLES
) -> float:
    """E[(softmax(z) - onehot(y))^2] averaged over classes, for i.i.d. z_k ~ N(0, q_logits).

    The per-example gradient of cross-entropy with respect to the logits. Monte Carlo with a fixed
    generator (seed 0), so the prediction is a deterministic function of q_logits.
    """
    z = np.random.default_rng(0).standard_normal((samples, num_classes))
    z *= math.sqrt(max(q_logits, 0.0))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[:, 0] -= 1.0  # by symmetry the label can be class 0
    return float(np.mean(p * p))


def _forward_method(methods: set[str]) -> str:
    if methods <= {EXACT}:
        return (
            "exact in expectation (symmetric pre-activations: relu, leaky_relu or linear with "
            "zero-mean symmetric biases)"
        )
    how = " + ".join(m.removeprefix("gaussian ") for m in sorted(methods - {EXACT}))
    return f"Gaussian approximation, h ~ N(b, q - b^2) ({how})"


def predict(
    sizes: Sequence[int],
    weight_vars: Sequence[float | None],
    biases: Sequence[tuple[float, float]],
    q0: float,
    activation: str = "relu",
    norm: str = "none",
) -> dict[str, Any]:
    """Mean-field moments of the MLP with widths ``sizes`` = [n_0, n_1, ..., n_L] (input to logits).

    ``weight_vars[l]`` and ``biases[l]`` (mean, variance) are layer l+1's; ``q0`` = E[x^2] of the
    inputs. Returns lists over the L Linear layers: ``q`` (the activation's input; logits last),
    ``q_linear`` (the Linear's output, before any norm), ``post_q`` (None for the output layer),
    ``grad_q`` (E[delta^2] at the Linear's output); and ``method``, how each of q, post_q and
    grad_q was obtained (None where it was not). Entries are None where no prediction exists (an
    unknown weight variance makes every later layer unknown). With BatchNorm or LayerNorm, the
    normalized value has q = s / (s + eps), s the spread the recursion gives the Linear's output;
    no backward prediction through a norm (it depends on per-unit batch variances, not on q).
    """
    normed = norm in ("batchnorm", "layernorm")
    n_layers = len(sizes) - 1
    out: dict[str, Any] = {k: [None] * n_layers for k in ("q", "q_linear", "post_q", "grad_q")}
    deriv: list[float | None] = [None] * n_layers
    methods: set[str] = set()
    m = float(q0)  # E[a_{l-1}^2]: the second moment entering layer l
    for k in range(n_layers):
        v = weight_vars[k]
        if v is None:
            break
        b_mean, b_var = biases[k]
        spread = sizes[k] * v * m + b_var  # the zero-mean part of h
        q_lin = spread + b_mean * b_mean
        out["q_linear"][k] = q_lin
        if k == n_layers - 1:
            out["q"][k] = q_lin
            break
        if normed:
            q = spread / (spread + NORM_EPS)  # both subtract the mean (and so the constant bias)
            post, deriv[k], how = activation_moments(activation, 0.0, q)
        else:
            q = q_lin
            post, deriv[k], how = activation_moments(activation, b_mean, spread)
        methods.add(how)
        out["q"][k], out["post_q"][k] = q, post
        m = post
    q_logits = out["q"][-1]
    forward = _forward_method(methods)
    method: dict[str, str | None] = {"q": None, "post_q": None, "grad_q": None}
    if q_logits is not None:
        method["q"] = (
            f"hidden layers normalized: q = s / (s + eps); {forward}" if normed else forward
        )
        method["post_q"] = forward if n_layers > 1 else None
        if not normed:
            out["grad_q"][-1] = output_delta_moment(q_logits - biases[-1][0] ** 2, sizes[-1])
            for k in range(n_layers - 2, -1, -1):
                v_next = weight_vars[k + 1]
                out["grad_q"][k] = deriv[k] * sizes[k + 2] * v_next * out["grad_q"][k + 1]
            deriv_how = "exact" if methods <= {EXACT} else "with h ~ N(b, q - b^2)"
            method["grad_q"] = (
                "gradient independence, an approximation (the backward weights taken independent "
                f"of the forward pass); E[phi'(h)^2] {deriv_how}; at the output, logits i.i.d. "
                "N(0, q_L) (Monte Carlo)"
            )
    out["method"] = method
    return out
