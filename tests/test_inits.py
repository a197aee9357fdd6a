"""The initializers are exactly what their names say (docs/inits.md).

Statistical checks follow PyTorch's own test/nn/test_init.py: a Kolmogorov-Smirnov test of the
weights of a large matrix against the declared distribution, passing at p > 1e-4, with fixed
seeds (so each check is deterministic). The other tolerances are derived in place.
"""

from __future__ import annotations

import inspect
import json
import math
import random
from functools import partial

import pytest
import torch
import yaml
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf
from scipy import linalg, stats
from torch import nn

from initlab.config import RESIDUAL_INITS
from initlab.data import MNISTDataModule
from initlab.diagnostics import distinct_units
from initlab.inits import (
    DATA_DEPENDENT,
    INITS,
    OWN_BIAS,
    STRUCTURAL,
    USES_ACTIVATION,
    activation_gain,
    apply_init,
    bias_moments,
    hadamard,
    init_parameters,
    residual_variances,
    weight_variance,
)
from initlab.mlp import build_mlp, linear_layers, residual_blocks
from initlab.run import run

from .conftest import CONF, FAST, compose_train, run_train, sgd_steps

P_MIN = 1e-4  # as in PyTorch's test_init.py
_rng = random.Random(2013)
# (fan_out, fan_in): the 200x300 both ways, MNIST's first layer, two seeded random shapes
SHAPES = [(200, 300), (300, 200), (256, 784)] + [
    (_rng.randint(100, 400), _rng.randint(100, 400)) for _ in range(2)
]
NAMES = sorted(INITS)
# the inits that set a residual net's blocks (fixup, skipinit) refuse a plain MLP: the per-net
# tests below build a plain MLP with the others, and a residual one with all (the last section)
PLAIN = sorted(set(INITS) - set(STRUCTURAL))
SYMMETRIC = {"zero", "constant"}  # every hidden unit identical, forever
NORMS = ["none", "batchnorm", "layernorm", "weightnorm"]
SGD = partial(torch.optim.SGD, lr=0.01, momentum=0.5)
LEAKY_GAIN = math.sqrt(2 / (1 + 0.01**2))  # calculate_gain("leaky_relu", 0.01)


def uniform(b):
    return "uniform", (-b, 2 * b)


def normal(std):
    return "norm", (0.0, std)


# (init, parameters, declared distribution of every weight as a function of (fan_in, fan_out));
# the formulas are written out here, independently of initlab.inits
DECLARED = [
    ("small_uniform", {}, lambda fi, fo: uniform(0.1)),
    ("small_uniform", {"bound": 0.3}, lambda fi, fo: uniform(0.3)),
    ("small_normal", {}, lambda fi, fo: normal(0.01)),
    ("small_normal", {"std": 0.05}, lambda fi, fo: normal(0.05)),
    ("large_uniform", {}, lambda fi, fo: uniform(1.0)),
    ("large_normal", {}, lambda fi, fo: normal(1.0)),
    ("xavier", {}, lambda fi, fo: uniform(math.sqrt(6 / (fi + fo)))),
    ("xavier", {"gain": 2.0}, lambda fi, fo: uniform(2 * math.sqrt(6 / (fi + fo)))),
    ("xavier_normal", {}, lambda fi, fo: normal(math.sqrt(2 / (fi + fo)))),
    ("xavier_normal", {"gain": 5 / 3}, lambda fi, fo: normal(5 / 3 * math.sqrt(2 / (fi + fo)))),
    ("he", {}, lambda fi, fo: normal(math.sqrt(2 / fi))),
    ("he_uniform", {}, lambda fi, fo: uniform(math.sqrt(6 / fi))),
    ("kaiming", {}, lambda fi, fo: normal(math.sqrt(2 / fi))),
    ("kaiming", {"mode": "fan_out"}, lambda fi, fo: normal(math.sqrt(2 / fo))),
    (
        "kaiming",
        {"activation": "tanh", "distribution": "uniform"},
        lambda fi, fo: uniform(math.sqrt(3) * (5 / 3) / math.sqrt(fi)),
    ),
    (
        "kaiming",
        {"activation": "leaky_relu", "mode": "fan_out"},
        lambda fi, fo: normal(LEAKY_GAIN / math.sqrt(fo)),
    ),
    ("kaiming", {"activation": "sigmoid"}, lambda fi, fo: normal(1 / math.sqrt(fi))),
    (
        "kaiming",
        {"activation": "gelu", "mode": "fan_out", "distribution": "uniform"},
        lambda fi, fo: uniform(math.sqrt(6 / fo)),
    ),
    ("tutorial_he", {}, lambda fi, fo: uniform(math.sqrt(2 / fi))),
    ("lecun", {}, lambda fi, fo: normal(math.sqrt(1 / fi))),
    ("standard", {}, lambda fi, fo: uniform(1 / math.sqrt(fi))),
    ("default", {}, lambda fi, fo: uniform(1 / math.sqrt(fi))),
]
DECLARED_IDS = [
    f"{n}-{'-'.join(f'{k}={v}' for k, v in p.items()) or 'defaults'}" for n, p, _ in DECLARED
]


def _weight(shape, name, seed=0, **params):
    torch.manual_seed(seed)
    w = torch.empty(shape)
    INITS[name](w, **params)
    return w


def _dist(declared, fan_in, fan_out):
    kind, args = declared(fan_in, fan_out)
    return kind, args, getattr(stats, kind)(*args)


# -- the declared distributions --------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize(("name", "params", "declared"), DECLARED, ids=DECLARED_IDS)
def test_declared_distribution(name, params, declared, shape):
    fan_out, fan_in = shape
    kind, args, dist = _dist(declared, fan_in, fan_out)
    w = _weight(shape, name, **params).flatten().double()
    n = w.numel()
    assert stats.kstest(w.numpy(), kind, args=args).pvalue > P_MIN
    # the exact scale: the sample std has sd ~ 0.71/sqrt(n) (normal) or 0.45/sqrt(n) (uniform)
    # around the declared std; 6 of them, 0.75 each, fail by chance with p ~ 1e-9
    assert abs(w.std().item() / dist.std() - 1) < 6 * 0.75 / math.sqrt(n)
    assert abs(w.mean().item()) < 6 * dist.std() / math.sqrt(n)
    if kind == "uniform":
        bound = args[1] / 2
        assert w.abs().max() <= bound
        # P(max |w| < bound (1 - 20/n)) = (1 - 20/n)^n < e^-20: the bound is attained, not loose
        assert w.abs().max() >= bound * (1 - 20 / n)


FAN_DEPENDENT = [
    (n, p, d)
    for n, p, d in DECLARED
    if d(784, 256) != d(256, 784)  # the formula tells fan_in from fan_out
]


@pytest.mark.parametrize(("name", "params", "declared"), FAN_DEPENDENT)
def test_fan_in_and_fan_out_are_told_apart(name, params, declared):
    """The KS test has the power to see a fan_in / fan_out mix-up on a 256 x 784 layer."""
    kind, args = declared(256, 784)  # the wrong way round
    w = _weight((256, 784), name, **params).flatten()
    assert stats.kstest(w.numpy(), kind, args=args).pvalue < P_MIN


def test_tutorial_he_is_a_third_of_he():
    """U[-sqrt(2/n), sqrt(2/n)] has variance 2/(3n): a KS test tells it from N(0, 2/n)."""
    fan_in = 300
    he = _weight((200, fan_in), "he").flatten()
    tutorial = _weight((200, fan_in), "tutorial_he").flatten()
    bound = math.sqrt(2 / fan_in)
    assert stats.kstest(he.numpy(), "uniform", args=(-bound, 2 * bound)).pvalue < P_MIN
    assert stats.kstest(tutorial.numpy(), "norm", args=(0, math.sqrt(2 / fan_in))).pvalue < P_MIN
    # var ratio 1/3; each sample variance has relative sd <= sqrt(2/n), n = 60,000
    ratio = tutorial.var().item() / he.var().item()
    assert abs(ratio * 3 - 1) < 6 * 2 * math.sqrt(2 / he.numel())


PYTORCH_EQUIVALENTS = [
    ("xavier", {"gain": 2.0}, partial(nn.init.xavier_uniform_, gain=2.0)),
    ("xavier_normal", {"gain": 0.5}, partial(nn.init.xavier_normal_, gain=0.5)),
    ("he", {}, partial(nn.init.kaiming_normal_, nonlinearity="relu")),
    ("he_uniform", {}, partial(nn.init.kaiming_uniform_, nonlinearity="relu")),
    ("kaiming", {}, partial(nn.init.kaiming_normal_, nonlinearity="relu")),
    (
        "kaiming",
        {"activation": "tanh", "mode": "fan_out", "distribution": "uniform"},
        partial(nn.init.kaiming_uniform_, mode="fan_out", nonlinearity="tanh"),
    ),
    (
        "kaiming",
        {"activation": "leaky_relu"},
        partial(nn.init.kaiming_normal_, a=0.01, nonlinearity="leaky_relu"),
    ),
    ("lecun", {}, partial(nn.init.kaiming_normal_, nonlinearity="linear")),
    ("orthogonal", {}, partial(nn.init.orthogonal_, gain=math.sqrt(2))),
    ("orthogonal", {"activation": "tanh"}, partial(nn.init.orthogonal_, gain=5 / 3)),
]


@pytest.mark.parametrize(("name", "params", "torch_init"), PYTORCH_EQUIVALENTS)
def test_same_draws_as_torch_nn_init(name, params, torch_init):
    """Same seed, same numbers as the torch.nn.init function the formula names."""
    torch.manual_seed(0)
    expected = torch_init(torch.empty(200, 300))
    torch.testing.assert_close(_weight((200, 300), name, **params), expected)


def test_kaiming_for_relu_is_he():
    torch.testing.assert_close(_weight((256, 784), "kaiming"), _weight((256, 784), "he"))


@pytest.mark.parametrize("shape", SHAPES[:3], ids=str)
def test_zero_and_constant(shape):
    assert torch.count_nonzero(_weight(shape, "zero")) == 0
    assert torch.all(_weight(shape, "constant") == torch.tensor(0.1))
    assert torch.all(_weight(shape, "constant", value=-2.5) == -2.5)


# -- structured inits ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize(
    ("params", "gain"),
    [
        ({}, math.sqrt(2)),  # the default activation, relu
        ({"activation": "tanh"}, 5 / 3),
        ({"activation": "linear"}, 1.0),
        ({"gain": 0.5, "activation": "tanh"}, 0.5),  # an explicit gain wins
    ],
)
def test_orthogonal(shape, params, gain):
    w = _weight(shape, "orthogonal", **params).double()
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w  # the smaller side
    torch.testing.assert_close(
        gram, gain**2 * torch.eye(len(gram), dtype=gram.dtype), atol=1e-5, rtol=0
    )
    assert not torch.equal(w, _weight(shape, "orthogonal", seed=1, **params).double())


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("sigma_w2", [1.0, 1.18919, 2.0])
def test_mean_field_orthogonal_is_orthogonal_with_the_gaussian_variance(shape, sigma_w2):
    """weights=orthogonal: orthonormal rows (or columns, for a widening layer) scaled so that
    the mean square entry is sigma_w2 / fan_in exactly, the Gaussian draw's variance."""
    fan_out, fan_in = shape
    w = _weight(shape, "mean_field", sigma_w2=sigma_w2, weights="orthogonal").double()
    gram, scale = (
        (w @ w.T, sigma_w2) if fan_out <= fan_in else (w.T @ w, sigma_w2 * fan_out / fan_in)
    )
    torch.testing.assert_close(
        gram, scale * torch.eye(len(gram), dtype=gram.dtype), atol=1e-5, rtol=0
    )
    assert float(w.pow(2).mean()) == pytest.approx(sigma_w2 / fan_in, rel=1e-5)
    assert weight_variance("mean_field", {"sigma_w2": sigma_w2, "weights": "orthogonal"},
                           fan_in, fan_out) == pytest.approx(sigma_w2 / fan_in)  # fmt: skip
    gaussian = _weight(shape, "mean_field", sigma_w2=sigma_w2).double()
    gram = gaussian @ gaussian.T if fan_out <= fan_in else gaussian.T @ gaussian
    assert (gram - scale * torch.eye(len(gram))).abs().max() > 0.1  # not orthogonal


def test_mean_field_refuses_an_unknown_weight_ensemble():
    with pytest.raises(
        ValueError, match=r"^init.weights='haar' is not one of: gaussian, orthogonal$"
    ):
        _weight((4, 4), "mean_field", weights="haar")


def test_hadamard_is_sylvesters():
    for n in (1, 2, 4, 64, 512):
        torch.testing.assert_close(hadamard(n), torch.from_numpy(linalg.hadamard(n)).float())


@pytest.mark.parametrize(
    "shape", [(256, 784), (10, 256), (64, 64), (300, 200), (512, 784)], ids=str
)
def test_zero_identity_is_deterministic_and_structured(shape):
    fan_out, fan_in = shape
    w = _weight(shape, "zero_identity", seed=0)
    assert torch.equal(w, _weight(shape, "zero_identity", seed=123))  # no randomness
    if fan_out <= fan_in:  # partial identity: unit i copies input i
        assert torch.equal(w, torch.eye(fan_out, fan_in))
    else:  # widening: the top-left block of c H, H Hadamard of size 2^m >= fan_out
        m = math.ceil(math.log2(fan_out))
        h = torch.from_numpy(linalg.hadamard(2**m)).float()
        torch.testing.assert_close(w, 2 ** (-(m - 1) / 2) * h[:fan_out, :fan_in])
        assert set(w.abs().unique().tolist()) == {2 ** (-(m - 1) / 2)}


def test_zero_identity_draws_no_random_numbers():
    torch.manual_seed(0)
    INITS["zero_identity"](torch.empty(300, 200))
    after = torch.rand(5)
    torch.manual_seed(0)
    torch.testing.assert_close(after, torch.rand(5))


@pytest.mark.parametrize(("fan_out", "fan_in"), [(200, 300), (512, 784), (10, 256)])
def test_default_is_a_fresh_nn_linear(fan_out, fan_in):
    torch.manual_seed(0)
    fresh = nn.Linear(fan_in, fan_out)
    torch.manual_seed(0)
    ours = nn.Linear(fan_in, fan_out)
    ours.weight.data.fill_(7.0)
    ours.bias.data.fill_(7.0)
    torch.manual_seed(0)
    apply_init(ours, {"name": "default", "bias": None})
    torch.testing.assert_close(ours.weight, fresh.weight, atol=0, rtol=0)
    torch.testing.assert_close(ours.bias, fresh.bias, atol=0, rtol=0)
    bound = 1 / math.sqrt(fan_in)
    for x in (ours.weight, ours.bias):
        assert (
            stats.kstest(x.detach().flatten().numpy(), "uniform", args=(-bound, 2 * bound)).pvalue
            > P_MIN
        )


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_default_draws_standards_law(shape):
    """default (PyTorch's call) and standard (the paper's formula): the same float32 draws for
    the same seed, and one declared variance."""
    torch.testing.assert_close(
        _weight(shape, "default"), _weight(shape, "standard"), atol=0, rtol=0
    )
    assert INITS["default"].variance is INITS["standard"].variance


def test_standard_has_zero_biases():
    layer = nn.Linear(300, 200)
    apply_init(layer, _yaml("standard"))
    assert torch.all(layer.bias == 0)
    assert bias_moments("standard", _yaml("standard"), 300, 200) == (0.0, 0.0)


def test_bias_is_zero_unless_init_bias_says_otherwise():
    net = nn.Sequential(nn.Linear(300, 200), nn.ReLU(), nn.Linear(200, 10))
    for layer in (net[0], net[2]):
        layer.bias.data.fill_(7.0)
    apply_init(net, {"name": "he", "bias": None})
    assert all(torch.all(m.bias == 0) for _, m in linear_layers(net))
    apply_init(net, {"name": "he"})  # absent = null
    assert all(torch.all(m.bias == 0) for _, m in linear_layers(net))
    apply_init(net, {"name": "zero", "bias": 0.25})
    assert all(torch.all(m.bias == 0.25) for _, m in linear_layers(net))
    apply_init(net, {"name": "default", "bias": 0.0})  # an explicit number wins over its own bias
    assert all(torch.all(m.bias == 0) for _, m in linear_layers(net))
    assert net[0].weight.abs().max() <= 1 / math.sqrt(300)


# -- the declared variances ------------------------------------------------------------------

Z = 5.0  # a tolerance of Z standard deviations fails by chance with p < 1e-6
# (init, parameters beyond its yaml's): every init at its defaults, and the parameters that enter
# a formula set away from them
VARIANCE_CASES = [(n, {}) for n in NAMES] + [
    ("small_uniform", {"bound": 0.3}),
    ("large_normal", {"std": 0.5}),
    ("xavier", {"gain": 2.0}),
    ("xavier_normal", {"gain": 0.5}),
    ("kaiming", {"mode": "fan_out", "distribution": "uniform"}),
    ("orthogonal", {"gain": 0.5}),
    ("constant", {"value": 0.0}),
    ("mean_field", {"weights": "orthogonal", "sigma_w2": 1.7}),
]


@pytest.mark.parametrize("shape", [(512, 784), (512, 256)], ids=str)  # fan_out < and > fan_in
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize(("name", "params"), VARIANCE_CASES, ids=lambda v: str(v or ""))
def test_declared_variance_is_what_the_init_draws(name, params, activation, shape):
    """weight_variance (the prediction's v) against the mean square of one large draw, through
    apply_init as a run does; bias_moments against the biases of the same draw."""
    fan_out, fan_in = shape
    spec = {**_yaml(name), **params}
    config = {k: v for k, v in spec.items() if k != "name"}
    v = weight_variance(name, config, fan_in, fan_out, activation)
    if v is None:
        assert INITS[name].no_variance, f"{name}: no variance and no reason"
        return
    torch.manual_seed(0)
    layer = nn.Linear(fan_in, fan_out)
    apply_init(nn.Sequential(layer), spec, activation=activation)
    w = layer.weight.detach().double().flatten()
    n = w.numel()
    if v == 0:
        assert torch.count_nonzero(w) == 0
    else:
        # a mean of n squares has relative sd sqrt((kurtosis - 1) / n): sqrt(2/n) for a normal
        # law, sqrt(0.8/n) for a uniform one (and 0 for orthogonal's exact row norms)
        assert abs(float(w.pow(2).mean()) / v - 1) < Z * math.sqrt(2 / n)
        assert abs(float(w.mean())) < Z * math.sqrt(v / n)
    b_mean, b_var = bias_moments(name, config, fan_in, fan_out)
    b = layer.bias.detach().double()
    if b_var == 0:
        assert torch.all(b == b_mean)
    else:
        assert abs(float(b.mean()) - b_mean) < Z * math.sqrt(b_var / len(b))
        second = float((b - b_mean).pow(2).mean())
        assert abs(second / b_var - 1) < Z * math.sqrt(2 / len(b))


def test_a_wrong_variance_would_be_caught():
    """The tolerance above tells tutorial_he's variance from He's (a factor 3) and from one 5%
    off: 5% is > 10 sd at 512 x 784."""
    torch.manual_seed(0)
    w = _weight((512, 784), "tutorial_he").double()
    v = weight_variance("tutorial_he", {}, 784, 512)
    tol = Z * math.sqrt(2 / w.numel())
    assert abs(float(w.pow(2).mean()) / v - 1) < tol
    for wrong in (3 * v, 1.05 * v):
        assert abs(float(w.pow(2).mean()) / wrong - 1) > tol


@pytest.mark.parametrize("name", NAMES)
def test_every_init_declares_its_variance_with_the_draws_parameters(name):
    """One source for defaults: the formula takes (fan_in, fan_out, the draw's parameters)."""
    fn = INITS[name]
    if fn.variance is None:
        assert fn.no_variance
        return
    draw = list(inspect.signature(fn).parameters)[1:]
    formula = inspect.signature(fn.variance).parameters.values()
    assert [p.name for p in formula] == ["fan_in", "fan_out", *draw]
    assert all(p.default is inspect.Parameter.empty for p in formula)


def test_no_variance_where_there_is_no_closed_form():
    assert (
        weight_variance("lsuv", {"tol": 0.1, "max_iter": 10, "batch_size": 1000}, 300, 200) is None
    )
    assert weight_variance("zero_identity", {}, 300, 200) is None
    assert weight_variance("constant", {"value": 0.1}, 300, 200) is None
    assert weight_variance("constant", {"value": 0.0}, 300, 200) == 0.0
    assert "nonzero-mean" in INITS["constant"].no_variance
    assert "data-dependent" in INITS["lsuv"].no_variance
    with pytest.raises(ValueError, match="init='glorot' is not one of"):
        weight_variance("glorot", {}, 300, 200)  # no aliases
    with pytest.raises(ValueError, match="init=he has no parameter std"):
        weight_variance("he", {"std": 1.0}, 300, 200)


@pytest.mark.parametrize(
    ("activation", "gain"), [("relu", math.sqrt(2)), ("tanh", 5 / 3), ("leaky_relu", LEAKY_GAIN)]
)
def test_the_activation_reaches_the_variance(activation, gain):
    assert weight_variance("kaiming", {}, 300, 200, activation) == pytest.approx(gain**2 / 300)
    assert weight_variance("orthogonal", {"gain": None}, 300, 200, activation) == pytest.approx(
        gain**2 / 300
    )
    assert weight_variance("orthogonal", {"gain": 0.5}, 300, 200, activation) == 0.25 / 300


def test_bias_override_and_defaults():
    assert set(OWN_BIAS) == {"default", "mean_field"}
    assert bias_moments("mean_field", {"sigma_w2": 2.0, "sigma_b2": 0.1}, 300, 200) == (0.0, 0.1)
    assert bias_moments("mean_field", {"bias": 0.0}, 300, 200) == (0.0, 0.0)
    assert bias_moments("default", {"bias": None}, 300, 200) == (0.0, 1 / 900)
    assert bias_moments("default", {}, 300, 200) == (0.0, 1 / 900)
    assert bias_moments("default", {"bias": 0.5}, 300, 200) == (0.5, 0.0)
    assert bias_moments("he", {"bias": None}, 300, 200) == (0.0, 0.0)
    assert bias_moments("he", {"bias": -1.0}, 300, 200) == (-1.0, 0.0)


# -- lsuv ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def train_x():
    """Normalized training inputs of the synthetic MNIST stand-in: 2,300 rows."""
    dm = MNISTDataModule(name="synthetic", synthetic_train=2500, synthetic_test=10, val_size=200)
    dm.setup()
    return dm.train.x


def _pre_activation_vars(net, x):
    """Variance of every Linear's output (before any norm layer) on x, in training mode."""
    out = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, o, n=n: out.__setitem__(n, o.var().item()))
        for n, m in linear_layers(net)
    ]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return out


def _lsuv_net(x, norm="none", activation="relu", seed=0, spec=None, sizes=(128, 64, 32)):
    torch.manual_seed(seed)
    init = partial(apply_init, spec=spec or {"name": "lsuv"}, batch=x, activation=activation)
    return build_mlp(784, list(sizes), 10, activation=activation, norm=norm, init=init)


@pytest.mark.parametrize(
    ("norm", "activation", "bias"),
    [(n, "relu", 0.0) for n in NORMS] + [("none", "tanh", 0.0), ("none", "relu", 0.5)],
)
def test_lsuv_gives_unit_variance_on_a_fresh_batch(train_x, norm, activation, bias):
    net = _lsuv_net(train_x, norm, activation, spec={"name": "lsuv", "bias": bias})
    net.train()
    fresh = _pre_activation_vars(net, train_x[1000:2000])  # lsuv saw rows 0-999
    assert len(fresh) == 4
    for name, var in fresh.items():
        assert abs(var - 1) < 0.1, (name, var)
    seen = _pre_activation_vars(net, train_x[:1000])  # on its own batch: within tol by design
    assert all(abs(v - 1) < 0.1 for v in seen.values())


def test_lsuv_is_needed_for_unit_variance(train_x):
    """The same orthonormal weights without the data-dependent scaling are not at variance 1."""
    net = _lsuv_net(train_x, spec={"name": "orthogonal", "gain": 1.0})
    assert any(abs(v - 1) > 0.1 for v in _pre_activation_vars(net, train_x[1000:2000]).values())


@pytest.mark.parametrize("norm", ["batchnorm", "layernorm"])
def test_lsuv_under_a_norm_layer_only_rescales_weights(train_x, norm):
    """Measured before the norm: the norm undoes each hidden rescaling; only the logits change.

    LSUV = orthonormal pre-init (the same draws as init=orthogonal with gain 1) then a scale per
    layer. With BatchNorm/LayerNorm after each hidden Linear (zero biases), every hidden layer's
    normalized output is the same as without the scaling; the output layer (not normalized) is
    scaled by its own factor. BatchNorm's running statistics are untouched by the init batch.
    """
    lsuv = _lsuv_net(train_x, norm)
    orth = _lsuv_net(train_x, norm, spec={"name": "orthogonal", "gain": 1.0})
    scales = {
        n: (a.weight.norm() / b.weight.norm()).item()
        for (n, a), (_, b) in zip(linear_layers(lsuv), linear_layers(orth), strict=True)
    }
    assert all(abs(s - 1) > 0.05 for s in scales.values()), scales  # lsuv did rescale
    assert lsuv.training
    for m in lsuv.modules():
        if isinstance(m, nn.BatchNorm1d):
            assert int(m.num_batches_tracked) == 0
            assert torch.all(m.running_mean == 0) and torch.all(m.running_var == 1)
    x = train_x[1000:1500]
    with torch.no_grad():
        torch.testing.assert_close(lsuv[:-1](x), orth[:-1](x), rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(lsuv(x), scales["out"] * orth(x), rtol=1e-3, atol=1e-4)


def test_lsuv_needs_a_batch():
    with pytest.raises(ValueError, match="init=lsuv is data-dependent"):
        apply_init(nn.Linear(4, 2), {"name": "lsuv"})
    assert set(DATA_DEPENDENT) == {"lsuv"}


# -- symmetry: what the tutorial says, and its counterpoints ---------------------------------


@pytest.mark.parametrize(
    ("name", "norm"),
    [(n, "none") for n in PLAIN]
    + [(n, norm) for n in sorted(SYMMETRIC) for norm in ("batchnorm", "layernorm")]
    + [("constant", "weightnorm")],
)
def test_symmetric_inits_stay_symmetric_random_ones_break_it(train_x, name, norm):
    torch.manual_seed(0)
    init = partial(apply_init, spec={"name": name}, batch=train_x)
    net = build_mlp(784, [64, 32], 10, norm=norm, init=init)
    sgd_steps(net)
    for lname, layer in linear_layers(net)[:-1]:
        assert torch.isfinite(layer.weight).all()
        expected = 1 if name in SYMMETRIC else layer.out_features
        assert distinct_units(layer) == expected, lname


# -- normalization ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", PLAIN)
def test_norm_layers_start_at_gamma_1_beta_0(train_x, name):
    for norm, kind in (("batchnorm", nn.BatchNorm1d), ("layernorm", nn.LayerNorm)):
        net = build_mlp(784, [32, 16], 10, norm=norm)
        for m in net.modules():
            if isinstance(m, kind):
                m.weight.data.fill_(3.0)  # whatever came before
                m.bias.data.fill_(-1.0)
        apply_init(net, {"name": name}, batch=train_x)
        norms = [m for m in net.modules() if isinstance(m, kind)]
        assert len(norms) == 2
        for m in norms:
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


@pytest.mark.parametrize("name", PLAIN)
def test_weight_norm_keeps_the_step_0_function(train_x, name):
    nets = {}
    for norm in ("none", "weightnorm"):
        torch.manual_seed(0)
        init = partial(apply_init, spec={"name": name}, batch=train_x)
        nets[norm] = build_mlp(784, [64, 32], 10, norm=norm, init=init, init_name=name)
    with torch.no_grad():
        plain, normed = nets["none"](train_x[:200]), nets["weightnorm"](train_x[:200])
    assert torch.isfinite(normed).all()
    scale = max(plain.abs().max().item(), 1e-6)
    torch.testing.assert_close(normed, plain, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize(
    "spec", [{"name": "zero"}, {"name": "constant", "value": 0.0}], ids=["zero", "constant-0"]
)
def test_zero_rows_under_weight_norm_train_as_without_it(spec):
    """A zero row has no direction: it is registered as g = 0 with the constant direction, so
    w stays 0, the net is the zero init's, and SGD moves exactly what it moves without weight
    norm (only the output bias)."""
    nets = {}
    for norm in ("none", "weightnorm"):
        init = partial(apply_init, spec=spec)
        nets[norm] = build_mlp(784, [64, 32], 10, norm=norm, init=init, init_name=spec["name"])
        sgd_steps(nets[norm], steps=5)
    plain, normed = nets["none"], nets["weightnorm"]
    for name in ("fc1", "fc2", "out"):
        weight = getattr(normed, name).weight
        assert torch.isfinite(weight).all() and torch.all(weight == 0), name
        assert torch.equal(getattr(plain, name).weight, weight), name
    torch.testing.assert_close(normed.out.bias, plain.out.bias)
    assert normed.out.bias.abs().max() > 0  # the output bias did learn
    v = normed.fc1.parametrizations.weight.original1
    assert torch.allclose(v, torch.full_like(v, 784**-0.5))  # every row the same direction


# -- the config group ------------------------------------------------------------------------


def _yaml(name):
    return yaml.safe_load((CONF / "init" / f"{name}.yaml").read_text())


def test_the_init_group_is_exactly_the_21_inits():
    assert len(INITS) == 21
    assert sorted(p.stem for p in (CONF / "init").glob("*.yaml")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_yaml_declares_every_parameter_with_the_functions_default(name):
    conf = _yaml(name)
    assert conf.pop("name") == name
    assert conf.pop("bias") == (None if name in OWN_BIAS else 0.0)  # null: the init draws its own
    assert sorted(conf) == sorted(init_parameters(name))
    fn = DATA_DEPENDENT.get(name, INITS[name])
    for key, value in conf.items():
        assert inspect.signature(fn).parameters[key].default == value, key


def test_an_unknown_init_lists_the_valid_ones():
    with pytest.raises(MissingConfigException) as err:
        compose_train(["init=hee"])
    for name in NAMES:
        assert f"\t{name}\n" in str(err.value) + "\n"


@pytest.mark.parametrize(
    ("overrides", "declared"),
    [
        (["init=small_normal", "init.std=0.05"], lambda fi, fo: normal(0.05)),
        (["init=xavier", "init.gain=1.0"], lambda fi, fo: uniform(math.sqrt(6 / (fi + fo)))),
        (
            ["init=kaiming", "init.mode=fan_out", "init.distribution=uniform"],
            lambda fi, fo: uniform(math.sqrt(6 / fo)),
        ),
        (
            ["init=kaiming", "init.mode=fan_out", "model.activation=tanh"],
            lambda fi, fo: normal(5 / 3 / math.sqrt(fo)),
        ),
        (["init=constant", "init.value=0.5"], None),
        (["init=orthogonal", "init.gain=3.0"], None),
    ],
)
def test_command_line_overrides_reach_the_weights(overrides, declared):
    cfg = compose_train([*overrides, "init.bias=0.3"])
    spec = OmegaConf.to_container(cfg.init)
    layer = nn.Linear(300, 200)
    torch.manual_seed(0)
    apply_init(layer, spec, activation=cfg.model.activation)
    assert torch.all(layer.bias == 0.3)
    w = layer.weight.detach()
    if declared is not None:
        kind, args = declared(300, 200)
        assert stats.kstest(w.flatten().numpy(), kind, args=args).pvalue > P_MIN
    elif spec["name"] == "constant":
        assert torch.all(w == 0.5)
    else:
        torch.testing.assert_close(w @ w.T, 9.0 * torch.eye(200), atol=1e-4, rtol=0)


def test_apply_init_rejects_unknown_names_and_parameters():
    with pytest.raises(
        ValueError, match="init='hee' is not one of: constant, default, fixup, he, "
    ):
        apply_init(nn.Linear(2, 2), {"name": "hee"})
    with pytest.raises(ValueError, match=r"init=he has no parameter std \(it takes: bias\)"):
        apply_init(nn.Linear(2, 2), {"name": "he", "std": 1.0})
    with pytest.raises(ValueError, match="init.mode='fan_avg' is not one of: fan_in, fan_out"):
        apply_init(nn.Linear(2, 2), {"name": "kaiming", "mode": "fan_avg"})
    with pytest.raises(ValueError, match="init.distribution='cauchy' is not one of"):
        apply_init(nn.Linear(2, 2), {"name": "kaiming", "distribution": "cauchy"})


# -- every init x every norm, end to end -----------------------------------------------------

TINY = [
    *FAST,
    "logger=none",
    "model.hidden_sizes=[32,16]",
    "data.synthetic_train=300",
    "data.synthetic_test=50",
    "data.val_size=100",
]


@pytest.mark.parametrize("name", PLAIN)
def test_every_init_trains_with_every_norm(tmp_path, name):
    """A few steps through run() for each norm (init=zero with weight norm included)."""
    for norm in NORMS:
        cfg = compose_train([*TINY, f"init={name}", f"norm={norm}"])
        out = tmp_path / norm
        r = run(cfg, out, SGD)
        assert r["status"] == "ok", (norm, r.get("error"))
        assert r["init"] == name and r["norm"] == norm and r["branch_layers"] is None
        assert all(math.isfinite(v) for v in r["final"].values())


def test_cli_trains_several_inits(tmp_path):
    sweep = tmp_path / "sweep"
    inits = "constant,default,lsuv,zero_identity,tutorial_he"
    proc = run_train(
        ["-m", f"init={inits}", "norm=batchnorm", *TINY, f"hydra.sweep.dir={sweep}"], cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "5 ok, 0 diverged, 0 failed" in proc.stdout + proc.stderr
    records = [json.loads(p.read_text()) for p in sweep.glob("*/results.json")]
    assert sorted(r["init"] for r in records) == sorted(inits.split(","))
    params = {r["init"]: r["init_params"] for r in records}
    assert params["default"] == {"bias": None}
    assert params["lsuv"] == {"tol": 0.1, "max_iter": 10, "batch_size": 1000, "bias": 0.0}


@pytest.mark.mnist
def test_constant_stays_symmetric_on_real_mnist(tmp_path, mnist_root):
    cfg = compose_train(
        [
            "init=constant",
            f"data.root={mnist_root}",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=200",
            "logger=none",
        ]
    )
    r = run(cfg, tmp_path, SGD)
    assert r["status"] == "ok"
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    for name, width in (("fc1", 512), ("fc2", 256)):
        layer = nn.Linear(1, width)
        w, b = state[f"net.{name}.weight"], state[f"net.{name}.bias"]
        layer.weight, layer.bias = nn.Parameter(w), nn.Parameter(b)
        assert (w - 0.1).abs().max() > 1e-3  # it trained
        assert distinct_units(layer) == 1


def test_mean_field_draws_its_weights_and_biases():
    """W ~ N(0, sigma_w2 / fan_in), b ~ N(0, sigma_b2): the sample variances of a 4096-wide net's
    entries within 5 standard deviations of a sample variance, var * sqrt(2 / (n - 1))."""
    torch.manual_seed(0)
    layers = [nn.Linear(512, 4096)]
    net = nn.Sequential(*layers)
    apply_init(net, {"name": "mean_field", "sigma_w2": 3.0, "sigma_b2": 0.2, "bias": None})
    w, b = layers[0].weight.detach().double(), layers[0].bias.detach().double()
    for values, var in ((w, 3.0 / 512), (b, 0.2)):
        n = values.numel()
        assert abs(float(values.pow(2).mean()) - var) < 5 * var * math.sqrt(2 / (n - 1))


# -- residual nets: fixup, skipinit, and every init on a residual net ---------------------------


def _residual_net(name, norm="none", depth=4, width=64, m=2, activation="relu", x=None, seed=0):
    torch.manual_seed(seed)
    init = partial(apply_init, spec=_yaml(name), batch=x, activation=activation)
    return build_mlp(
        784, [width] * depth, 10, activation, norm, init, init_name=name, residual=True,
        branch_layers=m,
    )  # fmt: skip


def _mean_square_is(weights, v):
    """The mean of n squares of N(0, v) entries has sd v sqrt(2 / n): within Z of them."""
    w = torch.cat([t.detach().flatten() for t in weights]).double()
    n = w.numel()
    assert abs(float(w.pow(2).mean()) / v - 1) < Z * math.sqrt(2 / n), (float(w.pow(2).mean()), v)
    assert abs(float(w.mean())) < Z * math.sqrt(v / n)


def test_structural_inits_are_declared_once():
    assert set(STRUCTURAL) == set(RESIDUAL_INITS) == {"fixup", "skipinit"}
    assert set(STRUCTURAL) <= USES_ACTIVATION  # He's draw with the activation's gain
    for name in STRUCTURAL:
        assert INITS[name].variance is None and "position-dependent" in INITS[name].no_variance
        assert init_parameters(name) == []
        assert weight_variance(name, {}, 300, 200) is None


@pytest.mark.parametrize(("m", "activation"), [(1, "relu"), (2, "relu"), (3, "relu"), (2, "tanh")])
def test_fixup_zeroes_the_last_layers_and_scales_the_others(m, activation):
    """Zhang, Dauphin & Ma (2019): each branch's last Linear and ``out`` at 0; the branch's
    other Linears N(0, gain^2 / fan_in) times L^(-1/(2m-2)), so of variance gain^2 / fan_in
    L^(-1/(m-1)), measured on the pooled draws of the L = 16 blocks (up to 2 x 16 x 256^2
    entries: 0.5% at Z = 5); ``inp`` He; biases 0; gates 1."""
    blocks, width = 16, 256
    net = _residual_net("fixup", depth=blocks, width=width, m=m, activation=activation)
    gain2 = activation_gain(activation) ** 2
    scale = blocks ** (-1 / (2 * m - 2)) if m > 1 else 1.0
    for _, block in residual_blocks(net):
        assert block.gate.item() == 1.0
        assert torch.count_nonzero(block.branch()[-1].weight) == 0
    assert torch.count_nonzero(net.out.weight) == 0
    assert all(torch.all(lin.bias == 0) for _, lin in linear_layers(net))
    _mean_square_is([net.inp.weight], gain2 / 784)
    inner = [lin.weight for _, b in residual_blocks(net) for lin in b.branch()[:-1]]
    assert len(inner) == blocks * (m - 1)
    if inner:
        _mean_square_is(inner, gain2 / width * scale**2)
        # exactly the He draws (kaiming, the activation's gain) times the scale, draw for draw
        ref = _residual_net("kaiming", depth=blocks, width=width, m=m, activation=activation)
        ref_inner = [lin.weight for _, b in residual_blocks(ref) for lin in b.branch()[:-1]]
        for a, b in zip(inner, ref_inner, strict=True):
            torch.testing.assert_close(a, b * scale, rtol=1e-6, atol=0)
    declared = residual_variances("fixup", {"bias": 0.0}, 784, width, 10, blocks, m, activation)
    assert declared["inp"] == (pytest.approx(gain2 / 784), (0.0, 0.0))
    assert [v for v, _ in declared["branch"][0]] == pytest.approx(
        [gain2 / width * scale**2] * (m - 1) + [0.0]
    )
    assert declared["out"][0] == 0.0 and declared["gates"] == [1.0] * blocks


def test_fixup_scale_falls_with_the_blocks_as_the_paper_says():
    from initlab.inits import fixup_scale

    assert fixup_scale(16, 2) == pytest.approx(1 / 4)  # L^(-1/2)
    assert fixup_scale(16, 3) == pytest.approx(1 / 2)  # L^(-1/4)
    assert fixup_scale(100, 1) == 1.0  # m = 1: no layer before the (zero) last one


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_skipinit_closes_every_gate_and_draws_he(activation):
    """De & Smith (2020): every Linear N(0, gain^2 / fan_in), biases 0, every gate 0 and
    learnable: the net is out(act(inp(x))) at init, and the gates get the first gradient."""
    width = 256
    net = _residual_net("skipinit", depth=8, width=width, activation=activation)
    gain2 = activation_gain(activation) ** 2
    blocks = [b for _, b in residual_blocks(net)]
    assert [b.gate.item() for b in blocks] == [0.0] * 8
    assert all(b.gate.requires_grad for b in blocks)
    _mean_square_is([net.inp.weight], gain2 / 784)
    _mean_square_is([lin.weight for b in blocks for lin in b.branch()], gain2 / width)
    _mean_square_is([net.out.weight], gain2 / width)
    assert all(torch.all(lin.bias == 0) for _, lin in linear_layers(net))
    x = torch.randn(32, 784)
    torch.testing.assert_close(net(x), net.out(net.act(net.inp(x))))
    torch.nn.functional.cross_entropy(net(x), torch.randint(0, 10, (32,))).backward()
    assert all(b.gate.grad.abs() > 0 for b in blocks)
    assert all(torch.all(lin.weight.grad == 0) for b in blocks for lin in b.branch())
    declared = residual_variances("skipinit", {"bias": 0.0}, 784, width, 10, 8, 2, activation)
    assert declared["gates"] == [0.0] * 8
    assert declared["branch"][0][0][0] == pytest.approx(gain2 / width)


@pytest.mark.parametrize("name", sorted(STRUCTURAL))
def test_structural_inits_refuse_a_plain_mlp_before_drawing(name):
    torch.manual_seed(0)
    net = build_mlp(784, [32, 32], 10)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match=rf"^init={name} needs model.residual=true") as err:
        apply_init(net, {"name": name, "bias": 0.0})
    assert "\n" not in str(err.value)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize("name", NAMES)
def test_every_init_fills_a_residual_net(train_x, name):
    """Every init on a residual net: every Linear filled as on a plain MLP (the variances it
    declares, where it has one), the gates set (1, SkipInit's 0) whatever they were, and weight
    norm keeping the step-0 function."""
    nets = {}
    for norm in ("none", "weightnorm"):
        torch.manual_seed(0)
        nets[norm] = net = build_mlp(784, [32] * 2, 10, residual=True)  # weight norm: below
        for _, block in residual_blocks(net):
            block.gate.data.fill_(0.5)
        spec = _yaml(name)
        apply_init(net, spec, batch=train_x)
        if norm == "weightnorm":
            from initlab.mlp import register_weight_norm

            register_weight_norm(net)
        expected_gate = 0.0 if name == "skipinit" else 1.0
        assert [b.gate.item() for _, b in residual_blocks(net)] == [expected_gate] * 2
    with torch.no_grad():
        plain, normed = nets["none"](train_x[:200]), nets["weightnorm"](train_x[:200])
    assert torch.isfinite(normed).all()
    scale = max(plain.abs().max().item(), 1e-6)
    torch.testing.assert_close(normed, plain, rtol=1e-4, atol=1e-5 * scale)
    params = {k: v for k, v in _yaml(name).items() if k != "name"}
    declared = residual_variances(name, params, 784, 32, 10, 2, 2)
    if declared is None:
        assert INITS[name].no_variance
    elif name not in STRUCTURAL:  # the per-weight law at each Linear's shape
        assert declared["inp"][0] == weight_variance(name, params, 784, 32)
        assert declared["branch"][1][0][0] == weight_variance(name, params, 32, 32)
        assert declared["gates"] == [1.0, 1.0]


@pytest.mark.parametrize("name", sorted(STRUCTURAL))
def test_structural_inits_train_with_every_norm(tmp_path, name):
    """A few steps through run() on a residual net of two blocks, for each norm."""
    residual = ["model.hidden_sizes=null", "model.width=32", "model.depth=2", "model.residual=true"]
    for norm in NORMS:
        cfg = compose_train([*TINY, *residual, f"init={name}", f"norm={norm}"])
        r = run(cfg, tmp_path / norm, SGD)
        assert r["status"] == "ok", (norm, r.get("error"))
        assert r["init"] == name and r["norm"] == norm and r["branch_layers"] == 2
        assert all(math.isfinite(v) for v in r["final"].values())
        assert r["layer_profile"]["first"]["layers"][:3] == ["inp", "block1.fc1", "block1.fc2"]


def test_mean_field_at_null_sigma_w2_sits_at_the_edge_of_chaos():
    """init.sigma_w2=null: the critical sigma_w2 of the activation at sigma_b2 (chi_1 = 1), in
    the draw and in the declared variance; relu's is He's 2."""
    from initlab.inits import mean_field_sigma_w2
    from initlab.propagation.theory import chi_1

    params = {"sigma_w2": None, "sigma_b2": 0.001}
    tanh = weight_variance("mean_field", params, 400, 400, "tanh") * 400
    assert chi_1("tanh", tanh, 0.001) == pytest.approx(1.0, abs=1e-9)
    assert weight_variance("mean_field", params, 400, 400, "relu") * 400 == 2.0
    assert mean_field_sigma_w2(1.5, 0.001, "tanh") == 1.5
    torch.manual_seed(0)
    w = torch.empty(1000, 1000)
    INITS["mean_field"](w, sigma_w2=None, sigma_b2=0.001, activation="tanh")
    # the sample variance of 1e6 normal entries: relative standard error sqrt(2 / 1e6)
    assert float(w.var()) * 1000 == pytest.approx(tanh, rel=5 * math.sqrt(2 / 1e6))
