"""Initializers: one small function per strategy, looked up by name in ``INITS``.

Each initializer fills one ``nn.Linear`` weight in place from the torch RNG (seeded once per
run). Its keyword parameters come from the config (``init.gain=...``); fan sizes come from the
weight's shape, ``(fan_out, fan_in)``. Biases are set separately, to ``init.bias`` (default 0).

Adding an init: write ``def name_(weight, ...)`` here, add it to ``INITS``, and add
``conf/init/<name>.yaml``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn


def fans(weight: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear weight of shape (out_features, in_features)."""
    fan_out, fan_in = weight.shape
    return fan_in, fan_out


def zero_(weight: Tensor) -> None:
    """All weights 0: every hidden unit computes the same thing, and gets no gradient."""
    weight.zero_()


def xavier_(weight: Tensor, gain: float = 1.0) -> None:
    """Glorot & Bengio (2010), uniform: U[-a, a], a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(weight)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    weight.uniform_(-bound, bound)


def he_(weight: Tensor) -> None:
    """He et al. (2015), for ReLU: N(0, 2 / fan_in), so E[h^2] is preserved layer to layer."""
    fan_in, _ = fans(weight)
    weight.normal_(0.0, math.sqrt(2.0 / fan_in))


INITS: dict[str, Callable[..., None]] = {
    "zero": zero_,
    "xavier": xavier_,
    "he": he_,
}


def apply_init(model: nn.Module, spec: Mapping[str, Any]) -> None:
    """Initialize every Linear layer of ``model`` as ``spec`` says.

    ``spec`` is ``{"name": <key of INITS>, "bias": <float, default 0>, **init parameters}``,
    the shape of a ``conf/init/*.yaml`` file.
    """
    params = dict(spec)
    name = params.pop("name")
    bias = float(params.pop("bias", 0.0))
    if name not in INITS:
        raise ValueError(f"init={name!r} is not one of: {', '.join(sorted(INITS))}")
    init = INITS[name]
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.Linear):
                init(layer.weight, **params)
                if layer.bias is not None:
                    layer.bias.fill_(bias)
