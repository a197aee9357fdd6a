"""Shared by the launchers: CPU/GPU accounting, thread settings, and recording a lost job.

A *lost* job is one that produced no JobReturn: its worker process died (killed, segfault, out of
memory) or its SLURM job ended without a result (cancelled, killed, node failure, timed out too
often). It is recorded by the function that records a run that raised inside train.py
(``initlab.run.record_failure``): a results.json with status "failed", the error and
``recorded_by: launcher`` (unless the job already wrote a final one), and a COMPLETED JobReturn
whose value is None, so that the sweep goes on and ends with its tally. (A FAILED JobReturn would
make Hydra's sweeper raise after the batch, skipping the end-of-sweep callbacks: no tally, no
report.)
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def visible_gpus() -> list[str]:
    """The CUDA_VISIBLE_DEVICES ids of the GPUs this process sees ([] without CUDA).

    Asks torch for the count (this does not create a CUDA context in this process).
    """
    try:
        import torch

        count = torch.cuda.device_count()
    except Exception:
        return []
    if count <= 0:
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return [str(i) for i in range(count)]
    return [x.strip() for x in env.split(",") if x.strip()][:count]


@dataclass(frozen=True)
class Plan:
    """How a local sweep shares the machine."""

    n_jobs: int  # jobs at once (= worker processes)
    threads: int  # torch threads per job
    cores: int  # the cores shared
    devices: tuple[str | None, ...]  # per worker: its GPU id (CUDA_VISIBLE_DEVICES), None: CPU
    hide_gpus: bool  # CPU plan on a machine with GPUs: workers get CUDA_VISIBLE_DEVICES=""

    def describe(self) -> str:
        where = (
            "cpu"
            if not any(self.devices)
            else "GPU " + ", ".join(f"{d}" for d in self.devices) + " (one per worker)"
        )
        return (
            f"{self.n_jobs} job{'s' if self.n_jobs != 1 else ''} at once, "
            f"{self.threads} torch thread{'s' if self.threads != 1 else ''} each "
            f"({self.cores} core{'s' if self.cores != 1 else ''}), device {where}"
        )


def plan_resources(
    num_jobs: int,
    n_jobs: int | None = None,
    gpus: Sequence[Any] | None = None,
    cpus: int | None = None,
    threads_per_job: int | None = None,
) -> Plan:
    """Jobs at once, threads per job and each worker's GPU.

    With k GPUs: k jobs at once, one GPU each (worker i gets GPU i mod k). Without: one job per
    core. Threads per job: cores // jobs at once, so that jobs never oversubscribe the CPU.
    Never more workers than jobs (a single job gets all the cores).
    """
    cores = int(cpus) if cpus else available_cores()
    detected = visible_gpus()
    ids = detected if gpus is None else [str(g) for g in gpus]
    n = int(n_jobs) if n_jobs else (len(ids) if ids else cores)
    n = max(1, min(n, max(1, num_jobs)))
    threads = int(threads_per_job) if threads_per_job else max(1, cores // n)
    devices = tuple(ids[i % len(ids)] if ids else None for i in range(n))
    return Plan(
        n_jobs=n,
        threads=threads,
        cores=cores,
        devices=devices,
        hide_gpus=not ids and bool(detected),
    )


@contextmanager
def environ(**values: str | None):
    """Set (str) or unset (None) environment variables for the duration of the block."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def set_torch_threads(threads: int) -> int:
    """Set this process's torch (and OpenMP/MKL) threads; return torch's count afterwards."""
    for var in THREAD_VARS:
        os.environ[var] = str(threads)
    try:
        import torch
    except ImportError:
        return threads
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # allowed once, before any inter-op work
        torch.set_num_interop_threads(threads)
    return torch.get_num_threads()


def device_label() -> str:
    """'cpu', or the GPU this process sees: 'cuda:0 (GPU 3)' with CUDA_VISIBLE_DEVICES=3."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda:0 (GPU {visible})" if visible else "cuda"
    except ImportError:
        pass
    return f"cpu (GPU {visible} assigned, but CUDA is unavailable)" if visible else "cpu"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def sweep_config_for(
    hydra_context: HydraContext, config: DictConfig, overrides: Sequence[str], job_num: int
) -> DictConfig:
    """The composed config of one job of the sweep, as a launcher's worker builds it."""
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{job_num}"
        sweep_config.hydra.job.num = job_num
    return sweep_config


def job_output_dir(sweep_config: DictConfig) -> Path:
    """The job's output dir, as hydra.core.utils.run_job computes it."""
    out = Path(str(OmegaConf.select(sweep_config, "hydra.sweep.dir")))
    subdir = OmegaConf.select(sweep_config, "hydra.sweep.subdir")
    return (out / str(subdir) if subdir is not None else out).absolute()


def record_lost_job(
    hydra_context: HydraContext,
    config: DictConfig,
    overrides: Sequence[str],
    job_num: int,
    error: str,
) -> JobReturn:
    """Write the lost job's results.json as "failed" (if it has no final one) and return a
    COMPLETED JobReturn with value None (see the module docstring for why not FAILED)."""
    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)  # value None
    ret.task_name = str(OmegaConf.select(config, "hydra.job.name") or "")
    ret.working_dir = os.getcwd()
    saved = HydraConfig.instance().cfg
    try:
        sweep_config = sweep_config_for(hydra_context, config, overrides, job_num)
        HydraConfig.instance().set_config(sweep_config)  # resolves ${hydra:...} in the task config
        out = job_output_dir(sweep_config)
        with read_write(sweep_config.hydra.runtime), open_dict(sweep_config.hydra.runtime):
            sweep_config.hydra.runtime.output_dir = str(out)
        task_cfg = copy.deepcopy(sweep_config)
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]
        ret.cfg = task_cfg
        from initlab.results import RESULTS_FILE, classify
        from initlab.run import record_failure

        path = out / RESULTS_FILE
        status = classify(path)[0]
        if status in ("ok", "diverged", "failed"):
            log.error(
                "job #%d lost (%s); it had already written %s: %s", job_num, error, status, path
            )
            return ret
        record_failure(out, _plain(task_cfg), error, recorded_by="launcher")
        log.error("job #%d lost: %s; recorded as failed in %s", job_num, error, path)
    except Exception:
        log.exception("job #%d lost (%s), and its failure could not be recorded", job_num, error)
    finally:
        HydraConfig.instance().cfg = saved
    return ret


def _plain(task_cfg: DictConfig) -> Any:
    """The job's config as plain data (unresolved where an interpolation fails)."""
    try:
        return OmegaConf.to_container(task_cfg, resolve=True)
    except Exception:
        return OmegaConf.to_container(task_cfg, resolve=False)
