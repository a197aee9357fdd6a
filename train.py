"""Train one MLP of the study, or a sweep of them with -m.

    python train.py init=xavier norm=batchnorm
    python train.py -m init=zero,xavier,he norm=none,batchnorm

A thin Hydra edge over initlab.run.run, which does the work without Hydra.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from initlab.cli import preflight
from initlab.config import ConfigError, validate
from initlab.data import DataError
from initlab.run import run

log = logging.getLogger("initlab.train")


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Run one job; return its final validation accuracy (what sweepers optimize)."""
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        validate(cfg)
    except ConfigError as exc:
        print(f"initlab: config error: {exc}", file=sys.stderr)
        sys.exit(2)
    progress = cfg.progress_bar
    if progress == "auto":
        progress = sys.stdout.isatty() and not multirun
    try:
        results = run(
            cfg,
            hydra_cfg.runtime.output_dir,
            hydra.utils.instantiate(cfg.optimizer),
            progress_bar=bool(progress),
        )
    except DataError as exc:  # bad data: one line, like bad config (recorded as failed)
        if not multirun:
            print(f"initlab: error: {exc}", file=sys.stderr)
            sys.exit(2)
        log.error("job %s failed: %s", hydra_cfg.job.override_dirname, exc)
        return None
    except Exception:
        if not multirun:
            raise
        # One bad job must not end the sweep: it is recorded as "failed" in its results.json.
        log.exception("job %s failed", hydra_cfg.job.override_dirname)
        return None
    return results["final"]["val_acc"]


if __name__ == "__main__":
    preflight(sys.argv[1:], Path(__file__).parent / "conf", "train")  # bad input: exit 2
    main()
