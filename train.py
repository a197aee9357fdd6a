"""Train one MLP of the study, or a sweep of them with -m.

    python train.py init=xavier norm=batchnorm
    python train.py -m init=zero,xavier,he norm=none,batchnorm

A thin Hydra edge over initlab.run.run, which does the work without Hydra. Exit status: 0 when
every run finished (ok or diverged); 1 when a run failed (its results.json says why); 2 for bad
input (one line, nothing written); 128 + N when signal N stopped it (130 Ctrl-C, 143 SIGTERM),
its checkpoint saved: the same command resumes.

torch and Lightning are imported inside ``main``, when a run starts: ``--help``, ``--hydra-help``
and tab completion (``-sc``) print their text without them (tests/test_terminal.py checks it).
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from initlab.cli import preflight
from initlab.config import ConfigError, validate
from initlab.hydra_callbacks import interrupted_sweep

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
    # Before the run: Lightning's messages and the dependencies' warnings go to train.log only.
    from initlab.callbacks import route_terminal

    route_terminal(progress_bar=bool(progress), sweep_job=multirun)
    from initlab.errors import DataError
    from initlab.run import RunInterrupted, RunMismatch, run

    try:
        results = run(
            cfg,
            hydra_cfg.runtime.output_dir,
            hydra.utils.instantiate(cfg.optimizer),
            progress_bar=bool(progress),
        )
    except RunMismatch as exc:  # bad input found late (the data): one line, nothing touched
        print(f"initlab: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except RunInterrupted as exc:  # the user's stop (logged by the run): the sweep stops too
        if multirun:
            exc.sweep_dir = Path(hydra_cfg.sweep.dir)
        raise
    except DataError as exc:  # bad data: one line, like bad config (recorded as failed)
        if not multirun:
            print(f"initlab: error: {exc}", file=sys.stderr)
            sys.exit(2)
        log.error("job %s failed: %s", hydra_cfg.job.override_dirname, exc)
        return None
    except OSError as exc:  # a full disk, say: one line (results.json records it if it can)
        if not multirun:
            print(f"initlab: error: {exc}", file=sys.stderr)
            sys.exit(1)
        log.error("job %s failed: %s", hydra_cfg.job.override_dirname, exc)
        return None
    except Exception:
        if not multirun:
            raise
        # One bad job must not end the sweep: it is recorded as "failed" in its results.json.
        log.exception("job %s failed", hydra_cfg.job.override_dirname)
        return None
    return results["final"]["val_acc"]


class SweepStopped(KeyboardInterrupt):
    """SIGTERM between a sweep's runs (during one, the run stops itself after its step)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop_between_runs(signum: int, frame: object) -> None:
    # Lightning chains this handler after its own while a run trains: that run stops after its
    # step and raises RunInterrupted, so only a signal between runs stops the sweep from here.
    if signal.getsignal(signum) is _stop_between_runs:
        raise SweepStopped(signum)


def _run_interrupted(exc: SystemExit) -> bool:
    """Whether ``exc`` is initlab.run.RunInterrupted (a run stopped by a signal). That module is
    imported by ``main`` before any run starts; other exits (--help, bad input) never load it."""
    run_module = sys.modules.get("initlab.run")
    return run_module is not None and isinstance(exc, run_module.RunInterrupted)


if __name__ == "__main__":
    argv = sys.argv[1:]
    preflight(argv, Path(__file__).parent / "conf", "train")  # bad input: exit 2
    sweeping = any(a in ("-m", "--multirun") for a in argv)
    if sweeping:
        signal.signal(signal.SIGTERM, _stop_between_runs)
    try:
        main()
    except SystemExit as exc:
        if "--hydra-help" in argv and not exc.code:  # after Hydra's text: what each launcher is
            from hydra_plugins.initlab_launchers import LAUNCHERS_HELP

            print(LAUNCHERS_HELP)
        if not _run_interrupted(exc):
            raise
        if sweeping:  # a single run said what it saved and how to resume
            interrupted_sweep(exc.sweep_dir, signal.Signals(exc.signum).name)
        sys.exit(exc.code)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM between runs, or a launcher waiting
        signum = getattr(exc, "signum", signal.SIGINT)
        if sweeping:
            interrupted_sweep(None, signal.Signals(signum).name)
        sys.exit(128 + signum)
