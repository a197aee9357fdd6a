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


# -- residual nets -----------------------------------------------------------------------------
def _residual(norm="none", depth=3, width=32, m=2, init=None, activation="relu", seed=0):
    torch.manual_seed(seed)
    spec = partial(apply_init, spec={"name": init}, activation=activation) if init else None
    return build_mlp(
        784, [width] * depth, 10, activation, norm, init=spec, residual=True, branch_layers=m
    )


@pytest.mark.parametrize("norm", ["none", "batchnorm", "layernorm"])
@pytest.mark.parametrize("m", [1, 2, 3])
def test_residual_architecture(norm, m):
    """flatten, inp, block1..blockL (each m x [norm ->] act -> fc, and a gate), [norm ->] act,
    out; the block's children in forward order, the norm inside the branch."""
    net = _residual(norm, depth=3, m=m)
    top = [name for name, _ in net.named_children()]
    tail = ["norm", "act", "out"] if norm != "none" else ["act", "out"]
    assert top == ["flatten", "inp", "block1", "block2", "block3", *tail]
    norm_type = NORM_TYPES[norm]
    for b in (1, 2, 3):
        block = getattr(net, f"block{b}")
        names = [n for n, _ in block.named_children()]
        per = ["norm{i}", "act{i}", "fc{i}"] if norm_type else ["act{i}", "fc{i}"]
        assert names == [p.format(i=i) for i in range(1, m + 1) for p in per]
        assert [lin.in_features for lin in block.branch()] == [32] * m
        assert all(isinstance(block.get_submodule(f"act{i}"), nn.ReLU) for i in range(1, m + 1))
        if norm_type:
            assert isinstance(block.norm1, norm_type)
        assert isinstance(block.gate, nn.Parameter) and block.gate.shape == ()
        assert block.gate.requires_grad and block.gate.item() == 1.0
    assert [(m_.in_features, m_.out_features) for _, m_ in linear_layers(net)] == [
        (784, 32),
        *[(32, 32)] * (3 * m),
        (32, 10),
    ]
    assert net(torch.randn(5, 784)).shape == (5, 10)


def test_residual_block_computes_h_plus_gate_times_branch():
    net = _residual("layernorm", depth=2, m=2, init="he")
    x = torch.randn(7, 784)
    with torch.no_grad():
        net.block2.gate.fill_(0.3)
        h = net.inp(x)
        for block in (net.block1, net.block2):
            f = block.fc2(block.act2(block.norm2(block.fc1(block.act1(block.norm1(h))))))
            h = h + block.gate * f
        expected = net.out(net.act(net.norm(h)))
        torch.testing.assert_close(net(x), expected)
        net.block1.gate.zero_()
        net.block2.gate.zero_()  # every block the identity
        torch.testing.assert_close(net(x), net.out(net.act(net.norm(net.inp(x)))))


def test_residual_nets_need_one_width_and_a_branch():
    with pytest.raises(ValueError, match=r"one width for every block, not \[64, 32\]") as err:
        build_mlp(784, [64, 32], 10, residual=True)
    assert "\n" not in str(err.value) and "model.width" in str(err.value)
    with pytest.raises(ValueError, match="branch_layers=0 must be a positive integer"):
        build_mlp(784, [64, 64], 10, residual=True, branch_layers=0)


def test_residual_false_is_the_plain_mlp_draw_for_draw():
    """The defaults build what initlab built before residual nets: the same modules, names and,
    for the same seed, the same weights as the layout written out by hand."""
    from collections import OrderedDict

    torch.manual_seed(0)
    net = build_mlp(
        784, [64, 32], 10, norm="batchnorm", init=partial(apply_init, spec={"name": "he"})
    )
    torch.manual_seed(0)
    layers = OrderedDict(flatten=nn.Flatten())
    for i, (a, b) in enumerate([(784, 64), (64, 32)], start=1):
        layers[f"fc{i}"], layers[f"norm{i}"], layers[f"act{i}"] = (
            nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()
        )  # fmt: skip
    layers["out"] = nn.Linear(32, 10)
    ref = nn.Sequential(layers)
    apply_init(ref, {"name": "he"})
    assert list(net.state_dict()) == list(ref.state_dict())
    for key, value in ref.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key
    assert build_mlp(4, [3], 2, residual=False, branch_layers=5).state_dict().keys() == (
        build_mlp(4, [3], 2).state_dict().keys()
    )


@pytest.mark.parametrize("init", ["he", "fixup", "skipinit"])
def test_weight_norm_on_a_residual_net_keeps_the_function(init):
    plain = _residual("none", init=init)
    normed = _residual("weightnorm", init=init)
    linears = linear_layers(normed)
    assert len(linears) == 1 + 3 * 2 + 1
    for _, layer in linears:
        assert nn.utils.parametrize.is_parametrized(layer, "weight")
    for (_, a), (_, b) in zip(linear_layers(plain), linears, strict=True):
        torch.testing.assert_close(a.weight, b.weight)
    x = torch.randn(16, 784)
    torch.testing.assert_close(plain(x), normed(x))


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("norm", ["none", "batchnorm", "layernorm", "weightnorm"])
def test_training_memory_counts_the_parameters_the_net_has(residual, norm):
    from initlab.mlp import linear_shapes, training_memory

    hidden, m = [48] * 3, 2
    torch.manual_seed(0)
    net = build_mlp(784, hidden, 10, norm=norm, residual=residual, branch_layers=m)
    _, params = training_memory(784, hidden, 10, 64, 1000, norm, residual=residual,
                                branch_layers=m)  # fmt: skip
    assert params == sum(p.numel() for p in net.parameters())
    shapes = [(lin.in_features, lin.out_features) for _, lin in linear_layers(net)]
    assert linear_shapes(784, hidden, 10, residual, m) == shapes
