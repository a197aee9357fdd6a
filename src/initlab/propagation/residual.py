"""The residual net at init, measured per block beside the recursion of the residual stream
(``theory.predict_residual``). Torch; no Hydra.

The quantity is the stream's second moment q_l = E[h_l^2] after each block (and the embedding's
output before the first), with each branch's E[f^2] before its gate: a plain MLP's per-layer
moments say little here, where every block adds to one running sum. Measured as ``measure`` does
for plain nets: in float64 (from the float32 init), in training mode (batch statistics), with
forward hooks, on one batch, over independent inits; forward only (no backward prediction).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from initlab.inits import INITS, STRUCTURAL, residual_variances
from initlab.mlp import residual_blocks
from initlab.propagation import SCHEMA_VERSION
from initlab.propagation.measure import (
    CORRELATION_INPUTS,
    _summary,
    build_network,
    mean_correlation,
)
from initlab.propagation.theory import predict_residual


@torch.no_grad()
def measure_residual(net: nn.Module, x: Tensor) -> dict[str, Any]:
    """One forward pass of a residual net (``initlab.mlp``) on ``x``, recorded with forward hooks.

    ``q``: E[h^2] of the stream, the embedding ``inp``'s output then each block's output (L + 1
    values); ``branch_q``: E[f^2] of each block's branch (its last Linear's output, before the
    gate); ``branch_pre``: per block, E[z^2] at each of the branch's activation inputs (the norm's
    output, if any); ``q_logits``. Means over the batch and the units.
    """
    seen: dict[str, Tensor] = {}
    handles = []

    def keep(name: str, inputs: bool = False) -> Callable:
        def hook(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
            seen[name] = (args[0] if inputs else output).pow(2).mean()

        return hook

    blocks = residual_blocks(net)
    try:
        handles.append(net.get_submodule("inp").register_forward_hook(keep("inp")))
        for name, block in blocks:
            handles.append(block.register_forward_hook(keep(name)))
            handles.append(block.branch()[-1].register_forward_hook(keep(f"{name}.f")))
            for i in range(1, block.branch_layers + 1):
                act = block.get_submodule(f"act{i}")
                handles.append(act.register_forward_hook(keep(f"{name}.act{i}", inputs=True)))
        logits = net(x)
    finally:
        for handle in handles:
            handle.remove()
    return {
        "q": [float(seen["inp"]), *(float(seen[name]) for name, _ in blocks)],
        "branch_q": [float(seen[f"{name}.f"]) for name, _ in blocks],
        "branch_pre": [
            [float(seen[f"{name}.act{i}"]) for i in range(1, block.branch_layers + 1)]
            for name, block in blocks
        ],
        "q_logits": float(logits.pow(2).mean()),
    }


def propagate_residual(
    init: Mapping[str, Any],
    hidden_sizes: Sequence[int],
    x: Tensor,
    y: Tensor,
    seeds: Sequence[int],
    activation: str = "relu",
    norm: str = "none",
    num_classes: int = 10,
    init_batch: Tensor | None = None,
    branch_layers: int = 2,
) -> dict[str, Any]:
    """Measure a residual net of ``len(hidden_sizes)`` blocks at init for each seed in ``seeds``,
    predict (``theory.predict_residual``), and put them side by side: the record
    ``propagation.json`` holds (``measure.propagate`` dispatches here for ``residual=True``).

    Its ``layers`` are the stream's points: index 0 the embedding ``inp``, 1..L the blocks (each
    with ``q``, the stream after it, ``branch_q`` and ``branch_pre``), L + 1 the logits ``out``;
    each moment ``measure``'s summary (mean over seeds, median, seed_std, predicted, per_seed).
    ``y`` is unused (forward only), kept so that the call is ``propagate``'s.
    """
    del y
    init_batch = x if init_batch is None else init_batch
    input_size, blocks = x.shape[1], len(hidden_sizes)
    width = hidden_sizes[0]
    x64 = x.to(torch.float64)
    per_seed = []
    for s in seeds:
        net = build_network(
            init, hidden_sizes, input_size, num_classes, activation, norm, s, init_batch,
            residual=True, branch_layers=branch_layers,
        )  # fmt: skip
        per_seed.append(measure_residual(net, x64))
    name = init["name"]
    params = {k: v for k, v in init.items() if k != "name"}
    variances = residual_variances(
        name, params, input_size, width, num_classes, blocks, branch_layers, activation
    )
    q0 = float(x64.pow(2).mean())
    pred = predict_residual(variances, input_size, width, q0, activation, norm) if variances else {}

    def predicted(key: str, *index: int) -> float | None:
        value = pred.get(key)
        for i in index:
            value = None if value is None else value[i]
        return value

    def summary(key: str, *index: int, pred_key: str | None = None) -> dict[str, Any]:
        values = []
        for row in per_seed:
            value = row[key]
            for i in index:
                value = value[i]
            values.append(value)
        return _summary(values, predicted(pred_key or key, *index))

    layers: list[dict[str, Any]] = [
        {"index": 0, "name": "inp", "fan_in": input_size, "fan_out": width, "hidden": True,
         "gate": None, "q": summary("q", 0), "branch_q": None, "branch_pre": None,
         "grad_q": None},
    ]  # fmt: skip
    gates = variances["gates"] if variances else [None] * blocks
    for b in range(blocks):
        layers.append(
            {
                "index": b + 1,
                "name": f"block{b + 1}",
                "fan_in": width,
                "fan_out": width,
                "hidden": True,
                "gate": gates[b],
                "q": summary("q", b + 1),
                "branch_q": summary("branch_q", b),
                "branch_pre": [summary("branch_pre", b, i) for i in range(branch_layers)],
                "grad_q": None,
            }
        )
    layers.append(
        {"index": blocks + 1, "name": "out", "fan_in": width, "fan_out": num_classes,
         "hidden": False, "gate": None, "q": summary("q_logits"), "branch_q": None,
         "branch_pre": None, "grad_q": None},
    )  # fmt: skip
    if variances is None:
        note = INITS[name].no_variance or "no closed-form weight variance for this init"
    else:
        note = "forward only: the residual stream's second moment per block, no backward prediction"
    n_c = min(CORRELATION_INPUTS, len(x64))
    return {
        "schema_version": SCHEMA_VERSION,
        "init": name,
        "init_params": params,
        "norm": norm,
        "activation": activation,
        "depth": blocks,
        "hidden_sizes": list(hidden_sizes),
        "widths": [input_size, *hidden_sizes, num_classes],
        "seeds": list(seeds),
        "q0": q0,
        "c0": mean_correlation(x64[:CORRELATION_INPUTS]),
        "residual": {
            "branch_layers": branch_layers,
            "structural_init": name in STRUCTURAL,
        },
        "correlation": {"inputs": n_c, "pairs": n_c * (n_c - 1) // 2, "predicted": False},
        "prediction": {
            "available": variances is not None,
            "method": {"q": pred.get("method"), "branch_q": pred.get("method")},
            "backward": False,
            "note": note,
        },
        "mean_field": None,
        "jacobian": None,
        "layers": layers,
    }


def relative_errors(record: Mapping[str, Any], key: str = "q") -> list[float | None]:
    """measured / predicted - 1 of moment ``key`` at each of a residual record's blocks (index
    1..L; None where either is missing or the prediction is 0)."""
    out: list[float | None] = []
    for layer in record["layers"][1:-1]:
        s = layer.get(key)
        m, p = (s["measured"], s["predicted"]) if s else (None, None)
        out.append(m / p - 1.0 if m is not None and p else None)
    return out
