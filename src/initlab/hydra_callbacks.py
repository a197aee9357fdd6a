"""A sweep on the terminal, as Hydra runs it: its plan, one line per finished job, and its end
(the tally, the report, the total time, the top rows of summary.md's table, the exit status).

    sweep: 6 jobs (init: zero, xavier, he; norm: none, batchnorm) -> outputs/multirun/...
    job 1/6 done (ok, test_acc 0.1135), elapsed 5s, ETA 25s: init=zero norm=none

The job lines come from the process that launched the sweep: from ``SweepSummary.on_job_end``
when Hydra's basic launcher runs the jobs in it, from ``job_finished`` when initlab's launchers
see a job end in another process. A job's own log (its epoch lines, Lightning's messages) goes
to its train.log; the terminal gets only its warnings and errors
(``initlab.callbacks.route_terminal``).

A sweep exits 0 when every run finished (ok or diverged), 1 when a run failed or left an
unreadable results.json (``SweepFailed``, raised after the tally and the report are written),
and 128 + N when signal N stopped it (``interrupted_sweep`` tallies what finished). With
initlab.cli and initlab._hydra, the only modules that import Hydra; the rest of initlab runs
without it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from initlab._hydra import BASIC_LAUNCHER_LOGGER, is_basic_sweeper
from initlab.results import RESULTS_FILE, classify, count_results, format_counts

log = logging.getLogger(__name__)

TOP_ROWS = 5  # rows of summary.md's first table shown at the end of a sweep
_PLAN_VALUES = 6  # values of a swept key named in the plan line (then "+N more")
_ERROR_CHARS = 120  # of a failed job's error, in its line
# Loggers whose INFO lines a sweep's terminal does without: Hydra's basic launcher lists every
# job as it starts ("#3 : init=he ...", said once by the plan and the job lines); alembic, which
# Optuna's sweeper loads, lists its plugins ("setup plugin alembic.autogenerate.schemas").
_QUIET_LOGGERS = (BASIC_LAUNCHER_LOGGER, "alembic")


def duration(seconds: float) -> str:
    """'42s', '3m05s', '1h02m'."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def job_outcome(output_dir: str | Path | None) -> str:
    """What a finished job's results.json says, for its line: 'ok, test_acc 0.9420',
    'failed: <error>', 'unreadable: <why>', or 'no results.json'."""
    if output_dir is None:
        return "no results.json"
    path = Path(output_dir) / RESULTS_FILE
    if not os.path.lexists(path):  # a dangling symlink is there, and unreadable
        return "no results.json"
    status, record, why = classify(path)
    if record is None:
        return f"{status}: {str(why)[:_ERROR_CHARS]}"
    if status == "failed":
        error = " ".join(str(record.get("error") or "?").split())
        return f"failed: {error[:_ERROR_CHARS]}"
    test_acc = (record.get("final") or {}).get("test_acc")
    return f"{status}, test_acc {test_acc:.4f}" if test_acc is not None else status


class SweepProgress:
    """The terminal's view of one sweep, in the process that launched it: ``total`` jobs (None:
    unknown), the keys that vary between them (which name a job in its line), the clock."""

    def __init__(
        self,
        total: int | None = None,
        varying: Sequence[str] | None = None,
        given: Sequence[str] = (),
    ) -> None:
        self.total = total
        self.varying = set(varying) if varying is not None else None
        self.given = set(given)  # the command line's overrides: a job without ``varying`` is
        # named by the others (a search's sampled values)
        self.started = time.time()
        self.pid = os.getpid()
        self.finished = 0  # jobs ended so far
        self.ran = 0  # of which were run here (not skipped as already finished)

    def job_done(self, output_dir: str | Path | None, overrides: Sequence[str] = ()) -> str:
        """Print and return the line of a job that ended: 'job k/N done (status, test_acc),
        elapsed, ETA: its overrides'. A results.json older than the sweep means the job was
        skipped, finished before (the run says so in its train.log)."""
        self.finished += 1
        now = time.time()
        results = Path(output_dir) / RESULTS_FILE if output_dir is not None else None
        skipped = (
            results is not None and results.exists() and results.stat().st_mtime < self.started
        )
        self.ran += not skipped
        k = f"{self.finished}/{self.total}" if self.total else f"{self.finished}"
        what = "skipped, already finished" if skipped else "done"
        elapsed = now - self.started
        line = f"job {k} {what} ({job_outcome(output_dir)}), elapsed {duration(elapsed)}"
        left = self.total - self.finished if self.total else None
        if left and self.ran:
            line += f", ETA {duration(elapsed / self.ran * left)}"
        if self.varying is not None:
            named = [o for o in overrides if _key(o) in self.varying]
        else:
            named = [o for o in overrides if o not in self.given]
        if named:
            line += ": " + " ".join(named)
        print(line, file=sys.stdout, flush=True)
        return line

    def took(self) -> str:
        return duration(time.time() - self.started)


_sweep: SweepProgress | None = None  # the sweep this process launched (SweepSummary)


def _plan(config: DictConfig) -> tuple[int | None, dict[str, list[str]], str]:
    """The sweep's jobs as its sweeper will make them: how many, the values of each key that
    varies, and what kind ('jobs', or 'trials' of a search)."""
    sweeper = OmegaConf.select(config, "hydra.sweeper") or {}
    if not is_basic_sweeper(sweeper.get("_target_")):
        trials = sweeper.get("n_trials")
        return (int(trials) if trials else None), {}, "trials"
    from initlab.cli import sweep_jobs

    params = sweeper.get("params")
    params = OmegaConf.to_container(params, resolve=True) if params else None
    task = list(OmegaConf.select(config, "hydra.overrides.task") or [])
    jobs = sweep_jobs(task, True, params)
    values: dict[str, list[str]] = {}
    for job in jobs:
        for o in job:
            seen = values.setdefault(_key(o), [])
            value = o.split("=", 1)[1] if "=" in o else o
            if value not in seen:
                seen.append(value)
    return len(jobs), {k: v for k, v in values.items() if len(v) > 1}, "jobs"


def start_sweep(config: DictConfig) -> SweepProgress:
    """Begin this process's view of the sweep ``config`` runs: print its plan (one line), and
    leave out Hydra's own per-job listing."""
    global _sweep
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        total, axes, kind = _plan(config)
    except Exception:  # a sweep the plan cannot enumerate: it still runs, lines without N
        total, axes, kind = None, {}, "jobs"
    given = list(OmegaConf.select(config, "hydra.overrides.task") or [])
    _sweep = SweepProgress(total, list(axes) if kind == "jobs" and total else None, given)
    shown = "; ".join(
        f"{k}: {', '.join(v[:_PLAN_VALUES])}"
        + (f" (+{len(v) - _PLAN_VALUES} more)" if len(v) > _PLAN_VALUES else "")
        for k, v in axes.items()
    )
    count = f"{total} {kind}" if total else kind
    where = OmegaConf.select(config, "hydra.sweep.dir")
    print(f"sweep: {count}{f' ({shown})' if shown else ''} -> {where}", flush=True)
    return _sweep


def job_finished(
    output_dir: str | Path | None, overrides: Sequence[str], total: int | None = None
) -> str:
    """The line of a job that ended, for a launcher that sees its jobs end in other processes
    (``total``: the sweep's jobs, if no ``SweepSummary`` began the sweep's view)."""
    global _sweep
    if _sweep is None or _sweep.pid != os.getpid():
        _sweep = SweepProgress(total)
    return _sweep.job_done(output_dir, overrides)


def job_dir(ret: JobReturn) -> Path | None:
    """A finished job's output dir, from its JobReturn (None if Hydra never set it)."""
    value = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir") if ret.hydra_cfg else None
    return Path(value) if value else None


def top_rows(summary_md: str | Path, n: int = TOP_ROWS) -> list[str]:
    """The header and first ``n`` rows of summary.md's first table, columns aligned (the rows
    are sorted best first), and how many more there are."""
    table: list[list[str]] = []
    for line in Path(summary_md).read_text().splitlines():
        if line.startswith("|"):
            table.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif table:
            break
    if len(table) < 3:
        return []
    header, rows = table[0], table[2:]
    shown = [header, *rows[:n]]
    widths = [max(len(r[i]) if i < len(r) else 0 for r in shown) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in shown]
    if len(rows) > n:
        more = len(rows) - n
        lines.append(f"({more} more row{'s' if more > 1 else ''} in {Path(summary_md).name})")
    return lines


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
    broken report never fails the end of a sweep whose runs are all recorded. A report that
    cannot be written (a read-only sweep dir, a full disk) is one line, without a traceback."""
    try:
        from initlab.report import write_report

        return write_report(sweep_dir)
    except OSError as exc:
        log.error(
            "cannot write the report into %s: %s; the runs' results.json are intact: write it "
            "elsewhere with: python scripts/report.py %s --out <writable dir>",
            sweep_dir,
            exc.strerror or exc,
            sweep_dir,
        )
        return None
    except Exception:
        log.exception(
            "the report of %s failed (the runs' results.json are intact); retry with: "
            "python scripts/report.py %s",
            sweep_dir,
            sweep_dir,
        )
        return None


class SweepSummary(Callback):
    """A multirun on the terminal: its plan at the start; each job's own log kept to its
    warnings and errors (the rest in its train.log); with Hydra's basic launcher, one line per
    finished job. At the end: the report (summary.md, summary.csv, plots), one line with the
    tally and where the report, results and logs are, the total time and summary.md's top rows;
    then ``SweepFailed`` (exit status 1) if a run failed. A tally or a report that fails is
    logged, never raised."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        start_sweep(config)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        # in the job's process (this one, a launcher's worker, a SLURM job), logging configured
        if _sweep is not None and _sweep.pid == os.getpid():
            from initlab.lifecycle import Phase, sweep_guard

            guard = sweep_guard()
            if guard is not None:  # a signal between two jobs: the next one does not start
                guard.check(Phase.JOBS)
        if OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN:
            from initlab.callbacks import route_terminal

            route_terminal(sweep_job=True)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        # only where the sweep was launched: the jobs of Hydra's basic launcher (initlab's
        # launchers print their jobs' lines themselves, from the launching process)
        if _sweep is not None and _sweep.pid == os.getpid():
            _sweep.job_done(job_dir(job_return), job_return.overrides or ())

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        counts = _summarize(sweep_dir, "sweep finished")
        log.info("TensorBoard: tensorboard --logdir %s", sweep_dir)
        if counts is None or counts["failed"] or counts["unreadable"]:
            raise SweepFailed()


class SweepDashboard(Callback):
    """At the end of a multirun, TensorBoard's HPARAMS experiment of the sweep, from the runs'
    records, in the first run's dir (initlab.dashboard.write_experiment). While the sweep runs,
    TensorBoard builds the experiment from the runs' sessions. Never fails a sweep."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from initlab.dashboard import write_experiment
        from initlab.report import load_runs

        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        try:
            write_experiment(sweep_dir, load_runs(sweep_dir)[0])
        except Exception as exc:  # the runs are recorded: a dashboard must not fail the sweep
            log.warning("no HPARAMS experiment in %s: %s", sweep_dir, exc)


def _summarize(sweep_dir: Path, headline: str, level: int = logging.INFO) -> Counter | None:
    """Tally and report ``sweep_dir`` and log one line, then the time and summary.md's top rows
    (at ``level``: a stopped sweep warns, and so passes the terminal filter of the job it
    stopped in); the counts (None if the tally failed)."""
    try:
        counts: Counter | None = tally(sweep_dir)
        summary = format_counts(counts)
    except Exception:  # e.g. the sweep directory unreadable: the report may still be written
        log.exception("the tally of %s failed", sweep_dir)
        counts, summary = None, "tally failed (error above)"
    path = report(sweep_dir)
    log.log(
        level,
        "%s: %s. report: %s. Results: %s/*/results.json",
        headline,
        summary,
        path if path is not None else "failed (error above)",
        sweep_dir,
    )
    notes = []
    if _sweep is not None and _sweep.pid == os.getpid():
        notes.append(f"took {_sweep.took()}")
        if skipped := _sweep.finished - _sweep.ran:
            notes.append(f"{skipped} skipped as already finished (force=true runs them again)")
    rows: list[str] = []
    if path is not None:
        try:
            rows = top_rows(path)
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("could not read %s: %s", path, exc)
    if rows:
        notes.append(f"{path.name}'s top rows:\n" + "\n".join(rows))
    if notes:
        log.log(level, "; ".join(notes))
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
    _summarize(Path(sweep_dir).resolve(), f"sweep stopped by {signal_name}", logging.WARNING)
    log.warning("run the same command again to finish it: finished runs are skipped")
