"""What decides a run's numbers besides its config and data: how the arithmetic was done.

A float sum depends on its order, and the order depends on the torch thread count (how a matrix
product is split), the device and the kernels chosen (determinism settings, cuDNN's autotuner).
A trained net amplifies those last-bit differences: near the edge of chaos one seed gives 0.43
training accuracy with 1 thread and 0.14 with 2. So a run's record says how it ran, read from
torch itself at the start of its fit, and the report says when a study mixes them.

These are not in the run's fingerprint (``initlab.fingerprint``): a run resumed with another
thread count, or on another device, is still the run asked for (a SLURM requeue may land on
another node). The record says what it ran with (``runtime`` in results.json, whose schema,
``initlab.results``, lists the keys that decide the numbers); docs/reliability.md says how far
results reproduce across them.
"""

from __future__ import annotations

from typing import Any

import torch


def runtime_record(device: torch.device | str) -> dict[str, Any]:
    """How this process does its arithmetic, as torch reports it (``device``: where the run's
    tensors are, e.g. the trainer's root device)."""
    device = torch.device(device)
    name = device.type
    if device.type == "cuda":
        name = f"cuda ({torch.cuda.get_device_name(device)})"
    return {
        "device": name,
        "torch_threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "torch_version": torch.__version__,
    }
