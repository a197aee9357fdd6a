"""hydra-submitit-launcher's SLURM and local launchers, with failure isolation and a job header.

``conf/hydra/launcher/slurm.yaml`` (and ``slurm_local.yaml``) extend ``submitit_slurm``
(``submitit_local``) and point ``_target_`` here. Compared with the stock launchers:

- A job that ends without a result (scancel'ed, killed, node failure, out of memory, timed out
  more than ``max_num_timeout`` times) no longer makes the sweep raise and lose every other
  result: it is recorded as failed in its results.json (``_common.record_lost_job``), the other
  results are collected, and the sweep ends with its tally.
- The job sets its torch threads to the CPUs it asked for (``cpus_per_task``; 1 if unset) and
  its log (``train.log``) starts with ``slurm launcher: job 2 of 3, SLURM job 41_1 on node1,
  restart 0, 1 torch thread, device cpu``.

Requeueing is submitit's: on a timeout or preemption signal (USR2, ``signal_delay_s`` before the
time limit) submitit checkpoints this launcher's call (``checkpoint``: the same arguments) and
requeues the job, at most ``max_num_timeout`` times for timeouts. The requeued job has the same
SLURM id, the same overrides and therefore the same output dir (the sweep dir's ``${now:...}`` is
resolved once, on the submitting side), where the run can resume from ``checkpoints/last.ckpt``.
Lightning's own SLURM auto-requeue is off (initlab.run), so the two never both requeue.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, run_job, setup_globals
from hydra_plugins.hydra_submitit_launcher import submitit_launcher as _submitit
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)
job_log = logging.getLogger("initlab.launcher")  # the header line in each job's log
POLL_S = {"slurm": 5.0, "local": 0.5}  # how often the launching process asks if a job ended


class _Isolated:
    """Mixin over hydra_submitit_launcher's BaseSubmititLauncher (same parameters)."""

    _EXECUTOR: str
    params: dict[str, Any]
    config: DictConfig | None
    hydra_context: Any
    task_function: Any
    _total: int = 0

    def __call__(
        self,
        sweep_overrides: list[str],
        job_dir_key: str,
        job_num: int,
        job_id: str,
        singleton_state: dict[Any, Any],
    ) -> JobReturn:
        """Runs in the SLURM job (again after a requeue: same arguments)."""
        import submitit

        from ._common import device_label, plural, set_torch_threads, sweep_config_for

        assert self.hydra_context is not None and self.config is not None
        Singleton.set_state(singleton_state)
        setup_globals()
        env = submitit.JobEnvironment()
        sweep_config = sweep_config_for(self.hydra_context, self.config, sweep_overrides, job_num)
        with open_dict(sweep_config.hydra.job):
            sweep_config.hydra.job.id = env.job_id  # as the stock launcher: the scheduler's id
        threads = set_torch_threads(int(self.params.get("cpus_per_task") or 1))
        header = (
            f"{'slurm' if self._EXECUTOR == 'slurm' else 'submitit ' + self._EXECUTOR} launcher: "
            f"job {job_num + 1} of {self._total or '?'}, "
            f"{'SLURM job' if self._EXECUTOR == 'slurm' else 'job'} {env.job_id} "
            f"on {env.hostname}, restart {os.environ.get('SLURM_RESTART_COUNT', '0')}, "
            f"{plural(threads, 'torch thread')}, device {device_label()}"
        )
        task_function = self.task_function

        def task(cfg: DictConfig) -> Any:
            job_log.info(header)
            return task_function(cfg)

        return run_job(
            hydra_context=self.hydra_context,
            task_function=task,
            config=sweep_config,
            job_dir_key=job_dir_key,
            job_subdir_key="hydra.sweep.subdir",
        )

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        """The stock launch, except that a job without a result does not end the sweep."""
        import submitit

        from initlab.hydra_callbacks import job_dir, job_finished

        from ._common import record_lost_job

        assert self.config is not None and self.hydra_context is not None
        num_jobs = len(job_overrides)
        assert num_jobs > 0
        self._total = initial_job_idx + num_jobs
        params = self.params
        init_params = {"folder": params["submitit_folder"]}
        specific_init_keys = {"max_num_timeout"}
        init_params.update(
            {f"{self._EXECUTOR}_{k}": v for k, v in params.items() if k in specific_init_keys}
        )
        init_keys = specific_init_keys | {"submitit_folder"}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init_params)
        baseparams = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{
                k if k in baseparams else f"{self._EXECUTOR}_{k}": v
                for k, v in params.items()
                if k not in init_keys
            }
        )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))  # resolves and caches ${now:...}
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))

        job_params: list[Any] = []
        for idx, overrides in enumerate(job_overrides):
            num = initial_job_idx + idx
            job_params.append(
                (
                    list(overrides),
                    "hydra.sweep.dir",
                    num,
                    f"job_id_for_{num}",
                    Singleton.get_state(),
                )
            )
        try:
            jobs = executor.map_array(self, *zip(*job_params, strict=True))
        except submitit.core.utils.FailedJobError as exc:  # sbatch refused the array
            hint = ""
            if "gres" in str(exc) and params.get("gpus_per_node"):
                hint = " (a cluster without GPUs: hydra.launcher.gpus_per_node=null)"
            raise RuntimeError(f"submitting the sweep failed: {str(exc).strip()}{hint}") from None
        log.info(
            "submitted %d jobs (%s): %s",
            len(jobs),
            self._EXECUTOR,
            " ".join(str(j.job_id) for j in jobs),
        )
        returns: list[JobReturn | None] = [None] * len(jobs)
        for idx, job in _as_completed(jobs, POLL_S[self._EXECUTOR]):
            num = initial_job_idx + idx
            try:
                ret = job.results()[0]
            except Exception as exc:  # submitit's UncompletedJobError / FailedJobError
                ret = record_lost_job(
                    self.hydra_context,
                    self.config,
                    job_overrides[idx],
                    num,
                    _lost_reason(job, exc),
                )
            returns[idx] = ret
            job_finished(job_dir(ret), list(job_overrides[idx]), self._total)
        done = [r for r in returns if r is not None]
        assert len(done) == len(returns)
        return done


def _as_completed(jobs: Sequence[Any], poll_s: float) -> Iterator[tuple[int, Any]]:
    """(index, job) for each submitit job as it ends, polling every ``poll_s`` seconds (submitit
    caches the scheduler's state between its own polls of sacct). A signal to the sweep's
    process stops the wait (``RunInterrupted``): its jobs are the scheduler's, and go on."""
    from initlab.lifecycle import Phase, sweep_guard

    pending = dict(enumerate(jobs))
    guard = sweep_guard()
    while pending:
        if guard is not None:  # a signal to the sweep: stop waiting (the jobs go on)
            guard.check(Phase.JOBS)
        ended = [i for i, job in pending.items() if job.done()]
        for i in ended:
            yield i, pending.pop(i)
        if pending and not ended:
            time.sleep(poll_s)


def _lost_reason(job: Any, exc: Exception) -> str:
    """One line: which job, its final state, and the first line of submitit's error."""
    try:
        state = job.state
    except Exception:
        state = "UNKNOWN"
    head = []  # submitit's message up to the job's own stderr, which is in its log
    for line in str(exc).splitlines():
        if line.startswith(("Error stream produced", "-----", "Traceback")):
            break
        head.append(line.strip())
    first = " ".join(x for x in head if x)[:300]
    kind = "SLURM job" if type(job).__name__.startswith("Slurm") else "job"
    return f"{kind} {job.job_id} ended {state} without a result ({type(exc).__name__}: {first})"


class InitlabSlurmLauncher(_Isolated, _submitit.SlurmLauncher):
    _EXECUTOR = "slurm"


class InitlabSubmititLocalLauncher(_Isolated, _submitit.LocalLauncher):
    _EXECUTOR = "local"
