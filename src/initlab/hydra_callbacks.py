"""Hydra callbacks (the only module that imports Hydra; the rest of initlab runs without it)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from initlab.results import STATUSES, find_results, read_results

log = logging.getLogger(__name__)


def tally(sweep_dir: str | Path) -> Counter:
    """Count the runs below ``sweep_dir`` by status (ok / diverged / failed)."""
    counts: Counter = Counter({s: 0 for s in STATUSES})
    for path in find_results(sweep_dir):
        try:
            counts[read_results(path).get("status") or "failed"] += 1
        except (OSError, ValueError):
            counts["failed"] += 1
    return counts


class SweepSummary(Callback):
    """At the end of a multirun: one line with the tally, and where results and logs are."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        counts = tally(sweep_dir)
        summary = ", ".join(f"{counts[s]} {s}" for s in STATUSES)
        log.info("sweep finished: %s. Results: %s/*/results.json", summary, sweep_dir)
        log.info("TensorBoard: tensorboard --logdir %s", sweep_dir)
