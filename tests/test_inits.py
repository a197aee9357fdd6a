"""The initializers are exactly what their names say."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch import nn

from initlab.inits import INITS, apply_init

SHAPES = [(200, 300), (300, 200), (256, 784)]  # (fan_out, fan_in)


def _weight(shape, name, **params):
    torch.manual_seed(0)
    w = torch.empty(shape)
    INITS[name](w, **params)
    return w


@pytest.mark.parametrize("shape", SHAPES)
def test_zero(shape):
    assert torch.count_nonzero(_weight(shape, "zero")) == 0


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_xavier_is_glorot_uniform(shape, gain):
    fan_out, fan_in = shape
    bound = gain * math.sqrt(6 / (fan_in + fan_out))
    w = _weight(shape, "xavier", gain=gain).flatten()
    assert w.abs().max() <= bound
    p = stats.kstest(w.numpy(), "uniform", args=(-bound, 2 * bound)).pvalue
    assert p > 1e-4


@pytest.mark.parametrize("shape", SHAPES)
def test_he_is_kaiming_normal_fan_in(shape):
    _, fan_in = shape
    w = _weight(shape, "he").flatten()
    p = stats.kstest(w.numpy(), "norm", args=(0, math.sqrt(2 / fan_in))).pvalue
    assert p > 1e-4


def test_he_differs_from_the_tutorials_formula():
    """The tutorial's U[-sqrt(2/n), sqrt(2/n)] has variance 2/(3n): a KS test tells them apart."""
    fan_in = 300
    w = _weight((200, fan_in), "he").flatten()
    b = math.sqrt(2 / fan_in)
    assert stats.kstest(w.numpy(), "uniform", args=(-b, 2 * b)).pvalue < 1e-4


def test_apply_init_sets_every_linear_and_the_bias():
    net = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    apply_init(net, {"name": "zero", "bias": 0.25})
    for layer in (net[0], net[2]):
        assert torch.count_nonzero(layer.weight) == 0
        assert torch.all(layer.bias == 0.25)


def test_apply_init_rejects_unknown_names():
    with pytest.raises(ValueError, match="init='hee' is not one of: he, xavier, zero"):
        apply_init(nn.Linear(2, 2), {"name": "hee"})
