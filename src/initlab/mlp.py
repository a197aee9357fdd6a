"""The MLP of the study: widths, activation, and where the normalization goes.

Layout for each hidden layer: ``fc{i}`` (Linear) -> ``norm{i}`` (BatchNorm1d / LayerNorm, if any)
-> ``act{i}``; then ``out`` (Linear, never normalized). Weight norm is a reparametrization of
every Linear, registered *after* the init: registering first and initializing later would write
into a weight that the parametrization recomputes from (g, v), so the init would be ignored.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

from torch import nn
from torch.nn.utils import parametrizations

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "linear": nn.Identity,
}
NORMS = ("none", "batchnorm", "layernorm", "weightnorm")
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
    activation: str = "relu",
    norm: str = "none",
    init: Callable[[nn.Module], None] | None = None,
    init_name: str | None = None,
) -> nn.Sequential:
    """Build the network, apply ``init`` to it, then register weight norm if asked for.

    ``init_name`` only names the init in error messages.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is not one of: {', '.join(ACTIVATIONS)}")
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not one of: {', '.join(NORMS)}")
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    fan_in = input_size
    for i, width in enumerate(hidden_sizes, start=1):
        layers[f"fc{i}"] = nn.Linear(fan_in, width)
        if (norm_layer := _norm_layer(norm, width)) is not None:
            layers[f"norm{i}"] = norm_layer
        layers[f"act{i}"] = ACTIVATIONS[activation]()
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

    A weight row of all zeros has no direction (0/0 = NaN): refuse rather than train on NaN.
    That is init=zero (or constant with value 0); constant with value c != 0 has rows of norm
    |c| sqrt(fan_in), so it registers fine, and its units stay identical, as without weight norm.
    """
    for name, layer in net.named_modules():
        if not isinstance(layer, nn.Linear):
            continue
        zero_rows = int((layer.weight.detach().norm(dim=1) == 0).sum())
        if zero_rows:
            combination = f"init={init_name} with " if init_name else ""
            raise ValueError(
                f"{combination}norm=weightnorm needs nonzero weight rows, but layer {name!r} has "
                f"{zero_rows} all-zero rows (direction v/||v|| = 0/0 = NaN): use an init with "
                "nonzero rows (a random init, or constant with init.value != 0)"
            )
        parametrizations.weight_norm(layer, name="weight", dim=0)


def linear_layers(net: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The network's Linear layers in forward order, with their names."""
    return [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
