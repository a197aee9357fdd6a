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


def report(sweep_dir: str | Path) -> Path | None:
    """Write the sweep's report (initlab.report); None, with the error logged, if it fails: a
    broken report never fails the end of a sweep whose runs are all recorded."""
    try:
        from initlab.report import write_report

        return write_report(sweep_dir)
    except Exception:
        log.exception(
            "the report of %s failed (the runs' results.json are intact); retry with: "
            "python scripts/report.py %s",
            sweep_dir,
            sweep_dir,
        )
        return None


class SweepSummary(Callback):
    """At the end of a multirun: the report (summary.md, summary.csv, plots), then one line with
    the tally and where the report, results and logs are."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        counts = tally(sweep_dir)
        summary = ", ".join(f"{counts[s]} {s}" for s in STATUSES)
        path = report(sweep_dir)
        log.info(
            "sweep finished: %s. report: %s. Results: %s/*/results.json",
            summary,
            path if path is not None else "failed (error above)",
            sweep_dir,
        )
        log.info("TensorBoard: tensorboard --logdir %s", sweep_dir)
