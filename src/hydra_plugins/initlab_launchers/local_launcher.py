"""The ``local`` launcher: N jobs at once on this machine, sharing its cores or its GPUs.

    python train.py -m experiment=tutorial hydra/launcher=local

Why not hydra-joblib-launcher: joblib's loky workers are reused across jobs and cannot be told
which worker gets which job, so a GPU cannot be pinned per job (CUDA_VISIBLE_DEVICES must be set
before a process touches CUDA, and Lightning's ``devices: 1`` would otherwise take GPU 0 in every
job), threads are only a backend-wide setting, and a worker that dies breaks the whole pool.

Here each of the N worker processes is spawned (never forked: the parent has imported torch)
with its environment set before Python starts: OMP/MKL threads = cores // N, and on a machine
with k GPUs, worker i sees only GPU i mod k. Workers take jobs one at a time as they become free.
Each job's log (``train.log``) starts with a line such as
``local launcher: job 3 of 27, 2 jobs at once, 1 torch thread, device cpu, worker pid 123``.

Failure isolation: a job that raises inside train.py is recorded by train.py itself (status
"failed"); an exception that escapes the task comes back as Hydra's FAILED JobReturn, as with
Hydra's basic launcher; a worker that dies (killed, segfault, out of memory) is replaced, and its
job is recorded as failed by this process (see ``_common.record_lost_job``). No job can hang the
sweep because of another.
"""

# No `from __future__ import annotations`: Hydra's plugin scanner runs this module before it is
# in sys.modules, and dataclasses with string annotations then fail.
import contextlib
import logging
import multiprocessing as mp
import os
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import (
    JobReturn,
    JobStatus,
    configure_log,
    run_job,
    setup_globals,
)
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from initlab._hydra import job_value

log = logging.getLogger(__name__)
job_log = logging.getLogger("initlab.launcher")  # the header line in each job's log

STOP_TIMEOUT_S = 10.0
POLL_S = 0.5  # how often the launching process looks for a signal to the sweep while it waits


class InitlabLocalLauncher(Launcher):
    def __init__(
        self,
        n_jobs: int | None = None,
        gpus: Sequence[Any] | None = None,
        cpus: int | None = None,
        threads_per_job: int | None = None,
    ) -> None:
        self.n_jobs = n_jobs
        self.gpus = list(gpus) if gpus is not None else None
        self.cpus = cpus
        self.threads_per_job = threads_per_job
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import cloudpickle

        from ._common import plan_resources

        assert self.config is not None and self.hydra_context is not None
        assert self.task_function is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        # Resolving the sweep dir here also caches ${now:...}: every worker gets the same dir.
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        total = initial_job_idx + len(job_overrides)
        plan = plan_resources(
            len(job_overrides), self.n_jobs, self.gpus, self.cpus, self.threads_per_job
        )
        log.info("local launcher: %d jobs, %s", len(job_overrides), plan.describe())
        # cloudpickle: the task function lives in the script's __main__ (train.main).
        payload = cloudpickle.dumps(
            (self.hydra_context, self.config, self.task_function, Singleton.get_state())
        )
        pool = _Pool(plan, payload, total)
        jobs = [(initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)]
        returns: list[Any] = [None] * len(jobs)

        def finished(index: int, ret: JobReturn | None, lost: str | None) -> None:
            from initlab.hydra_callbacks import job_dir, job_finished

            if ret is None:  # its worker died: record it as failed, now
                from ._common import record_lost_job

                num, overrides = jobs[index]
                ret = record_lost_job(self.hydra_context, self.config, overrides, num, lost or "")
            returns[index] = ret
            job_finished(job_dir(ret), jobs[index][1], total)

        pool.run(jobs, finished)
        from initlab.lifecycle import Phase, sweep_guard

        if (guard := sweep_guard()) is not None:
            guard.check(Phase.JOBS)  # stopped by a signal: the jobs that ran are recorded
        assert all(isinstance(r, JobReturn) for r in returns)
        return returns


@dataclass
class _Worker:
    slot: int
    process: Any  # multiprocessing.Process (spawn context)
    conn: Connection
    job: int | None = None  # index into the job list while busy


class _Pool:
    """N spawned workers, one job each at a time; a worker that dies is replaced."""

    def __init__(self, plan: Any, payload: bytes, total: int) -> None:
        self.plan = plan
        self.payload = payload
        self.total = total
        self.ctx = mp.get_context("spawn")

    def _start(self, slot: int) -> _Worker:
        from ._common import THREAD_VARS, environ

        device = self.plan.devices[slot]
        env: dict[str, str | None] = {v: str(self.plan.threads) for v in THREAD_VARS}
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        elif self.plan.hide_gpus:
            env["CUDA_VISIBLE_DEVICES"] = ""
        parent, child = self.ctx.Pipe()
        info = (slot, self.plan.n_jobs, self.plan.threads, self.total, os.getpid())
        process = self.ctx.Process(
            target=_worker_main,
            args=(child, self.payload, info),
            name=f"initlab-local-{slot}",
        )
        with environ(**env):  # inherited by the spawned interpreter, before it imports torch
            process.start()
        child.close()
        return _Worker(slot, process, parent)

    def run(
        self,
        jobs: list[tuple[int, list[str]]],
        finished: Callable[[int, Any, str | None], None],
    ) -> None:
        """Run ``jobs``; as each ends, ``finished(index, its JobReturn, None)``, or
        ``finished(index, None, why)`` when its worker died with it."""
        import cloudpickle

        from initlab.lifecycle import sweep_guard

        pending = deque(range(len(jobs)))
        workers = [self._start(slot) for slot in range(self.plan.n_jobs)]
        guard = sweep_guard()
        stopping = False
        try:
            while pending or any(w.job is not None for w in workers):
                if guard is not None and guard.stopping and not stopping:
                    # a signal to the sweep: no new job; the running ones get SIGTERM, stop at
                    # their next boundary with their state saved, and report back
                    stopping = True
                    pending.clear()
                    for w in workers:
                        if w.job is not None and w.process.is_alive():
                            w.process.terminate()
                for i, w in enumerate(workers):
                    if w.job is not None or not pending:
                        continue
                    if not w.process.is_alive():  # died (with or between jobs): replace it
                        w.process.join()
                        w.conn.close()
                        workers[i] = w = self._start(w.slot)
                    w.job = pending.popleft()
                    # (if it died just now, its next check below records the job as lost)
                    with contextlib.suppress(OSError):
                        w.conn.send(jobs[w.job])
                busy = [w for w in workers if w.job is not None]
                if not busy:
                    break
                ready = wait(
                    [w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=POLL_S
                )
                for w in busy:
                    if w.conn not in ready and w.process.sentinel not in ready:
                        continue
                    dead = False
                    try:
                        while w.conn.poll():
                            msg = w.conn.recv()
                            if msg[0] == "done":
                                index, w.job = w.job, None
                                finished(index, cloudpickle.loads(msg[1]), None)
                            elif msg[0] == "init_error":
                                raise RuntimeError(
                                    f"local launcher: worker {w.slot} could not start:\n{msg[1]}"
                                )
                    except (EOFError, OSError):
                        dead = True
                    if w.job is None or not (dead or not w.process.is_alive()):
                        continue
                    # The worker died with a job: record it (it is replaced before its next job).
                    w.process.join(timeout=STOP_TIMEOUT_S)
                    if w.process.is_alive():  # its pipe broke, yet it lingers
                        w.process.kill()
                        w.process.join()
                    index, w.job = w.job, None
                    finished(index, None, _death(w.process.exitcode, w.process.pid))
        finally:
            _stop(workers)


def _death(exitcode: int | None, pid: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        import signal

        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"worker process {pid} was killed by {name} during the job"
    return f"worker process {pid} exited with status {exitcode} during the job"


def _stop(workers: list[_Worker]) -> None:
    """Ask idle workers to exit; terminate busy or stuck ones (e.g. on Ctrl-C)."""
    for w in workers:
        if w.job is None:
            with contextlib.suppress(OSError, ValueError):
                w.conn.send(None)
        elif w.process.is_alive():
            w.process.terminate()
    for w in workers:
        w.process.join(timeout=STOP_TIMEOUT_S)
        if w.process.is_alive():
            w.process.kill()
            w.process.join(timeout=STOP_TIMEOUT_S)
        with contextlib.suppress(OSError):
            w.conn.close()


# ---------------------------------------------------------------------------------------------
# In the worker process


def _worker_main(conn: Connection, payload: bytes, info: tuple[int, int, int, int, int]) -> None:
    """A spawned worker: unpack Hydra's state once, then run the jobs it is sent until None."""
    import cloudpickle

    from ._common import device_label, plural, set_torch_threads

    slot, n_at_once, threads, total, parent = info
    _die_with_parent(parent)
    try:
        hydra_context, config, task_function, singleton_state = cloudpickle.loads(payload)
        setup_globals()
        Singleton.set_state(singleton_state)
        threads = set_torch_threads(threads)
        device = device_label()
    except BaseException:
        conn.send(("init_error", traceback.format_exc()))
        return
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if job is None:
            return
        num, overrides = job
        header = (
            f"local launcher: job {num + 1} of {total}, {plural(n_at_once, 'job')} at once, "
            f"{plural(threads, 'torch thread')}, device {device}, worker pid {os.getpid()}"
        )
        ret = _run_one(hydra_context, config, task_function, num, overrides, header)
        try:
            data = cloudpickle.dumps(ret)
        except Exception as exc:  # an unpicklable return value or exception
            value = job_value(ret)  # the value, or a failed job's exception (not raised)
            ret.return_value = RuntimeError(f"{value!r} (unpicklable: {exc})")
            if ret.status == JobStatus.COMPLETED:
                ret.status = JobStatus.FAILED
            data = cloudpickle.dumps(ret)
        try:
            conn.send(("done", data))
        except OSError:  # the sweep's process is gone
            return


def _die_with_parent(parent: int) -> None:
    """SIGTERM this worker when the sweep's process dies (killed, or SIGTERM'ed, which skips its
    clean-up): the job then stops as on any SIGTERM (saving its checkpoint) instead of running
    on as an orphan. Linux only (prctl PR_SET_PDEATHSIG)."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def _run_one(
    hydra_context: HydraContext,
    config: DictConfig,
    task_function: TaskFunction,
    num: int,
    overrides: list[str],
    header: str,
) -> JobReturn:
    from ._common import sweep_config_for

    def task(cfg: DictConfig) -> Any:
        # Job logging (the job's train.log) is configured by run_job by now.
        job_log.info(header)
        return task_function(cfg)

    try:
        sweep_config = sweep_config_for(hydra_context, config, overrides, num)
        HydraConfig.instance().set_config(sweep_config)
        ret = run_job(
            hydra_context=hydra_context,
            task_function=task,
            config=sweep_config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        if ret.status == JobStatus.FAILED:
            log.error("job #%d raised", num, exc_info=job_value(ret))
        return ret
    except BaseException as exc:  # e.g. SystemExit(2) from a config error: Hydra's semantics
        log.error("job #%d ended with %r", num, exc)
        ret = JobReturn(overrides=overrides, status=JobStatus.FAILED)
        ret.return_value = exc
        return ret
