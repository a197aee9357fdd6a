"""initlab against a plain PyTorch loop on cells of the phase diagram (real MNIST).

The loop below is written from the definition, independently of initlab: a tanh MLP with
W ~ N(0, sigma_w2 / fan_in), b ~ N(0, sigma_b2), SGD lr 0.01 momentum 0.5, batch 64, its own
random draws and batch order, then the accuracy of the net in eval mode on the same fixed
training subset initlab evaluates. A cell's outcome is decided by the report's rule
(``initlab.report.phase``: the 95% t interval of the seeds' mean against 0.5). Both must give
the cell the outcome the theory gives it, on a cell it calls trainable (within xi_c) and on one
it calls untrainable (beyond 6 xi_c); where the nets train, their means must not be told apart
by a Welch interval over the seeds.
"""

from __future__ import annotations

import math
import statistics
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab.data import MNISTDataModule
from initlab.propagation.theory import depth_scales
from initlab.report.phase import TRAINED, TRAINED_ACC, UNTRAINED
from initlab.report.stats import CONFIDENCE, paired, t_quantile
from initlab.run import run
from tests.conftest import compose_train

WIDTH, STEPS, EVAL, SIGMA_B2, BATCH = 64, 300, 2000, 0.05, 64
SEEDS = (0, 1, 2)
# (sigma_w2, depth): the outcome the theory gives it (checked against xi_c below)
CELLS = {(1.5, 6): TRAINED, (4.0, 60): UNTRAINED}


def _verdict(accs: list[float]) -> str:
    sign = paired(accs, [TRAINED_ACC] * len(accs)).sign()
    return TRAINED if sign > 0 else (UNTRAINED if sign < 0 else "unresolved")


def _plain(data: MNISTDataModule, sigma_w2: float, depth: int, seed: int) -> float:
    g = torch.Generator().manual_seed(10_000 + seed)  # not initlab's draws
    sizes = [784, *[WIDTH] * depth, 10]
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        linear = nn.Linear(fan_in, fan_out)
        with torch.no_grad():
            linear.weight.normal_(0.0, math.sqrt(sigma_w2 / fan_in), generator=g)
            linear.bias.normal_(0.0, math.sqrt(SIGMA_B2), generator=g)
        layers += [linear, nn.Tanh()] if i < depth else [linear]
    net = nn.Sequential(*layers)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.5)
    x, y = data.train.x, data.train.y
    order = torch.randperm(len(x), generator=g)
    for step in range(STEPS):
        idx = order[step * BATCH : (step + 1) * BATCH]
        loss = F.cross_entropy(net(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():
        predicted = net(data.train_eval.x).argmax(dim=1)
    return float((predicted == data.train_eval.y).float().mean())


def _initlab(root: Path, out: Path, sigma_w2: float, depth: int, seed: int) -> float:
    cfg = compose_train(
        [
            "init=mean_field",
            f"init.sigma_w2={sigma_w2}",
            f"init.sigma_b2={SIGMA_B2}",
            "model.activation=tanh",
            f"model.depth={depth}",
            f"model.width={WIDTH}",
            f"+trainer.max_steps={STEPS}",
            f"trainer.val_check_interval={STEPS}",
            f"data.train_eval_size={EVAL}",
            f"data.root={root}",
            "diagnostics=off",
            "logger=none",
            "progress_bar=false",
            f"seed={seed}",
        ]
    )
    record = run(cfg, out, partial(torch.optim.SGD, lr=0.01, momentum=0.5))
    assert record["budget"]["steps"] == STEPS and record["dataset"]["train_eval"] == EVAL
    return record["final"]["train_eval_acc"]


@pytest.mark.parametrize(("cell", "expected"), list(CELLS.items()), ids=str)
def test_initlab_and_a_plain_loop_agree_on_a_cells_outcome(mnist_root, tmp_path, cell, expected):
    sigma_w2, depth = cell
    xi_c = depth_scales("tanh", sigma_w2, SIGMA_B2)[1]
    assert (depth <= xi_c) if expected == TRAINED else (depth > 6 * xi_c)
    data = MNISTDataModule(root=mnist_root, train_eval_size=EVAL, download=False, fallback=False)
    data.setup("fit")
    plain = [_plain(data, sigma_w2, depth, seed) for seed in SEEDS]
    ours = [_initlab(mnist_root, tmp_path / str(seed), sigma_w2, depth, seed) for seed in SEEDS]
    assert _verdict(plain) == _verdict(ours) == expected, (plain, ours)
    if expected != TRAINED:
        return  # at chance a net predicts one class or another: nothing more to compare
    # Welch's interval of the difference of the two means: the two cannot be told apart
    va, vb = statistics.variance(plain) / len(plain), statistics.variance(ours) / len(ours)
    df = (va + vb) ** 2 / (va**2 / (len(plain) - 1) + vb**2 / (len(ours) - 1))
    half = t_quantile(0.5 + CONFIDENCE / 2, max(1, math.floor(df))) * math.sqrt(va + vb)
    diff = statistics.fmean(plain) - statistics.fmean(ours)
    assert abs(diff) <= half, (plain, ours, diff, half)
