"""The MLP of the study: widths, activation, and where the normalization goes.

Layout for each hidden layer: ``fc{i}`` (Linear) -> ``norm{i}`` (BatchNorm1d / LayerNorm, if any)
-> ``act{i}``; then ``out`` (Linear, never normalized). Weight norm is a reparametrization of
every Linear, registered *after* the init: registering first and initializing later would write
into a weight that the parametrization recomputes from (g, v), so the init would be ignored.

The residual net (``residual=True``): ``inp`` (Linear, the embedding into the width), then
``block1`` .. ``block{depth}``, each a pre-activation block h + gate * f(h) (``ResidualBlock``:
f = ``branch_layers`` x [``norm{i}`` ->] ``act{i}`` -> ``fc{i}``, the norm inside the branch so
that the stream itself is never normalized; ``gate`` a learnable scalar), then [``norm`` ->]
``act`` -> ``out``. Every block adds to the stream, so all blocks have one width.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrizations

from initlab.config import (
    ACTIVATIONS,
    NORMS,
    TUTORIAL_HIDDEN_SIZES,
    ModelConf,
    NormConf,
    resolve_hidden_sizes,
)

# the module of each activation config.ACTIVATIONS names (tests/test_mlp.py checks they agree)
ACTIVATION_MODULES: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "linear": nn.Identity,
}


__all__ = [
    "ACTIVATION_MODULES",
    "TUTORIAL_HIDDEN_SIZES",
    "ResidualBlock",
    "branch_layers",
    "build_mlp",
    "linear_layers",
    "register_weight_norm",
    "residual_blocks",
    "resolve_hidden_sizes",
    "linear_shapes",
    "training_memory",
]


def _norm_layer(norm: str, width: int) -> nn.Module | None:
    if norm == "batchnorm":
        return nn.BatchNorm1d(width)
    if norm == "layernorm":
        return nn.LayerNorm(width)
    return None


class ResidualBlock(nn.Module):
    """h + gate * f(h), pre-activation: f = ``branch_layers`` x [``norm{i}`` ->] ``act{i}`` ->
    ``fc{i}`` (Linear(width, width)), the children registered in that (forward) order.

    ``gate`` is a learnable scalar, 1 at construction; ``apply_init`` sets it (1, or 0 for
    SkipInit). The norm sits inside the branch, as in pre-activation ResNets (He et al. 2016), so
    the stream h is never normalized and its scale is what the init makes of it.
    """

    def __init__(self, width: int, branch_layers: int, activation: str, norm: str) -> None:
        super().__init__()
        for i in range(1, branch_layers + 1):
            if (norm_layer := _norm_layer(norm, width)) is not None:
                self.add_module(f"norm{i}", norm_layer)
            self.add_module(f"act{i}", ACTIVATION_MODULES[activation]())
            self.add_module(f"fc{i}", nn.Linear(width, width))
        self.gate = nn.Parameter(torch.ones(()))
        self.branch_layers = branch_layers

    def branch(self) -> list[nn.Linear]:
        """The branch's Linear layers, in forward order (the last one writes into the stream)."""
        return [getattr(self, f"fc{i}") for i in range(1, self.branch_layers + 1)]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        f = h
        for layer in self.children():
            f = layer(f)
        return h + self.gate * f


def residual_blocks(net: nn.Module) -> list[tuple[str, ResidualBlock]]:
    """The residual blocks of a network, in forward order, with their names (none: a plain MLP)."""
    return [(n, m) for n, m in net.named_modules() if isinstance(m, ResidualBlock)]


def branch_layers(net: nn.Module) -> int | None:
    """The length of a built net's residual branches (None: a plain MLP): what the report tells
    a residual net from a plain one of the same widths by."""
    blocks = residual_blocks(net)
    return blocks[0][1].branch_layers if blocks else None


def _check_choices(activation: str, norm: str) -> None:
    if activation not in ACTIVATION_MODULES:
        raise ValueError(f"activation={activation!r} is not one of: {', '.join(ACTIVATIONS)}")
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not one of: {', '.join(NORMS)}")


def _residual_layers(
    input_size: int,
    hidden_sizes: Sequence[int],
    num_classes: int,
    activation: str,
    norm: str,
    branch_layers: int,
) -> OrderedDict[str, nn.Module]:
    widths = sorted(set(hidden_sizes))
    if len(widths) != 1:
        raise ValueError(
            f"a residual net needs one width for every block, not {list(hidden_sizes)}: "
            "set model.width"
        )
    if branch_layers < 1:
        raise ValueError(f"branch_layers={branch_layers} must be a positive integer")
    width = widths[0]
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    layers["inp"] = nn.Linear(input_size, width)
    for b in range(1, len(hidden_sizes) + 1):
        layers[f"block{b}"] = ResidualBlock(width, branch_layers, activation, norm)
    if (norm_layer := _norm_layer(norm, width)) is not None:
        layers["norm"] = norm_layer
    layers["act"] = ACTIVATION_MODULES[activation]()
    layers["out"] = nn.Linear(width, num_classes)
    return layers


def build_mlp(
    input_size: int,
    hidden_sizes: Sequence[int],
    num_classes: int,
    activation: str = ModelConf.activation,
    norm: str = NormConf.name,
    init: Callable[[nn.Module], None] | None = None,
    init_name: str | None = None,
    residual: bool = ModelConf.residual,
    branch_layers: int = ModelConf.branch_layers,
) -> nn.Sequential:
    """Build the network, apply ``init`` to it, then register weight norm if asked for.

    ``residual``: ``len(hidden_sizes)`` residual blocks of that (one) width, each with
    ``branch_layers`` Linear layers (the module docstring). ``init_name`` only names the init in
    error messages.
    """
    _check_choices(activation, norm)
    if residual:
        layers = _residual_layers(
            input_size, hidden_sizes, num_classes, activation, norm, branch_layers
        )
    else:
        layers = OrderedDict(flatten=nn.Flatten())
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


def linear_shapes(
    input_size: int,
    hidden_sizes: Sequence[int],
    num_classes: int,
    residual: bool = ModelConf.residual,
    branch_layers: int = ModelConf.branch_layers,
) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of every Linear of the network ``build_mlp`` builds, in forward order
    (no torch needed: what the memory and disk estimates count)."""
    if not residual:
        widths = [input_size, *hidden_sizes, num_classes]
        return list(zip(widths, widths[1:], strict=False))
    width = hidden_sizes[0]
    branch = [(width, width)] * (branch_layers * len(hidden_sizes))
    return [(input_size, width), *branch, (width, num_classes)]


def training_memory(
    input_size: int,
    hidden_sizes: Sequence[int],
    num_classes: int,
    batch_size: int,
    eval_batch_size: int,
    norm: str = "none",
    dataset_values: int = 70000 * 784,
    residual: bool = ModelConf.residual,
    branch_layers: int = ModelConf.branch_layers,
) -> tuple[int, int]:
    """(bytes, parameters): an estimate, in float32, of the memory one run needs on its device.

    Parameters four times (weights, gradients, the momentum buffer, a checkpoint's copy), the
    activations of a training batch six times per unit (pre-activation, norm, activation and
    their gradients), an evaluation batch's activations, and the dataset held on the device.
    Meant to refuse a model that cannot fit (a typo in a width), not to plan to the last byte.
    A residual net has ``branch_layers`` Linear layers per block (and a norm before each, and
    one before the output), a gate per block, and the stream's sum per block.
    """
    shapes = linear_shapes(input_size, hidden_sizes, num_classes, residual, branch_layers)
    params = sum(a * b + b for a, b in shapes)
    hidden_units = [b for _, b in shapes[:-1]]  # every unit that goes through a norm
    if residual:
        params += len(hidden_sizes)  # the gates
        hidden_units = [a for a, _ in shapes[1:]]  # the norms sit before each Linear
    if norm in ("batchnorm", "layernorm"):
        params += 2 * sum(hidden_units)
    elif norm == "weightnorm":
        params += sum(b for _, b in shapes)
    units = [input_size, *(b for _, b in shapes)]
    if residual:
        units += list(hidden_sizes)  # each block's sum
    activations = 6 * batch_size * sum(units) + 3 * eval_batch_size * max(units)
    return 4 * (4 * params + activations + dataset_values), params


def linear_layers(net: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The network's Linear layers in forward order, with their names."""
    return [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
