"""Train one MLP of the study, or a sweep of them with -m.

    python train.py init=xavier norm=batchnorm
    python train.py -m init=zero,xavier,he norm=none,batchnorm

A thin Hydra edge over initlab.run.run, which does the work without Hydra. Exit status: 0 when
every run finished (ok or diverged); 1 when a run failed (its results.json says why); 2 for bad
input (one line, nothing written); 128 + N when signal N stopped it (130 Ctrl-C, 143 SIGTERM),
its checkpoint saved: the same command resumes (it finds the unfinished run or sweep it
started: ``initlab.rerun``), as does the command it prints, which names the directory.

torch and Lightning are imported inside ``main``, when a run starts: ``--help``, ``--hydra-help``
and tab completion (``-sc``) print their text without them (tests/test_terminal.py checks it);
a bare ``--help`` is Hydra's page computed from the config files (``initlab.apphelp``).
"""

from __future__ import annotations

import atexit
import logging
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from initlab.apphelp import app_help
from initlab.cli import Checked, preflight
from initlab.config import ConfigError, validate
from initlab.hydra_callbacks import interrupted_sweep

log = logging.getLogger("initlab.train")
CONF = Path(__file__).parent / "conf"


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
    from initlab.errors import DataError, RunDirBusy, RunMismatch
    from initlab.run import RunInterrupted, run

    try:
        results = run(
            cfg,
            hydra_cfg.runtime.output_dir,
            hydra.utils.instantiate(cfg.optimizer),
            progress_bar=bool(progress),
        )
    except (RunMismatch, RunDirBusy) as exc:  # found late (the data, a lock): nothing touched
        if not multirun:
            print(f"initlab: error: {exc}", file=sys.stderr)
            sys.exit(2)
        log.error("job %s: %s", hydra_cfg.job.override_dirname, exc)
        return None
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


def _sweep(sweep_dir: Path) -> int:
    """A sweep's phases, jobs then report, under one StopGuard: a signal stops it between two
    jobs (or the running one at its next boundary), and never inside its report; either way
    the tally and report of what finished are written, and the exit status is 128 + N."""
    from initlab.lifecycle import HardStop, RunInterrupted, StopGuard

    with StopGuard() as guard:
        try:
            main()
        except (RunInterrupted, HardStop) as stop:
            interrupted_sweep(sweep_dir, signal.Signals(stop.signum).name)
            return 128 + stop.signum
        except SystemExit:  # a failed run (exit status 1, after the tally and report)
            if not guard.stopping:
                raise
    if guard.stopping:  # it came during the report, which was written first
        log.warning("sweep stopped by %s after its report was written", guard.note())
        return 128 + (guard.received or signal.SIGTERM)
    return 0


def _own(checked: Checked) -> None:
    """Hold the run's (or sweep's) dir from here on, before Hydra writes into it, and make
    Hydra use exactly that dir: a second process there is refused and the first untouched."""
    from initlab.errors import RunDirBusy
    from initlab.rundir import RunDir

    try:
        rundir = RunDir(checked.output_dir).claim()
    except RunDirBusy as exc:
        print(f"initlab: error: {exc}", file=sys.stderr)
        sys.exit(2)
    # released as this process ends (a kill leaves it held, and the next one says so)
    atexit.register(rundir.release)
    if checked.note:  # the unfinished run or sweep of this command that it continues
        print(f"initlab: {checked.note}", file=sys.stderr)
    sys.argv.append(checked.pinned())


def _how_to_resume(checked: Checked) -> None:
    """After a stop: the command that resumes, naming the directory (pastes as printed)."""
    from initlab.rerun import finished, resume_command

    if not checked.multirun and finished(checked.output_dir):
        return
    what = "finishes the sweep" if checked.multirun else "resumes the run"
    print(
        f"initlab: the same command again {what}; or, naming its directory:\n"
        f"  {resume_command(sys.orig_argv, checked.pinned())}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv in (["--help"], ["-h"]) and (page := app_help(CONF, "train")) is not None:
        print(page)  # Hydra's page, without composing (Hydra takes 0.6 s to list the groups)
        sys.exit(0)
    checked = preflight(argv, CONF, "train")  # bad input: exit 2
    if checked is not None:
        _own(checked)
    try:
        if checked is not None and checked.multirun:
            sys.exit(_sweep(checked.output_dir))
        main()
    except SystemExit as exc:
        if checked is not None and isinstance(exc.code, int) and exc.code > 128:  # a signal
            _how_to_resume(checked)
        if "--hydra-help" in argv and not exc.code:  # after Hydra's text: what each launcher is
            from hydra_plugins.initlab_launchers import LAUNCHERS_HELP

            print(LAUNCHERS_HELP)
        raise
    except KeyboardInterrupt:  # Ctrl-C before a run began (Hydra's start-up)
        if checked is not None:
            _how_to_resume(checked)
        sys.exit(128 + signal.SIGINT)
