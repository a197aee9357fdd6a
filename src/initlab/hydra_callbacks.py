"""The end of a sweep, as Hydra runs it: the tally, the report, and the exit status.

A sweep exits 0 when every run finished (ok or diverged), 1 when a run failed or left an
unreadable results.json (``SweepFailed``, raised after the tally and the report are written),
and 128 + N when signal N stopped it (``interrupted_sweep`` tallies what finished). With
initlab.cli, the only modules that import Hydra; the rest of initlab runs without it.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from initlab.results import count_results, format_counts

log = logging.getLogger(__name__)


class SweepFailed(SystemExit):
    """Some run of the sweep failed: exit status 1, after the tally and the report."""

    def __init__(self) -> None:
        super().__init__(1)


def tally(sweep_dir: str | Path) -> Counter:
    """Count the results.json files below ``sweep_dir`` by category (ok / diverged / failed /
    unreadable; initlab.results.CATEGORIES), each classified by initlab.results.classify, as
    the report's summary.md counts them. Every category is a key. A bad file is counted as
    unreadable, never raised."""
    return count_results(sweep_dir)


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
    the tally and where the report, results and logs are; then ``SweepFailed`` (exit status 1)
    if a run failed. A tally or a report that fails is logged, never raised."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        counts = _summarize(sweep_dir, "sweep finished")
        log.info("TensorBoard: tensorboard --logdir %s", sweep_dir)
        if counts is None or counts["failed"] or counts["unreadable"]:
            raise SweepFailed()


def _summarize(sweep_dir: Path, headline: str) -> Counter | None:
    """Tally and report ``sweep_dir`` and log one line; the counts (None if the tally failed)."""
    try:
        counts: Counter | None = tally(sweep_dir)
        summary = format_counts(counts)
    except Exception:  # e.g. the sweep directory unreadable: the report may still be written
        log.exception("the tally of %s failed", sweep_dir)
        counts, summary = None, "tally failed (error above)"
    path = report(sweep_dir)
    log.info(
        "%s: %s. report: %s. Results: %s/*/results.json",
        headline,
        summary,
        path if path is not None else "failed (error above)",
        sweep_dir,
    )
    return counts


def interrupted_sweep(sweep_dir: str | Path | None, signal_name: str) -> None:
    """A sweep stopped by a signal: the tally and report of what finished so far, and how to go
    on (the same command skips the finished runs and resumes the stopped one). ``sweep_dir``
    None: the sweep Hydra is running in this process, if it has begun writing."""
    if sweep_dir is None:
        try:
            sweep_dir = HydraConfig.get().sweep.dir
        except Exception:
            sweep_dir = None
    if sweep_dir is None or not Path(sweep_dir).is_dir():
        log.warning("sweep stopped by %s before any run finished", signal_name)
        return
    _summarize(Path(sweep_dir).resolve(), f"sweep stopped by {signal_name}")
    log.warning("run the same command again to finish it: finished runs are skipped")
