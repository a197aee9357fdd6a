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

import functools
import math
from collections.abc import Callable, Mapping, Sequence
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


@functools.lru_cache(maxsize=8)
def _legendre(points: int) -> tuple[Array, Array]:
    """Gauss-Legendre nodes and weights on [-1, 1] (computed once per count: the fixed points and
    depth scales call for them thousands of times)."""
    return np.polynomial.legendre.leggauss(points)


def gaussian_nodes(mean: float, var: float, points: int = QUADRATURE_POINTS) -> tuple[Array, Array]:
    """Nodes h and weights w with sum(w f(h)) = E[f(h)] for h ~ N(mean, var): composite
    Gauss-Legendre quadrature, ``points`` nodes per panel.

    Panels at the Gaussian's scale (sd / 2, out to 12 sd) and, within |h| < 20, at the
    activations' (0.5, with an edge at 0): Gauss-Hermite with a fixed number of nodes misses the
    unit-scale features (tanh'(h)^2's bump) once var >> 1 (121 nodes: E[tanh'(h)^2] 6x too
    large at var 784). var 0: the one node ``mean``.
    """
    sd = math.sqrt(max(var, 0.0))
    if sd == 0.0:
        return np.array([float(mean)]), np.array([1.0])
    lo, hi = mean - 12.0 * sd, mean + 12.0 * sd
    inner = np.arange(-20.0, 20.25, 0.5)
    edges = np.unique(np.concatenate([np.linspace(lo, hi, 49), inner[(inner > lo) & (inner < hi)]]))
    nodes, weights = _legendre(points)
    a, b = edges[:-1, None], edges[1:, None]
    h = (a + b) / 2 + (b - a) / 2 * nodes
    w = (b - a) / 2 * weights * _gauss_pdf((h - mean) / sd) / sd
    return h.ravel(), w.ravel()


def gaussian_expectation(
    fs: Sequence[Callable[[Array], Array]], mean: float, var: float
) -> list[float]:
    """E[f(h)] for h ~ N(mean, var), for each f of ``fs`` (``gaussian_nodes``' rule)."""
    if var <= 0.0:
        return [float(f(np.array(mean))) for f in fs]
    h, w = gaussian_nodes(mean, var)
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


# -- residual nets: the forward variance of the residual stream (Yang & Schoenholz 2017, "Mean
# field residual networks: on the edge of chaos"; De & Smith 2020). initlab.mlp's pre-activation
# block h_{l+1} = h_l + a_l f(h_l), f = m x [norm ->] phi -> Linear, the stream never normalized:
#   q_0 = n_0 v_0 q_x + E[b_0^2]     (the embedding ``inp``)
#   q_{l+1} = q_l + 2 a_l mu_l b_m + a_l^2 E[f(h_l)^2],     mu_{l+1} = mu_l + a_l b_m
# with E[f^2] the one-layer step of ``predict`` applied m times from h_l. The cross term
# E[h f] = mu b_m: the branch's last weights are zero-mean and independent of h.
def _branch(
    layers: Sequence[tuple[float, tuple[float, float]]],
    width: int,
    mean: float,
    spread: float,
    activation: str,
    normed: bool,
) -> tuple[list[float], float, float, set[str]]:
    """The branch [norm ->] phi -> Linear, ``len(layers)`` times, from an input of per-unit mean
    ``mean`` and variance ``spread``: (each activation's input q, E[f^2], f's mean, methods)."""
    pre, methods = [], set()
    for v, (b_mean, b_var) in layers:
        if normed:  # the norm subtracts the mean and divides by the spread
            q = spread / (spread + NORM_EPS)
            post, _, how = activation_moments(activation, 0.0, q)
        else:
            q = spread + mean * mean
            post, _, how = activation_moments(activation, mean, spread)
        pre.append(q)
        methods.add(how)
        mean, spread = b_mean, width * v * post + b_var
    return pre, spread + mean * mean, mean, methods


def predict_residual(
    variances: Mapping[str, Any],
    input_size: int,
    width: int,
    q0: float,
    activation: str = "relu",
    norm: str = "none",
) -> dict[str, Any]:
    """Mean-field second moments of a residual net (``initlab.mlp``) at init.

    ``variances`` is ``initlab.inits.residual_variances``' mapping: (weight variance, (bias mean,
    bias variance)) of ``inp``, of each block's branch layers and of ``out``, and each block's
    gate a_l; ``q0`` = E[x^2] of the inputs. Returns ``q`` (the stream: the embedding's output,
    then each block's output, L + 1 values), ``branch_q`` (E[f^2] of each block's branch, before
    its gate), ``branch_pre`` (per block, the q at each of the branch's activation inputs, the
    norm's output if any), ``q_logits`` and ``method``.

    Without a norm, E[f^2] grows with q_l: relu with He branches and gate 1 doubles q per block
    (exponential in depth), a bounded activation adds at most a^2 n v per block (polynomial: the
    contrast Yang & Schoenholz draw). With batchnorm or layernorm the branch sees q = s / (s +
    eps) ~ 1 whatever q_l, so E[f^2] is one constant and q grows linearly (De & Smith 2020): block
    l's branch is ~1/sqrt(l) of the stream. A zero last layer (fixup) or gate (skipinit) gives
    E[f^2] a^2 = 0: q stays q_0.

    What is exact: each Linear step and the stream's sum, in expectation given E[phi(h)^2]
    (zero-mean weights independent of their input). E[phi(h)^2] is exact for relu / leaky_relu /
    linear on symmetric zero-mean h: the embedding's output and every branch-internal
    pre-activation are symmetric given their inputs, but the stream h_l = h_{l-1} + a f is only
    symmetric up to O(1/width) (f depends on h_{l-1} through the ReLU), so relu's E[relu(h)^2] =
    q/2 at a block's first activation is an approximation, whose error adds up over blocks.
    Elsewhere (smooth activations, biases with a mean, inside a norm's per-unit statistics) h is
    taken as Gaussian, as in ``predict``.
    """
    normed = norm in ("batchnorm", "layernorm")
    v0, (b0_mean, b0_var) = variances["inp"]
    mean, spread = b0_mean, input_size * v0 * q0 + b0_var
    q = [spread + mean * mean]
    branch_q, branch_pre, methods = [], [], set()
    for layers, gate in zip(variances["branch"], variances["gates"], strict=True):
        pre, f2, f_mean, how = _branch(layers, width, mean, spread, activation, normed)
        methods |= how
        q_next = q[-1] + 2.0 * gate * mean * f_mean + gate * gate * f2
        mean += gate * f_mean
        spread = q_next - mean * mean
        q.append(q_next)
        branch_q.append(f2)
        branch_pre.append(pre)
    pre, q_logits, _, how = _branch([variances["out"]], width, mean, spread, activation, normed)
    methods |= how
    forward = _forward_method(methods)
    if methods <= {EXACT}:
        forward = (
            "each step exact in expectation given E[phi(h)^2]; relu's E[relu(h)^2] = q/2 on the "
            "stream an approximation (the stream is symmetric only up to O(1/width))"
        )
    if normed:
        forward = f"branch inputs normalized: q = s / (s + eps); {forward}"
    return {
        "q": q,
        "branch_q": branch_q,
        "branch_pre": branch_pre,
        "final_pre": pre[0],
        "q_logits": q_logits,
        "method": forward,
    }


# -- depth scales: the mean-field fixed points of a deep net (Poole et al. 2016; Schoenholz et
# al. 2017, "Deep Information Propagation"). Weights N(0, sigma_w2 / fan_in), biases
# N(0, sigma_b2), every layer alike; u1 = sqrt(q) z1, u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2):
#   q map:    q' = sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2                       (fixed point q*)
#   c map:    c' = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q'                  (fixed point c*)
#   chi_1 = sigma_w2 E[phi'(sqrt(q*) z)^2],   chi_c = sigma_w2 E[phi'(u1) phi'(u2)] at (q*, c*)
#   xi_q = -1 / log(chi_1 + sigma_w2 E[phi''(u) phi(u)]),   xi_c = -1 / log(chi_c*)
PAIR_QUADRATURE_POINTS = 10  # per panel and axis of the 2-D rule: (10 x ~100 panels)^2 nodes
Q_STAR_MAX_ITER = 10_000
Q_STAR_RTOL = 1e-13
Q_DIVERGED = 1e30  # the q map iterated past this is taken to have no finite fixed point
HOMOGENEOUS = ("relu", "leaky_relu", "linear")  # E[phi(sqrt(q) z)^2] = m q: the maps close
_BISECTIONS = 60  # narrowings of a bracket at most (60 halvings: below float64 resolution)


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATION_FUNCTIONS:
        raise ValueError(
            f"activation={activation!r} is not one of: {', '.join(ACTIVATION_FUNCTIONS)}"
        )


def _relu_kernels(c: float) -> tuple[float, float]:
    """(E[relu(u1) relu(u2)] / q, P(u1 > 0, u2 > 0)) for unit-variance u's of correlation c: the
    arc-cosine kernels (Cho & Saul 2009), exact where quadrature would straddle the kink."""
    theta = math.acos(c)
    return (math.sqrt(1.0 - c * c) + (math.pi - theta) * c) / (2 * math.pi), (math.pi - theta) / (
        2 * math.pi
    )


def pair_moments(activation: str, q: float, c: float) -> tuple[float, float]:
    """(E[phi(u1) phi(u2)], E[phi'(u1) phi'(u2)]) for u1, u2 ~ N(0, q) of correlation c.

    Closed forms for the piecewise-linear activations (leaky: phi = relu(u) - a relu(-u), and
    relu(-u2) has correlation -c with u1); elsewhere tensor quadrature in (u1, e), u2 = c u1 + e
    with e ~ N(0, q (1 - c^2)) independent of u1: ``gaussian_nodes`` on each axis.
    """
    _check_activation(activation)
    c = min(max(float(c), -1.0), 1.0)
    if activation == "linear":
        return q * c, 1.0
    if activation in ("relu", "leaky_relu"):
        a = LEAKY_RELU_SLOPE if activation == "leaky_relu" else 0.0
        k, k_neg = _relu_kernels(c), _relu_kernels(-c)
        return q * ((1 + a * a) * k[0] - 2 * a * k_neg[0]), (1 + a * a) * k[1] + 2 * a * k_neg[1]
    phi, dphi = ACTIVATION_FUNCTIONS[activation]
    u1, w1 = gaussian_nodes(0.0, q, PAIR_QUADRATURE_POINTS)
    e, w2 = gaussian_nodes(0.0, q * (1.0 - c * c), PAIR_QUADRATURE_POINTS)
    u2 = c * u1[:, None] + e[None, :]
    inner = (phi(u2) @ w2, dphi(u2) @ w2)  # E[. | u1], per node u1
    return float(w1 @ (phi(u1) * inner[0])), float(w1 @ (dphi(u1) * inner[1]))


@functools.lru_cache(maxsize=1024)
def q_star(activation: str, sigma_w2: float, sigma_b2: float) -> float:
    """The fixed point of the q map, iterated from q = 1 (the attracting one, which a deep net
    reaches); math.inf where q grows without bound (relu with sigma_w2 >= 2).

    The homogeneous activations have q' = sigma_w2 m q + sigma_b2: solved, not iterated.
    """
    _check_activation(activation)
    if activation in HOMOGENEOUS:
        slope = sigma_w2 * activation_moments(activation, 0.0, 1.0)[0]
        return sigma_b2 / (1.0 - slope) if slope < 1.0 else math.inf
    q = 1.0
    for _ in range(Q_STAR_MAX_ITER):
        new = sigma_w2 * activation_moments(activation, 0.0, q)[0] + sigma_b2
        if not new < Q_DIVERGED:
            return math.inf
        if abs(new - q) <= Q_STAR_RTOL * max(new, 1e-300):
            return new
        q = new
    return q  # converging algebraically (sigma_b2 = 0 at the critical point): the last iterate


def correlation_map(
    activation: str, sigma_w2: float, sigma_b2: float, c: float, q: float | None = None
) -> float:
    """c_{l+1} from c_l for two inputs with pre-activation second moment q (default q*).

    Normalized by q_{l+1} = sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2, which is q* when q = q*:
    a net still on its way to q* (the per-layer q of ``predict``) has c_{l+1} <= 1 as it must.
    With q* infinite (relu, sigma_w2 >= 2) the q -> infinity limit: the bias drops out.
    """
    q = q_star(activation, sigma_w2, sigma_b2) if q is None else float(q)
    if math.isinf(q):
        q, sigma_b2 = 1.0, 0.0  # homogeneous phi: the map depends on q only through sigma_b2 / q
    q_next = sigma_w2 * activation_moments(activation, 0.0, q)[0] + sigma_b2
    if q_next == 0.0:
        return 1.0  # both inputs map to 0 (sigma_b2 = 0, q = 0): the limit c -> 1
    return (sigma_w2 * pair_moments(activation, q, c)[0] + sigma_b2) / q_next


def chi_1(activation: str, sigma_w2: float, sigma_b2: float) -> float:
    """sigma_w2 E[phi'(sqrt(q*) z)^2]: the slope of the c map at c = 1, and the per-layer factor of
    E[delta^2] at q*; 1 at the edge of chaos. relu: sigma_w2 / 2 at every q."""
    q = q_star(activation, sigma_w2, sigma_b2)
    if math.isinf(q):
        q = 1.0 if activation in HOMOGENEOUS else 1e8  # q-independent, or the q -> inf limit
    return sigma_w2 * activation_moments(activation, 0.0, q)[1]


def c_star(activation: str, sigma_w2: float, sigma_b2: float) -> float:
    """The attracting fixed point of the c map in [0, 1].

    E[phi(u1) phi(u2)] = sum_n a_n^2 q^n c^n (Hermite expansion), so the map f is increasing and
    convex on [0, 1] with f(1) = 1 and f'(1) = chi_1: for chi_1 <= 1 (ordered, critical) c* = 1
    is the only attractor; for chi_1 > 1 (chaotic) g = f(c) - c is >= 0 below the other root and
    < 0 above it, which regula falsi finds (c* = 0 when f(0) = 0, odd phi with sigma_b2 = 0).
    """
    if chi_1(activation, sigma_w2, sigma_b2) <= 1.0 or math.isinf(
        q_star(activation, sigma_w2, sigma_b2)
    ):
        return 1.0  # relu past sigma_w2 = 2: the limit map c' = k(c) >= c still creeps to 1

    def g(c: float) -> float:
        return correlation_map(activation, sigma_w2, sigma_b2, c) - c

    lo, hi = 0.0, None
    for k in range(1, 50):  # find where g turns negative, approaching 1 by halving 1 - c
        x = 1.0 - 2.0**-k
        if g(x) < 0.0:
            hi = x
            break
        lo = x
    if hi is None:
        return 1.0  # within 2^-49 of 1
    # Illinois regula falsi on the bracket (g(lo) >= 0 > g(hi)): superlinear where bisection
    # halves, about 10 evaluations of the 2-D integral instead of 60; the bracket always holds
    # the root, and the loop ends when it is as tight as float64 allows
    g_lo, g_hi, side = g(lo), g(hi), 0
    for _ in range(_BISECTIONS):
        mid = (lo * g_hi - hi * g_lo) / (g_hi - g_lo)
        if not lo < mid < hi:
            mid = (lo + hi) / 2
        g_mid = g(mid)
        if g_mid >= 0.0:
            lo, g_lo = mid, g_mid
            if side == 1:
                g_hi /= 2
            side = 1
        else:
            hi, g_hi = mid, g_mid
            if side == -1:
                g_lo /= 2
            side = -1
        if g_mid == 0.0 or hi - lo <= 4 * math.ulp(hi):
            break
    return (lo + hi) / 2


def _depth(chi: float) -> float:
    """-1 / log(chi): the number of layers over which a deviation shrinks by e; math.inf at or
    past chi = 1, where nothing decays exponentially."""
    return -1.0 / math.log(chi) if 0.0 < chi < 1.0 else (0.0 if chi <= 0.0 else math.inf)


def depth_scales(activation: str, sigma_w2: float, sigma_b2: float) -> tuple[float, float]:
    """(xi_q, xi_c): the depths over which q approaches q* and c approaches c*.

    xi_q's slope chi_1 + sigma_w2 E[phi'' phi] is the q map's derivative at q*, computed as
    sigma_w2 E[u phi(u) phi'(u)] / q* (Gaussian integration by parts: no phi'' needed, and
    relu's delta-function phi'' contributes 0, as phi(0) = 0). xi_c from chi_c at c*: chi_1
    in the ordered phase (c* = 1), below 1 away from the edge of chaos on both sides.
    """
    q = q_star(activation, sigma_w2, sigma_b2)
    if math.isinf(q):
        return math.inf, math.inf
    phi, dphi = ACTIVATION_FUNCTIONS[activation]
    if activation in HOMOGENEOUS:
        slope_q = sigma_w2 * activation_moments(activation, 0.0, 1.0)[0]
    elif q == 0.0:
        slope_q = sigma_w2 * float(dphi(np.array(0.0))) ** 2
    else:
        (m,) = gaussian_expectation([lambda u: u * phi(u) * dphi(u)], 0.0, q)
        slope_q = sigma_w2 * m / q
    c = c_star(activation, sigma_w2, sigma_b2)
    chi_c = sigma_w2 * pair_moments(activation, q, c)[1]
    return _depth(slope_q), _depth(chi_c)


@functools.lru_cache(maxsize=256)
def critical_sigma_w2(activation: str, sigma_b2: float) -> float:
    """The sigma_w2 of the edge of chaos, chi_1 = 1: bisection on [0, hi], hi doubled from 1
    until chi_1(hi) > 1 (chi_1 grows with sigma_w2 along the q* curve; chi_1(0) = 0)."""
    _check_activation(activation)
    if activation in HOMOGENEOUS:
        return 1.0 / activation_moments(activation, 0.0, 1.0)[1]  # chi_1 = sigma_w2 E[phi'^2]
    lo, hi = 0.0, 1.0
    while chi_1(activation, hi, sigma_b2) <= 1.0:
        lo, hi = hi, 2.0 * hi
        if hi > 1e6:
            raise ValueError(f"no edge of chaos for {activation} below sigma_w2 = 1e6")
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        if chi_1(activation, mid, sigma_b2) <= 1.0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def predict_correlation(
    sizes: Sequence[int],
    weight_vars: Sequence[float | None],
    biases: Sequence[tuple[float, float]],
    q: Sequence[float | None],
    q0: float,
    c0: float,
    activation: str = "relu",
) -> list[float | None]:
    """Mean-field c_l (pre-activation correlation of two inputs) of each Linear layer's output.

    ``q`` is ``predict``'s per-layer q (the pre-activation second moment each layer's inputs come
    from), ``c0`` the inputs' own correlation and ``q0`` their second moment. Layer 1 is linear in
    the inputs: c_1 = (s_w q0 c0 + s_b) / (s_w q0 + s_b); then ``correlation_map`` with each
    layer's own s_w = n_{l-1} v_l and s_b = bias variance. None throughout for biases with a mean
    (the map assumes zero-mean pre-activations) or an unknown weight variance.
    """
    n_layers = len(sizes) - 1
    out: list[float | None] = [None] * n_layers
    if any(v is None for v in weight_vars) or any(b[0] != 0.0 for b in biases):
        return out
    sw = [sizes[k] * float(weight_vars[k]) for k in range(n_layers)]  # type: ignore[arg-type]
    sb = [float(b[1]) for b in biases]
    first = sw[0] * q0 + sb[0]
    c = (sw[0] * q0 * c0 + sb[0]) / first if first > 0 else 1.0
    out[0] = c
    for k in range(1, n_layers):
        q_prev = q[k - 1]
        if q_prev is None:
            break
        c = correlation_map(activation, sw[k], sb[k], c, q=q_prev)
        out[k] = c
    return out


# -- Jacobian spectrum: the singular values of the input-output Jacobian at init (Pennington,
# Schoenholz & Ganguli 2017, "Resurrecting the sigmoid in deep learning through dynamical
# isometry: theory and practice", arXiv:1711.04735). For hidden layers fc1..fcL of width N the
# Jacobian of the hidden stack is J = dh_L/dh_1 = W_L D_{L-1} W_{L-1} ... W_2 D_1, with
# D_l = diag(phi'(h_l)): L - 1 factors W_l D_{l-1}, the analogue of the paper's J = dx^L/dh^0 =
# prod_l D^l W^l. The first layer (784 -> N) and the output layer are not part of it.
# Each factor is described by two numbers: sigma_w2 (W_l^T W_l has mean eigenvalue sigma_w2 =
# fan_in v_l) and s1, the first coefficient of its S-transform S(z) = (1 / sigma_w2)(1 + s1 z +
# ...): -1 for i.i.d. entries (Marchenko-Pastur at aspect ratio 1; Gaussian or not: uniform
# weights have it too, by universality), 0 for a scaled orthogonal W (a single eigenvalue).
WEIGHT_S1: dict[str, float] = {"gaussian": -1.0, "orthogonal": 0.0}


def derivative_moments(activation: str, q: float) -> tuple[float, float]:
    """(mu1, mu2) = (E[phi'(h)^2], E[phi'(h)^4]) for h ~ N(0, q): the first two spectral moments
    of D^2, the paper's mu_k = E[phi'(sqrt(q*) z)^(2k)] at any q.

    Exact for relu, leaky_relu and linear: phi'(h)^2 takes its two values with probability 1/2
    each, by symmetry alone (relu: 1/2, 1/2). Otherwise ``gaussian_expectation``'s quadrature.
    """
    _check_activation(activation)
    if activation == "linear":
        return 1.0, 1.0
    if activation in ("relu", "leaky_relu"):
        a = LEAKY_RELU_SLOPE if activation == "leaky_relu" else 0.0
        return (1.0 + a**2) / 2, (1.0 + a**4) / 2
    _, dphi = ACTIVATION_FUNCTIONS[activation]
    mu1, mu2 = gaussian_expectation([lambda h: dphi(h) ** 2, lambda h: dphi(h) ** 4], 0.0, q)
    return mu1, mu2


def jacobian_moments(
    activation: str,
    sigma_w2s: Sequence[float],
    qs: Sequence[float],
    weights: str = "gaussian",
) -> dict[str, float]:
    """Mean ``m1``, relative variance ``spread`` = var / m1^2 and variance ``var`` of the
    eigenvalues of J J^T for J = W_L D_{L-1} ... W_2 D_1 (free-probability limit, N -> inf).

    Factor l has weights of ``sigma_w2s[l]`` (= fan_in v) and its D at pre-activation second
    moment ``qs[l]``; ``weights`` names the weights' ensemble (``WEIGHT_S1``). Derivation: a
    spectrum with moments m1, m2 has the S-transform S(z) = (1/m1)(1 + (1 - m2/m1^2) z + ...)
    (invert psi(z) = m1 z + m2 z^2 + ...; S = (1 + z) psi^-1(z) / z). J J^T has the nonzero
    spectrum of the product of the free factors W_l^T W_l and D_l^2, and S-transforms of free
    factors multiply (the paper's S_JJ^T = prod S_{W^T W} S_{D^2}). Multiplying the expansions:
    m1 = prod sigma_w2_l mu1_l, and 1 - m2/m1^2 = sum of each factor's first coefficient, s1 for
    W and 1 - mu2_l/mu1_l^2 for D^2, so spread = m2/m1^2 - 1 = sum_l (mu2_l/mu1_l^2 - 1 - s1).
    With identical layers at chi_1 = 1 this is the paper's m1 = (sigma_w2 mu1)^L = 1 and
    sigma^2_JJ^T = L (mu2/mu1^2 - 1 - s1), L counting factors.
    """
    if weights not in WEIGHT_S1:
        raise ValueError(f"weights={weights!r} is not one of: {', '.join(WEIGHT_S1)}")
    if len(sigma_w2s) != len(qs):
        raise ValueError(f"{len(sigma_w2s)} weight variances but {len(qs)} q values")
    s1 = WEIGHT_S1[weights]
    m1, spread = 1.0, 0.0
    for sigma_w2, q in zip(sigma_w2s, qs, strict=True):
        mu1, mu2 = derivative_moments(activation, q)
        m1 *= sigma_w2 * mu1
        spread += mu2 / mu1**2 - 1.0 - s1 if mu1 > 0 else math.inf
    return {"m1": m1, "spread": spread, "var": m1 * m1 * spread}


def fixed_point_jacobian_moments(
    activation: str, sigma_w2: float, sigma_b2: float, factors: int, weights: str = "gaussian"
) -> dict[str, float]:
    """``jacobian_moments`` of ``factors`` identical layers with every D at q* (the paper's
    setting: inputs already at the fixed point). ``m1`` is then chi_1^factors (1 at the edge of
    chaos); also returned as ``chi_1_power``, from ``chi_1``."""
    q = q_star(activation, sigma_w2, sigma_b2)
    if math.isinf(q):
        q = 1.0 if activation in HOMOGENEOUS else 1e8  # as chi_1 does
    out = jacobian_moments(activation, [sigma_w2] * factors, [q] * factors, weights)
    out["chi_1_power"] = chi_1(activation, sigma_w2, sigma_b2) ** factors
    return out
