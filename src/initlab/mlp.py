"""The MLP of the study: widths, activation, and where the normalization goes.

Layout for each hidden layer: ``fc{i}`` (Linear) -> ``norm{i}`` (BatchNorm1d / LayerNorm, if any)
-> ``act{i}``; then ``out`` (Linear, never normalized). Weight norm is a reparametrization of
every Linear, registered *after* the init: registering first and initializing later would write
into a weight that the parametrization recomputes from (g, v), so the init would be ignored.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrizations

from initlab.config import ACTIVATIONS, NORMS, ModelConf, NormConf

# the module of each activation config.ACTIVATIONS names (tests/test_mlp.py checks they agree)
ACTIVATION_MODULES: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "linear": nn.Identity,
}


TUTORIAL_HIDDEN_SIZES = (512, 256)


def resolve_hidden_sizes(
    depth: int | None = None,
    width: int | None = None,
    hidden_sizes: Sequence[int] | None = None,
) -> list[int]:
    """The hidden widths from the config's three ways of saying them.

    ``hidden_sizes`` wins when given. Else ``depth`` layers of ``width`` each; without a width,
    the tutorial's [512, 256], cut or extended with 256s to ``depth`` layers.
    """
    if hidden_sizes is not None:
        return [int(h) for h in hidden_sizes]
    depth = len(TUTORIAL_HIDDEN_SIZES) if depth is None else int(depth)
    if width is not None:
        return [int(width)] * depth
    tail = [TUTORIAL_HIDDEN_SIZES[-1]] * max(0, depth - len(TUTORIAL_HIDDEN_SIZES))
    return list(TUTORIAL_HIDDEN_SIZES[:depth]) + tail


def _norm_layer(norm: str, width: int) -> nn.Module | None:
    if norm == "batchnorm":
        return nn.BatchNorm1d(width)
    if norm == "layernorm":
        return nn.LayerNorm(width)
    return None


def build_mlp(
    input_size: int,
    hidden_sizes: Sequence[int],
    num_classes: int,
    activation: str = ModelConf.activation,
    norm: str = NormConf.name,
    init: Callable[[nn.Module], None] | None = None,
    init_name: str | None = None,
) -> nn.Sequential:
    """Build the network, apply ``init`` to it, then register weight norm if asked for.

    ``init_name`` only names the init in error messages.
    """
    if activation not in ACTIVATION_MODULES:
        raise ValueError(f"activation={activation!r} is not one of: {', '.join(ACTIVATIONS)}")
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not one of: {', '.join(NORMS)}")
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    fan_in = input_size
    for i, width in enumerate(hidden_sizes, start=1):
        layers[f"fc{i}"] = nn.Linear(fan_in, width)
        if (norm_layer := _norm_layer(norm, width)) is not None:
            layers[f"norm{i}"] = norm_layer
        layers[f"act{i}"] = ACTIVATION_MODULES[activation]()
        fan_in = width
    layers["out"] = nn.Linear(fan_in, num_classes)
    net = nn.Sequential(layers)
    if init is not None:
        init(net)
    if norm == "weightnorm":
        register_weight_norm(net, init_name)
    return net


def register_weight_norm(net: nn.Module, init_name: str | None = None) -> None:
    """w = g * v / ||v|| per output unit, starting from the current weights (so w is unchanged).

    A row of all zeros (init=zero, or constant with value 0) has no direction, and torch's own
    registration would divide 0 by 0. It is registered as g = 0 with v the constant direction
    1/sqrt(fan_in): w stays exactly 0, and every such row has the same v, so the zero init's
    symmetry is kept and training moves what it moves without weight norm (d/dv is g/||v|| (...)
    = 0, and dL/dg = v . dL/dw = 0 while the layers downstream are zero). ``init_name`` is kept
    for the caller's messages.
    """
    del init_name
    for layer in net.modules():
        if not isinstance(layer, nn.Linear):
            continue
        zero_rows = layer.weight.detach().norm(dim=1) == 0
        parametrizations.weight_norm(layer, name="weight", dim=0)
        if bool(zero_rows.any()):
            weight = layer.parametrizations.weight
            with torch.no_grad():
                g, v = weight.original0, weight.original1
                g[zero_rows] = 0.0
                v[zero_rows] = 1.0 / math.sqrt(v.shape[1])


def training_memory(
    input_size: int,
    hidden_sizes: Sequence[int],
    num_classes: int,
    batch_size: int,
    eval_batch_size: int,
    norm: str = "none",
    dataset_values: int = 70000 * 784,
) -> tuple[int, int]:
    """(bytes, parameters): an estimate, in float32, of the memory one run needs on its device.

    Parameters four times (weights, gradients, the momentum buffer, a checkpoint's copy), the
    activations of a training batch six times per unit (pre-activation, norm, activation and
    their gradients), an evaluation batch's activations, and the dataset held on the device.
    Meant to refuse a model that cannot fit (a typo in a width), not to plan to the last byte.
    """
    widths = [input_size, *hidden_sizes, num_classes]
    params = sum(a * b + b for a, b in zip(widths, widths[1:], strict=False))
    if norm in ("batchnorm", "layernorm"):
        params += 2 * sum(hidden_sizes)
    elif norm == "weightnorm":
        params += sum(widths[1:])
    activations = 6 * batch_size * sum(widths) + 3 * eval_batch_size * max(widths)
    return 4 * (4 * params + activations + dataset_values), params


def linear_layers(net: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The network's Linear layers in forward order, with their names."""
    return [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
