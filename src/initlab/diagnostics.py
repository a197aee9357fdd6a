"""Per-layer diagnostics of a network: what the tutorial's arguments predict, measured."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def distinct_units(layer: nn.Linear, atol: float = 1e-6) -> int:
    """How many different units a layer has: its rows of [W | b], equal within ``atol``, count once.

    Zero or constant init gives 1 (the tutorial's symmetry problem); a random init gives the width.
    """
    rows = layer.weight
    if layer.bias is not None:
        rows = torch.cat([rows, layer.bias[:, None]], dim=1)
    close = torch.cdist(rows[None].double(), rows[None].double(), p=float("inf"))[0] <= atol
    # a row counts unless an earlier row equals it
    return int((~close.tril(diagonal=-1).any(dim=1)).sum())
