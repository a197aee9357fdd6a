"""Initializers: one small function per strategy, looked up by name in ``INITS``.

Each initializer fills one ``nn.Linear`` weight in place, ``INITS[name](weight, **params)``,
from the torch global RNG (seeded once per run). Its keyword parameters come from the config
(``init.std=0.05``, ``init.gain=2.0``, ``init.mode=fan_out``); fan sizes come from the weight's
shape, ``(fan_out, fan_in)``. On a Parameter, call them under ``torch.no_grad()`` (as
``apply_init`` does). Formulas, variances and sources of all 21: ``docs/inits.md``.

Each initializer declares, next to its draw, the closed-form variance of the weights it draws
(``@declare_variance``): ``weight_variance`` reads it for the mean-field prediction
(``initlab.propagation``), and a test checks it against large draws. An init with no closed form
declares that, and why.

Four small tables say what some inits need beyond one weight; ``apply_init`` reads them:

- ``USES_ACTIVATION``: gets ``activation=`` (the model's), for its gain (kaiming, orthogonal).
- ``OWN_BIAS``: sets its own biases, ``fn(bias, weight, **the init's parameters it takes)``, when
  ``init.bias`` is null (default, mean_field).
  For every other init, a null bias means 0.
- ``DATA_DEPENDENT``: a second pass over the whole model on a batch of training inputs,
  ``fn(model, batch, **params)``, after every weight is filled (lsuv). Its ``INITS`` entry is the
  per-weight first step, and its config parameters go to the second pass.
- ``STRUCTURAL``: a second pass over a residual net's blocks, ``fn(model)``, after every weight
  is filled (fixup, skipinit): what a weight is depends on where it sits. Its ``INITS`` entry is
  the per-weight first step; on a net without residual blocks ``apply_init`` refuses it.

Adding an init: write ``def name_(weight, ...)`` here with its ``@declare_variance``, add it to
``INITS``, and add ``conf/init/<name>.yaml`` with ``name: <name>``, its parameters and ``bias``.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from initlab.config import WEIGHT_ENSEMBLES
from initlab.mlp import ACTIVATION_MODULES, ResidualBlock, residual_blocks
from initlab.propagation.theory import critical_sigma_w2

log = logging.getLogger(__name__)


def fans(weight: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear weight of shape (out_features, in_features)."""
    fan_out, fan_in = weight.shape
    return fan_in, fan_out


def activation_gain(activation: str) -> float:
    """``torch.nn.init.calculate_gain`` of a model activation (relu sqrt(2), tanh 5/3, ...).

    leaky_relu uses the slope the model's LeakyReLU has (0.01). GELU has no entry in PyTorch's
    table: it gets ReLU's sqrt(2), which it approaches for |x| >> 1.
    """
    if activation == "gelu":
        return nn.init.calculate_gain("relu")
    if activation == "leaky_relu":
        slope = ACTIVATION_MODULES["leaky_relu"]().negative_slope
        return nn.init.calculate_gain("leaky_relu", slope)
    return nn.init.calculate_gain(activation)


class Init(Protocol):
    """An initializer: fills one weight in place, and says what variance its entries have."""

    variance: Callable[..., float | None] | None
    no_variance: str | None

    def __call__(self, *tensors: Tensor, **params: Any) -> None: ...


def declare_variance(
    formula: Callable[..., float | None] | None, no_variance: str | None = None
) -> Callable[[Callable[..., None]], Init]:
    """Attach to an init the per-entry variance of the weights it draws, right next to the draw.

    ``formula(fan_in, fan_out, **params)`` takes every parameter of the draw, by the draw's names
    and without defaults (``weight_variance`` fills in the draw's own, so they have one source).
    It returns None where there is no closed form, and ``no_variance`` then says why; ``formula``
    None: never one. The attributes are ``fn.variance`` and ``fn.no_variance``.
    """
    if formula is None and not no_variance:
        raise ValueError("an init without a variance formula must say why (no_variance=...)")

    def attach(fn: Callable[..., None]) -> Init:
        fn.variance = formula  # type: ignore[attr-defined]
        fn.no_variance = no_variance  # type: ignore[attr-defined]
        return fn  # type: ignore[return-value]

    return attach


def _orthogonal_gain(gain: float | None, activation: str) -> float:
    return activation_gain(activation) if gain is None else gain


def _kaiming_fan(fan_in: int, fan_out: int, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"init.mode={mode!r} is not one of: fan_in, fan_out")
    return fan_in if mode == "fan_in" else fan_out


# -- constant: the tutorial's symmetric inits ------------------------------------------------


@declare_variance(lambda fan_in, fan_out: 0.0)
def zero_(weight: Tensor) -> None:
    """All weights 0: every hidden unit computes the same thing, and gets no gradient."""
    weight.zero_()


@declare_variance(
    lambda fan_in, fan_out, value: 0.0 if value == 0 else None,
    no_variance="nonzero-mean weights (every unit the same): the recursion needs zero-mean ones",
)
def constant_(weight: Tensor, value: float = 0.1) -> None:
    """All weights ``value``: units differ from 0 but not from each other; symmetry never breaks."""
    weight.fill_(value)


# -- fixed scale: the tutorial's small and large random inits --------------------------------


@declare_variance(lambda fan_in, fan_out, bound: bound**2 / 3.0)
def small_uniform_(weight: Tensor, bound: float = 0.1) -> None:
    """U[-bound, bound], bound 0.1: variance bound^2 / 3, whatever the layer's size."""
    weight.uniform_(-bound, bound)


@declare_variance(lambda fan_in, fan_out, std: std**2)
def small_normal_(weight: Tensor, std: float = 0.01) -> None:
    """N(0, std^2), std 0.01: the tutorial's "N(0, 0.01)", read as the std, not the variance."""
    weight.normal_(0.0, std)


@declare_variance(lambda fan_in, fan_out, bound: bound**2 / 3.0)
def large_uniform_(weight: Tensor, bound: float = 1.0) -> None:
    """U[-bound, bound], bound 1: variance 1/3.

    Through a ReLU layer E[h^2] is multiplied by fan_in var / 2 = fan_in / 6, so the activations'
    scale grows ~ sqrt(fan_in / 6) per layer (9.2 at fan_in 512).
    """
    weight.uniform_(-bound, bound)


@declare_variance(lambda fan_in, fan_out, std: std**2)
def large_normal_(weight: Tensor, std: float = 1.0) -> None:
    """N(0, std^2) with std 1: variance 1.

    Through a ReLU layer E[h^2] is multiplied by fan_in var / 2 = fan_in / 2, so the activations'
    scale grows ~ sqrt(fan_in / 2) per layer (16 at fan_in 512).
    """
    weight.normal_(0.0, std)


# -- fan-scaled ------------------------------------------------------------------------------


@declare_variance(lambda fan_in, fan_out, gain: gain**2 * 2.0 / (fan_in + fan_out))
def xavier_(weight: Tensor, gain: float = 1.0) -> None:
    """Glorot & Bengio (2010), uniform: U[-a, a], a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(weight)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    weight.uniform_(-bound, bound)


@declare_variance(lambda fan_in, fan_out, gain: gain**2 * 2.0 / (fan_in + fan_out))
def xavier_normal_(weight: Tensor, gain: float = 1.0) -> None:
    """Glorot & Bengio (2010), normal: N(0, gain^2 * 2 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(weight)
    weight.normal_(0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


@declare_variance(lambda fan_in, fan_out: 2.0 / fan_in)
def he_(weight: Tensor) -> None:
    """He et al. (2015), for ReLU: N(0, 2 / fan_in), so E[h^2] is preserved layer to layer."""
    fan_in, _ = fans(weight)
    weight.normal_(0.0, math.sqrt(2.0 / fan_in))


@declare_variance(lambda fan_in, fan_out: 2.0 / fan_in)
def he_uniform_(weight: Tensor) -> None:
    """He et al. (2015), uniform: U[-sqrt(6 / fan_in), sqrt(6 / fan_in)], variance 2 / fan_in."""
    fan_in, _ = fans(weight)
    bound = math.sqrt(6.0 / fan_in)
    weight.uniform_(-bound, bound)


@declare_variance(  # normal or uniform: the same variance
    lambda fan_in, fan_out, activation, mode, distribution: (
        activation_gain(activation) ** 2 / _kaiming_fan(fan_in, fan_out, mode)
    )
)
def kaiming_(
    weight: Tensor, activation: str = "relu", mode: str = "fan_in", distribution: str = "normal"
) -> None:
    """He et al. (2015) generalised: std = gain / sqrt(fan), gain of the model's activation.

    ``mode`` fan_in keeps the forward variance, fan_out the backward one; ``distribution`` normal
    N(0, std^2) or uniform U[-sqrt(3) std, sqrt(3) std]. For ReLU, fan_in, normal: exactly ``he``.
    """
    std = activation_gain(activation) / math.sqrt(_kaiming_fan(*fans(weight), mode))
    if distribution == "normal":
        weight.normal_(0.0, std)
    elif distribution == "uniform":
        weight.uniform_(-math.sqrt(3.0) * std, math.sqrt(3.0) * std)
    else:
        raise ValueError(f"init.distribution={distribution!r} is not one of: normal, uniform")


@declare_variance(lambda fan_in, fan_out: 2.0 / (3.0 * fan_in))
def tutorial_he_(weight: Tensor) -> None:
    """The tutorial's "He": U[-sqrt(2 / fan_in), sqrt(2 / fan_in)].

    Its variance is 2 / (3 fan_in), one third of He's 2 / fan_in: each ReLU layer shrinks
    E[h^2] by 3. Kept as its own arm to measure what the slip costs.
    """
    fan_in, _ = fans(weight)
    bound = math.sqrt(2.0 / fan_in)
    weight.uniform_(-bound, bound)


@declare_variance(lambda fan_in, fan_out: 1.0 / fan_in)
def lecun_(weight: Tensor) -> None:
    """LeCun et al. (1998): N(0, 1 / fan_in), for activations with gain 1 (tanh-like, SELU)."""
    fan_in, _ = fans(weight)
    weight.normal_(0.0, math.sqrt(1.0 / fan_in))


# -- structured ------------------------------------------------------------------------------


@declare_variance(
    # the mean square entry: exact, as rows (or columns) have norm gain; also the v for which
    # E|W a|^2 / fan_out = v |a|^2 holds for a Haar-random W, as the i.i.d. recursion needs
    lambda fan_in, fan_out, gain, activation: (
        _orthogonal_gain(gain, activation) ** 2 / max(fan_in, fan_out)
    )
)
def orthogonal_(weight: Tensor, gain: float | None = None, activation: str = "relu") -> None:
    """Saxe et al. (2013): a random orthogonal matrix (QR of a Gaussian one) times ``gain``.

    Rows orthonormal when fan_out <= fan_in, else columns: W W^T (or W^T W) = gain^2 I.
    ``gain`` None: the activation's gain (``activation_gain``).

    Dynamical isometry (every singular value of the input-output Jacobian near 1) holds only with
    square layers, in a linear net or a tanh net near its critical point (gain near 1, small
    pre-activations; Pennington et al. 2017; not tanh's gain 5/3). Only a square layer has every
    singular value equal to gain: a narrowing one maps fan_in - fan_out input directions to 0, a
    widening one fills only fan_in output directions. With ReLU, the Jacobian D W (D the 0/1 mask
    of active units) has spread singular values whatever W is: no isometry there.
    """
    nn.init.orthogonal_(weight, gain=_orthogonal_gain(gain, activation))


def mean_field_sigma_w2(sigma_w2: float | None, sigma_b2: float, activation: str) -> float:
    """``init.sigma_w2``, or for null the edge of chaos of ``activation`` at ``sigma_b2``
    (chi_1 = 1, ``initlab.propagation.theory.critical_sigma_w2``: tanh 1.1892 at sigma_b2 =
    0.001, 1.7610 at 0.05; relu 2, He's): a study at criticality stays there when sigma_b2 or the
    activation changes."""
    if sigma_w2 is not None:
        return float(sigma_w2)
    return critical_sigma_w2(activation, float(sigma_b2))


@declare_variance(
    lambda fan_in, fan_out, sigma_w2, sigma_b2, weights, activation: (
        mean_field_sigma_w2(sigma_w2, sigma_b2, activation) / fan_in
    )
)
def mean_field_(
    weight: Tensor,
    sigma_w2: float | None = 1.0,
    sigma_b2: float = 0.05,
    weights: str = "gaussian",
    activation: str = "relu",
) -> None:
    """Mean-field theory's family (Poole et al. 2016; Schoenholz et al. 2017): W ~ N(0,
    sigma_w2 / fan_in), and (``mean_field_bias_``, unless ``init.bias`` is set) b ~ N(0,
    sigma_b2). sigma_w2 and sigma_b2 set the order-to-chaos phase and the depth scales
    (``initlab.propagation.theory``): with tanh and sigma_b2 = 0.05, critical at sigma_w2 = 1.76.

    ``weights="orthogonal"``: a random orthogonal matrix with the same mean square entry
    sigma_w2 / fan_in (gain sqrt(sigma_w2), times sqrt(fan_out / fan_in) for a widening layer,
    whose columns are the orthonormal ones). The forward moments are the same; the spectrum of
    the input-output Jacobian is not: for tanh at the edge of chaos with sigma_b2 = 1e-3, the
    relative variance of its squared singular values grows by 0.044 per layer, against 1.044
    with Gaussian weights (``initlab.propagation.theory.jacobian_moments``; Pennington et al.
    2017).
    """
    sigma_w2 = mean_field_sigma_w2(sigma_w2, sigma_b2, activation)
    fan_in, fan_out = fans(weight)
    if weights == "gaussian":
        weight.normal_(0.0, math.sqrt(sigma_w2 / fan_in))
    elif weights == "orthogonal":
        nn.init.orthogonal_(weight, gain=math.sqrt(sigma_w2 * max(1.0, fan_out / fan_in)))
    else:
        raise ValueError(f"init.weights={weights!r} is not one of: {', '.join(WEIGHT_ENSEMBLES)}")


@declare_variance(lambda fan_in, fan_out, sigma_w2, sigma_b2: sigma_b2)
def mean_field_bias_(
    bias: Tensor, weight: Tensor, sigma_w2: float | None = 1.0, sigma_b2: float = 0.05
) -> None:
    """The mean-field family's bias: N(0, sigma_b2) per entry, whatever the layer's size."""
    del weight, sigma_w2
    bias.normal_(0.0, math.sqrt(sigma_b2))


@declare_variance(lambda fan_in, fan_out: 1.0 / (3.0 * fan_in))
def standard_(weight: Tensor) -> None:
    """Glorot & Bengio (2010) eq. (1), "the commonly used heuristic": U[-1/sqrt(fan_in),
    1/sqrt(fan_in)], variance 1 / (3 fan_in), biases 0.

    A sixth of He's variance: E[h^2] shrinks by 6 per ReLU layer, by 3 per linear one.
    """
    bound = 1.0 / math.sqrt(fans(weight)[0])
    weight.uniform_(-bound, bound)


@declare_variance(standard_.variance)
def default_(weight: Tensor) -> None:
    """PyTorch's own ``nn.Linear`` init: kaiming_uniform_(a=sqrt(5)), i.e. ``standard``'s law.

    Drawn by torch's own call, so that it is a fresh ``nn.Linear`` draw for draw in any dtype
    (in float32 also ``standard``'s draws; in float64 the bounds differ in the last bit). Its bias
    is drawn too (``default_bias_``) unless ``init.bias`` is set: "no init" is an arm.
    """
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))


@declare_variance(standard_.variance)  # the variance of a bias entry, for the layer's fans
def default_bias_(bias: Tensor, weight: Tensor) -> None:
    """PyTorch's own ``nn.Linear`` bias: U[-1/sqrt(fan_in), 1/sqrt(fan_in)], as nn.Linear."""
    fan_in, _ = fans(weight)
    bound = 1.0 / math.sqrt(fan_in)
    bias.uniform_(-bound, bound)


def hadamard(n: int) -> Tensor:
    """The n x n Sylvester Hadamard matrix (n a power of 2): entries +-1, H H^T = n I."""
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


@declare_variance(None, no_variance="deterministic identity / Hadamard weights, not i.i.d.")
def zero_identity_(weight: Tensor) -> None:
    """ZerO (Zhao et al. 2021, Algorithm 1): deterministic, only zeros and ones (up to a scale).

    fan_out <= fan_in: the partial identity I[:fan_out, :fan_in] (unit i copies input i).
    fan_out > fan_in (a layer that widens): c * H[:fan_out, :fan_in], H the 2^m Sylvester
    Hadamard matrix with m = ceil(log2(fan_out)) and c = 2^(-(m-1)/2), as the paper has it.
    """
    fan_in, fan_out = fans(weight)
    if fan_out <= fan_in:
        weight.copy_(torch.eye(fan_out, fan_in))
    else:
        m = math.ceil(math.log2(fan_out))
        weight.copy_(2 ** (-(m - 1) / 2) * hadamard(2**m)[:fan_out, :fan_in])


@declare_variance(None, no_variance="data-dependent: each layer is rescaled on the batch")
def lsuv_preinit_(weight: Tensor) -> None:
    """LSUV's first step: an orthonormal matrix (gain 1). ``lsuv_`` then rescales on data."""
    nn.init.orthogonal_(weight)


def _output_var(model: nn.Module, layer: nn.Module, x: Tensor) -> float:
    """Variance of all of ``layer``'s outputs when ``model`` runs on ``x``."""
    seen: list[float] = []
    handle = layer.register_forward_hook(lambda _m, _in, out: seen.append(out.var().item()))
    try:
        model(x)
    finally:
        handle.remove()
    return seen[0]


@torch.no_grad()
def lsuv_(
    model: nn.Module, batch: Tensor, tol: float = 0.1, max_iter: int = 10, batch_size: int = 1000
) -> None:
    """Mishkin & Matas (2016), after ``lsuv_preinit_``: layer-sequential unit variance.

    On the first ``batch_size`` rows of ``batch``, for each Linear in forward order (the output
    layer too): W <- W / sqrt(Var(Wx + b)) until |Var - 1| < ``tol``, at most ``max_iter`` times.
    The variance is that of the Linear's own output, before any BatchNorm/LayerNorm; the norm
    layers upstream run in training mode (batch statistics), as in training. Their running
    statistics are restored afterwards: the init leaves no trace of the batch but the weights.
    """
    x = batch[:batch_size]
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    was_training = model.training
    model.train()
    try:
        for name, layer in model.named_modules():
            if not isinstance(layer, nn.Linear):
                continue
            for _ in range(max_iter):
                var = _output_var(model, layer, x)
                if abs(var - 1.0) < tol:
                    break
                if not (math.isfinite(var) and var > 0):
                    raise ValueError(f"init=lsuv: layer {name!r} has output variance {var}")
                layer.weight.div_(math.sqrt(var))
            else:
                log.warning(
                    "init=lsuv: layer %r: variance %.3f after %d steps", name, var, max_iter
                )
    finally:
        for name, b in model.named_buffers():
            b.copy_(buffers[name])
        model.train(was_training)


# -- residual nets: inits that see the blocks -----------------------------------------------

RESIDUAL_NO_VARIANCE = (
    "position-dependent: set per residual block (a zero last layer, a scaled branch, a zero "
    "gate), not one law per weight; initlab.inits.residual_variances gives each position's"
)


def _gain_normal_(weight: Tensor, activation: str) -> None:
    """N(0, gain^2 / fan_in): He's draw with the activation's gain (``kaiming`` fan_in normal,
    draw for draw)."""
    weight.normal_(0.0, activation_gain(activation) / math.sqrt(fans(weight)[0]))


@declare_variance(None, no_variance=RESIDUAL_NO_VARIANCE)
def fixup_(weight: Tensor, activation: str = "relu") -> None:
    """Fixup's first step: every weight N(0, gain^2 / fan_in); ``fixup_blocks_`` then zeroes and
    scales by position."""
    _gain_normal_(weight, activation)


@declare_variance(None, no_variance=RESIDUAL_NO_VARIANCE)
def skipinit_(weight: Tensor, activation: str = "relu") -> None:
    """SkipInit's weights: every weight N(0, gain^2 / fan_in); ``skipinit_blocks_`` closes the
    gates."""
    _gain_normal_(weight, activation)


def fixup_scale(blocks: int, branch_layers: int) -> float:
    """L^(-1/(2m-2)), Fixup's factor on a branch's Linear layers before its last, for L blocks of
    m layers (m = 1: there is no such layer, 1)."""
    return 1.0 if branch_layers == 1 else float(blocks) ** (-1.0 / (2 * branch_layers - 2))


def _blocks(model: nn.Module, name: str) -> list[ResidualBlock]:
    blocks = [b for _, b in residual_blocks(model)]
    if not blocks:
        raise ValueError(
            f"init={name} needs model.residual=true: {type(model).__name__} has no residual blocks"
        )
    return blocks


@torch.no_grad()
def fixup_blocks_(model: nn.Module) -> None:
    """Zhang, Dauphin & Ma (2019), "Fixup initialization: residual learning without
    normalization" (ICLR), after ``fixup_`` has drawn every weight He-like:

    1. the last Linear of every residual branch and the output layer ``out`` at 0;
    2. the branch's other Linears multiplied by L^(-1/(2m-2)) (L blocks, m Linear layers per
       branch; ``fixup_scale``); the embedding ``inp`` keeps its He draw;
    3. the scalar multiplier (the block's ``gate``) at 1. The paper's scalar biases are this
       net's Linear biases (0 from ``init.bias``).

    Why: with the last layer at 0, every block is the identity at init, so the stream keeps the
    embedding's scale at any depth; the scale keeps the size of the first updates of the sum of
    L branches independent of L (the paper's Theorem on the update of a residual branch).
    """
    blocks = _blocks(model, "fixup")
    scale = fixup_scale(len(blocks), blocks[0].branch_layers)
    for block in blocks:
        *inner, last = block.branch()
        for layer in inner:
            layer.weight.mul_(scale)
        last.weight.zero_()
        block.gate.fill_(1.0)
    out = getattr(model, "out", None)
    if isinstance(out, nn.Linear):
        out.weight.zero_()


@torch.no_grad()
def skipinit_blocks_(model: nn.Module) -> None:
    """De & Smith (2020), "Batch normalization biases residual blocks towards the identity
    function in deep networks" (SkipInit), as ReZero (Bachlechner et al. 2020): every block's
    learnable gate at 0, after ``skipinit_`` has drawn every weight He-like. Why: BatchNorm
    shrinks a block's branch by ~1/sqrt(l) relative to the stream at depth l; a zero gate makes
    every block the identity at init without any norm, and training opens the gates.
    """
    for block in _blocks(model, "skipinit"):
        block.gate.fill_(0.0)


INITS: dict[str, Init] = {
    "zero": zero_,
    "constant": constant_,
    "small_uniform": small_uniform_,
    "small_normal": small_normal_,
    "large_uniform": large_uniform_,
    "large_normal": large_normal_,
    "xavier": xavier_,
    "xavier_normal": xavier_normal_,
    "he": he_,
    "he_uniform": he_uniform_,
    "kaiming": kaiming_,
    "tutorial_he": tutorial_he_,
    "lecun": lecun_,
    "orthogonal": orthogonal_,
    "standard": standard_,
    "mean_field": mean_field_,
    "default": default_,
    "lsuv": lsuv_preinit_,
    "zero_identity": zero_identity_,
    "fixup": fixup_,
    "skipinit": skipinit_,
}
USES_ACTIVATION = frozenset({"kaiming", "orthogonal", "mean_field", "fixup", "skipinit"})
OWN_BIAS: dict[str, Init] = {"default": default_bias_, "mean_field": mean_field_bias_}
DATA_DEPENDENT: dict[str, Callable[..., None]] = {"lsuv": lsuv_}
# a second pass over a residual net's blocks, fn(model, **params), after every weight is filled
# (config.RESIDUAL_INITS names them, for the preflight)
STRUCTURAL: dict[str, Callable[..., None]] = {"fixup": fixup_blocks_, "skipinit": skipinit_blocks_}
NORM_LAYERS = (nn.BatchNorm1d, nn.LayerNorm)


def _check_name(name: str) -> None:
    if name not in INITS:
        raise ValueError(f"init={name!r} is not one of: {', '.join(sorted(INITS))}")


def init_parameters(name: str) -> list[str]:
    """The config parameters of init ``name`` (besides ``name`` and ``bias``)."""
    fn = DATA_DEPENDENT.get(name, INITS[name])
    context = {"weight", "activation", "model", "batch"}
    return [p for p in inspect.signature(fn).parameters if p not in context]


def _draw_params(name: str, params: Mapping[str, Any], activation: str) -> dict[str, Any]:
    """The keyword arguments ``INITS[name]`` gets from the init's config ``params`` (less
    ``name`` and ``bias``): none for a data-dependent init (its parameters are its second pass's),
    and the model's activation for the inits whose gain depends on it."""
    draw = {} if name in DATA_DEPENDENT else {k: v for k, v in params.items() if k != "bias"}
    return {"activation": activation, **draw} if name in USES_ACTIVATION else draw


def weight_variance(
    name: str,
    params: Mapping[str, Any],
    fan_in: int,
    fan_out: int,
    activation: str = "relu",
) -> float | None:
    """Per-entry variance of the weights init ``name`` draws for a (fan_out, fan_in) layer.

    ``params``: the init's config less ``name`` (``bias`` is ignored); ``activation``: the
    model's, as ``apply_init`` gets it. The init's own ``@declare_variance`` formula, with the
    draw's defaults for the parameters ``params`` leaves out. None where the init has no closed
    form (``INITS[name].no_variance`` says why).
    """
    _check_name(name)
    fn = INITS[name]
    if fn.variance is None:
        return None
    given = _draw_params(name, params, activation)
    declared = list(inspect.signature(fn).parameters.values())[1:]  # after the weight
    unknown = sorted(set(given) - {p.name for p in declared})
    if unknown:
        raise ValueError(f"init={name} has no parameter {', '.join(unknown)}")
    kwargs = {p.name: given.get(p.name, p.default) for p in declared}
    return fn.variance(int(fan_in), int(fan_out), **kwargs)


def _own_params(own: Callable[..., Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The init's parameters an OWN_BIAS function takes (after bias and weight), its defaults for
    those ``params`` leaves out."""
    declared = list(inspect.signature(own).parameters.values())[2:]
    return {p.name: params.get(p.name, p.default) for p in declared}


def bias_moments(
    name: str, params: Mapping[str, Any], fan_in: int, fan_out: int
) -> tuple[float, float]:
    """(mean, variance) of a bias entry of a (fan_out, fan_in) layer, as ``apply_init`` sets it:
    ``params["bias"]`` when it is a number (variance 0); when it is null or absent, the variance
    its ``OWN_BIAS`` function declares (``default``: 1 / (3 fan_in)), and 0 for every other init."""
    bias = params.get("bias")
    if bias is not None:
        return float(bias), 0.0
    own = OWN_BIAS.get(name)
    if own is None:
        return 0.0, 0.0
    return 0.0, own.variance(int(fan_in), int(fan_out), **_own_params(own, params))


def residual_variances(
    name: str,
    params: Mapping[str, Any],
    input_size: int,
    width: int,
    num_classes: int,
    blocks: int,
    branch_layers: int,
    activation: str = "relu",
) -> dict[str, Any] | None:
    """What init ``name`` sets at each position of a residual net (``initlab.mlp``): the weight
    variance and bias (mean, variance) of ``inp``, of every branch's Linear layers and of
    ``out``, and every block's gate, as ``{"inp": (v, bias), "branch": [[(v, bias), ...] per
    block], "gates": [a, ...], "out": (v, bias)}``; None where the init has no closed form.

    fixup and skipinit by their rules (``fixup_blocks_``, ``skipinit_blocks_``), from the same
    gain and ``fixup_scale`` as their draws; any other init by ``weight_variance`` at each
    Linear's shape, gates 1.
    """
    _check_name(name)

    def at(fan_in: int, fan_out: int) -> tuple[float | None, tuple[float, float]]:
        if name in STRUCTURAL:
            v: float | None = activation_gain(activation) ** 2 / fan_in  # _gain_normal_'s
        else:
            v = weight_variance(name, params, fan_in, fan_out, activation)
        return v, bias_moments(name, params, fan_in, fan_out)

    inp, out = at(input_size, width), at(width, num_classes)
    branch = [at(width, width) for _ in range(branch_layers)]
    gate = 0.0 if name == "skipinit" else 1.0
    if name == "fixup":
        scale2 = fixup_scale(blocks, branch_layers) ** 2
        branch = [(v * scale2, b) for v, b in branch[:-1]] + [(0.0, branch[-1][1])]
        out = (0.0, out[1])
    if any(v is None for v, _ in (inp, out, *branch)):
        return None
    return {"inp": inp, "branch": [list(branch)] * blocks, "gates": [gate] * blocks, "out": out}


def apply_init(
    model: nn.Module,
    spec: Mapping[str, Any],
    batch: Tensor | None = None,
    activation: str = "relu",
) -> None:
    """Initialize ``model`` as ``spec`` says: every Linear's weight and bias, then the norms.

    ``spec`` is ``{"name": <key of INITS>, "bias": <float or None>, **init parameters}``, the
    shape of a ``conf/init/*.yaml`` file. ``bias`` None (or absent) is the init's own default: 0,
    or PyTorch's U[+-1/sqrt(fan_in)] for ``default``; a number sets every Linear bias to it.
    BatchNorm/LayerNorm layers are reset to gamma 1, beta 0 (and fresh running statistics), and
    the gates of residual blocks to 1; then a ``STRUCTURAL`` init sets the blocks (ValueError on
    a net without any, before anything is drawn).
    ``batch``: training inputs, for the data-dependent inits (lsuv); ``activation``: the model's,
    for the inits whose gain depends on it.
    """
    params = dict(spec)
    name = params.pop("name")
    bias = params.pop("bias", None)
    _check_name(name)
    unknown = sorted(set(params) - set(init_parameters(name)))
    if unknown:
        takes = ", ".join([*init_parameters(name), "bias"])
        raise ValueError(f"init={name} has no parameter {', '.join(unknown)} (it takes: {takes})")
    second_pass = DATA_DEPENDENT.get(name)
    if second_pass is not None and batch is None:
        raise ValueError(f"init={name} is data-dependent: apply_init needs batch=<training inputs>")
    structural = STRUCTURAL.get(name)
    if structural is not None:
        _blocks(model, name)  # refused before a weight is drawn
    weight_params = _draw_params(name, params, activation)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, NORM_LAYERS):
                layer.reset_parameters()
            if isinstance(layer, ResidualBlock):
                layer.gate.fill_(1.0)
            if not isinstance(layer, nn.Linear):
                continue
            INITS[name](layer.weight, **weight_params)
            if layer.bias is None:
                continue
            if bias is not None:
                layer.bias.fill_(float(bias))
            elif name in OWN_BIAS:
                own = OWN_BIAS[name]
                own(layer.bias, layer.weight, **_own_params(own, params))
            else:
                layer.bias.zero_()
        if structural is not None:
            structural(model)
        if second_pass is not None:
            second_pass(model, batch, **params)
