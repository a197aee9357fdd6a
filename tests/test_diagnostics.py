"""Per-layer diagnostics: symmetry counts, dead units, the TensorBoard tags the callback logs."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from initlab.dashboard import EPOCH, FINAL, jacobian_tag
from initlab.diagnostics import add_histogram, distinct_units, hidden_layers
from initlab.mlp import build_mlp
from initlab.run import run

from .conftest import FAST, compose_train

SGD = partial(torch.optim.SGD, lr=0.01, momentum=0.5)
PER_HIDDEN = [
    "act_mean",
    "act_std",
    "preact_q",
    "dead_fraction",
    "weight_norm",
    "grad_norm",
    "grad_preact_q",
    "grad_preact_ratio",
]


def test_distinct_units_counts_equal_rows_once():
    layer = nn.Linear(3, 5)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2, 3], [1, 2, 3], [0, 0, 1], [1, 2, 3], [5, 5, 5]]))
        layer.bias.zero_()
    assert distinct_units(layer) == 3
    layer.bias.data[0] = 1e-3  # a difference above atol makes unit 0 distinct
    assert distinct_units(layer) == 4
    dead = torch.tensor([False, False, True, False, True])  # two different dead units: one class
    assert distinct_units(layer, dead) == 3


class _Writer:
    def add_histogram_raw(self, tag, lo, hi, num, total, squares, limits, counts, global_step):
        self.got = dict(lo=lo, hi=hi, num=num, total=total, squares=squares, step=global_step)
        self.limits, self.counts = limits.numpy(), counts.numpy()


def test_histogram_bins_as_numpy_and_skips_non_finite_values():
    values = torch.randn(10_000, generator=torch.Generator().manual_seed(0)) * 0.05
    writer = _Writer()
    add_histogram(writer, "w", torch.cat([values, torch.tensor([float("nan"), float("inf")])]), 7)
    counts, edges = np.histogram(values.numpy(), bins=64)
    # float32 bin edges: a value within rounding of an edge may fall on the other side
    assert np.abs(writer.counts - counts).sum() <= 2 and writer.counts.sum() == 10_000
    np.testing.assert_allclose(writer.limits, edges[1:], rtol=1e-5, atol=1e-7)
    assert writer.got["num"] == 10_000 and writer.got["step"] == 7
    assert writer.got["lo"] == pytest.approx(float(values.min()))
    assert writer.got["total"] == pytest.approx(float(values.sum()), abs=1e-3)
    assert writer.got["squares"] == pytest.approx(float(values.pow(2).sum()), rel=1e-5)
    zeros = _Writer()
    add_histogram(zeros, "z", torch.zeros(5, 3), 0)  # zero init: one bucket
    assert zeros.counts.tolist() == [15.0] and zeros.got["lo"] == zeros.got["hi"] == 0.0


def test_hidden_layers_pairs_linear_with_activation():
    net = build_mlp(20, [8, 6, 4], 3, norm="batchnorm")
    assert [(n, lin.out_features, type(a)) for n, lin, a in hidden_layers(net)] == [
        ("fc1", 8, nn.ReLU),
        ("fc2", 6, nn.ReLU),
        ("fc3", 4, nn.ReLU),
    ]


def _events(path):
    ea = EventAccumulator(str(path), size_guidance={"scalars": 0, "histograms": 0})
    ea.Reload()
    return ea


def test_callback_logs_per_layer_scalars_and_histograms(tmp_path):
    run(compose_train([*FAST, "model.depth=2", "trainer.max_epochs=2"]), tmp_path, SGD)
    ea = _events(tmp_path)
    scalars, histograms = set(ea.Tags()["scalars"]), set(ea.Tags()["histograms"])
    for layer in ("fc1", "fc2"):
        assert {f"watch/{k}/{layer}" for k in PER_HIDDEN} <= scalars
        assert {f"watch/update_ratio/{layer}", f"watch/distinct_units/{layer}"} <= scalars
        assert {
            f"watch/weight/{layer}",
            f"watch/preact/{layer}",
            f"watch/grad/{layer}",
        } <= histograms
    assert {"watch/weight_norm/out", "watch/grad_norm/out", "watch/update_ratio/out"} <= scalars
    prefixes = ("watch/", "train/", "val/", f"{EPOCH}/", f"{FINAL}/")
    assert not [t for t in scalars if not t.startswith(prefixes)]
    # every_n_steps=50 by default, plus step 0 and each epoch's last step (13 steps per epoch)
    assert [e.step for e in ea.Scalars("watch/act_mean/fc1")] == [0, 12, 25]
    assert [e.step for e in ea.Scalars("watch/distinct_units/fc1")] == [0, 12, 25]
    assert [e.value for e in ea.Scalars("watch/distinct_units/fc1")] == [512, 512, 512]
    assert [e.step for e in ea.Histograms("watch/weight/fc1")] == [0, 12, 25]


def test_jacobian_spectrum_at_step_0_and_epoch_ends(tmp_path):
    """The spectrum of dh_L/dh_1 where the symmetry counts are taken (not every every_n_steps),
    and step 0's in results.json beside the free-probability prediction: He on ReLU, three
    hidden layers, two factors W D with s1 = -1 each: m1 = 1 and spread 2 (2 - 1 + 1) = 4."""
    record = run(
        compose_train([*FAST, "model.depth=3", "model.width=64", "trainer.max_epochs=2"]),
        tmp_path,
        SGD,
    )
    ea = _events(tmp_path)
    for key in ("m1", "spread", "s_max"):
        assert [e.step for e in ea.Scalars(jacobian_tag(key))] == [0, 12, 25]
    assert [e.step for e in ea.Histograms(jacobian_tag("singular_values"))] == [0, 12, 25]
    j = record["jacobian"]
    assert j["step"] == 0 and j["inputs"] == 4 and j["factors"] == 2 and j["shape"] == [64, 64]
    assert j["weights"] == "gaussian" and j["prediction_note"] is None
    assert j["predicted"] == {"m1": pytest.approx(1.0), "spread": 4.0, "var": pytest.approx(4.0)}
    assert j["spread"] == pytest.approx(ea.Scalars(jacobian_tag("spread"))[0].value, rel=1e-6)
    assert 0.5 < j["m1"] < 2 and 2 < j["spread"] < 8  # 4 inputs of one init
    assert j["var"] > 0 and j["s_max"] ** 2 > j["m1"]  # (means over the inputs)


def test_jacobian_spectrum_skips_a_net_it_does_not_support(tmp_path, caplog):
    """Batch norm couples the units of a batch: no spectrum, one line saying why, the rest of
    the diagnostics as before."""
    with caplog.at_level("INFO", logger="initlab.diagnostics"):
        record = run(compose_train([*FAST, "norm=batchnorm"]), tmp_path, SGD)
    lines = [r.getMessage() for r in caplog.records if "Jacobian" in r.getMessage()]
    assert len(lines) == 1 and "BatchNorm1d" in lines[0], lines
    tags = _events(tmp_path).Tags()
    assert not [t for t in tags["scalars"] + tags["histograms"] if t.startswith(jacobian_tag(""))]
    assert record["jacobian"] is None and "watch/act_mean/fc1" in tags["scalars"]


def test_every_n_steps_and_off(tmp_path):
    run(compose_train([*FAST, "diagnostics.every_n_steps=4"]), tmp_path / "a", SGD)
    ea = _events(tmp_path / "a")
    assert [e.step for e in ea.Scalars("watch/grad_norm/fc1")] == [0, 4, 8, 12]
    run(compose_train([*FAST, "diagnostics=off"]), tmp_path / "b", SGD)
    tags = _events(tmp_path / "b").Tags()
    assert not any(t.startswith("watch/") for t in tags["scalars"]) and not tags["histograms"]


def test_zero_init_is_one_unit_per_layer(tmp_path):
    run(compose_train([*FAST, "init=zero", "trainer.max_epochs=2"]), tmp_path, SGD)
    ea = _events(tmp_path)
    for layer in ("fc1", "fc2"):
        assert [e.value for e in ea.Scalars(f"watch/distinct_units/{layer}")] == [1, 1, 1]


@pytest.mark.parametrize(("bias", "low", "high"), [(0.0, 0.0, 0.05), (-3.0, 0.5, 1.0)])
def test_dead_fraction_at_init(tmp_path, bias, low, high):
    """He init with zero bias: each unit is positive for about half the inputs, so dead units are
    rare; a bias of -3 standard deviations of the pre-activation kills most units."""
    run(compose_train([*FAST, "init=he", f"init.bias={bias}"]), tmp_path, SGD)
    step0 = _events(tmp_path).Scalars("watch/dead_fraction/fc2")[0]
    assert step0.step == 0 and low <= step0.value <= high


@pytest.mark.parametrize(
    ("init", "check"),
    [
        # U[-1/sqrt(n), 1/sqrt(n)] with zero biases: Glorot & Bengio's "standard" init
        (["init=default", "init.bias=0.0"], lambda ratio: ratio < 3 / 81),
        (["init=xavier"], lambda ratio: ratio > 1 / 48),
    ],
    ids=["standard", "xavier"],
)
def test_backpropagated_gradient_vanishes_for_standard_init_not_xavier(tmp_path, init, check):
    """Glorot & Bengio (2010) Fig. 7, read back from the event files: tanh, depth 5, width 256.
    Backward, E[delta^2] changes by n_(l+1) v E[tanh'(h_l)^2] per layer (gradient independence).
    The standard init has n v = 1/3 and E[tanh'^2] <= 1, so fc1/fc5 <= (1/3)^4 = 1/81; Xavier
    has n v = 1 on the square layers and E[tanh'^2] >= ~1/2 at its q, so fc1/fc5 >= 1/16. The
    approximation errs by well under a factor 3, the margin both bounds allow."""
    overrides = [*FAST, "model.activation=tanh", "model.depth=5", "model.width=256", *init]
    record = run(compose_train(overrides), tmp_path, SGD)
    ea = _events(tmp_path)
    ratios = {n: ea.Scalars(f"watch/grad_preact_ratio/fc{n}")[0] for n in range(1, 6)}
    assert {r.step for r in ratios.values()} == {0} and ratios[5].value == pytest.approx(1.0)
    assert check(ratios[1].value)
    assert all(ratios[n].value < ratios[n + 1].value for n in range(1, 5))  # monotone toward fc5
    first = record["layer_profile"]["first"]  # the same numbers, in results.json
    assert first["step"] == 0 and first["layers"] == [f"fc{n}" for n in range(1, 6)]
    grads = first["grad_preact_q"]
    assert grads[0] / grads[-1] == pytest.approx(ratios[1].value, rel=1e-5)
    # the last step's (a measured step is numbered before its update; history after it)
    assert record["layer_profile"]["last"]["step"] == record["history"][-1]["step"] - 1
