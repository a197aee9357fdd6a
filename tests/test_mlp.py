"""The network: architecture per norm and depth, symmetry of zero init, weight norm after init."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from initlab.diagnostics import distinct_units
from initlab.inits import apply_init
from initlab.mlp import build_mlp, linear_layers

from .conftest import sgd_steps

NORM_TYPES = {"none": None, "batchnorm": nn.BatchNorm1d, "layernorm": nn.LayerNorm}


@pytest.mark.parametrize("norm", ["none", "batchnorm", "layernorm"])
def test_architecture_per_norm(norm):
    net = build_mlp(784, [512, 256], 10, norm=norm)
    kinds = [type(m) for m in net]
    norm_type = NORM_TYPES[norm]
    hidden = [nn.Linear, norm_type, nn.ReLU] if norm_type else [nn.Linear, nn.ReLU]
    assert kinds == [nn.Flatten, *hidden, *hidden, nn.Linear]
    assert [(m.in_features, m.out_features) for _, m in linear_layers(net)] == [
        (784, 512),
        (512, 256),
        (256, 10),
    ]
    for m in net:
        if isinstance(m, (nn.BatchNorm1d, nn.LayerNorm)):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


@pytest.mark.parametrize("depth", [1, 8])
def test_depth(depth):
    net = build_mlp(784, [64] * depth, 10, activation="tanh")
    assert len(linear_layers(net)) == depth + 1
    assert sum(isinstance(m, nn.Tanh) for m in net) == depth
    assert net(torch.randn(3, 784)).shape == (3, 10)


def test_unknown_norm_and_activation():
    with pytest.raises(ValueError, match="norm='groupnorm' is not one of"):
        build_mlp(4, [4], 2, norm="groupnorm")
    with pytest.raises(ValueError, match="activation='swish' is not one of"):
        build_mlp(4, [4], 2, activation="swish")


@pytest.mark.parametrize(("init", "expected"), [("zero", 1), ("he", None), ("xavier", None)])
def test_symmetry_of_zero_init_survives_training(init, expected):
    torch.manual_seed(0)
    net = build_mlp(784, [64, 32], 10, init=partial(apply_init, spec={"name": init}))
    sgd_steps(net)
    for _, layer in linear_layers(net)[:-1]:
        assert distinct_units(layer) == (expected or layer.out_features)


def _init_net(norm, init="he", seed=0):
    torch.manual_seed(seed)
    return build_mlp(784, [64, 32], 10, norm=norm, init=partial(apply_init, spec={"name": init}))


def test_weight_norm_is_registered_after_init_and_keeps_the_function():
    plain, normed = _init_net("none"), _init_net("weightnorm")
    for _, layer in linear_layers(normed):
        assert nn.utils.parametrize.is_parametrized(layer, "weight")
    for (_, a), (_, b) in zip(linear_layers(plain), linear_layers(normed), strict=True):
        torch.testing.assert_close(a.weight, b.weight)
    x = torch.randn(16, 784)
    torch.testing.assert_close(plain(x), normed(x))
    # the init really reached the weights: He std is sqrt(2/784) in layer 1, not PyTorch's default
    w = linear_layers(normed)[0][1].weight
    assert abs(w.std().item() / (2 / 784) ** 0.5 - 1) < 0.02
