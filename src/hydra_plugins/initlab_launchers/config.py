"""Structured config of the ``local`` launcher, registered as ``initlab_local_launcher``.

``conf/hydra/launcher/local.yaml`` extends it (``- /initlab_local_launcher@_here_``). It is stored
outside the ``hydra/launcher`` group, so that ``--hydra-help`` lists the launcher once, as
``local``, not its schema beside it. (The ``slurm`` configs extend hydra-submitit-launcher's
``submitit_slurm`` / ``submitit_local``: new ``_target_``, defaults.)
"""

# No `from __future__ import annotations`: Hydra's plugin scanner runs this module before it is
# in sys.modules, and dataclasses with string annotations then fail.
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class LocalLauncherConf:
    _target_: str = "hydra_plugins.initlab_launchers.local_launcher.InitlabLocalLauncher"
    # Jobs at once. null: one per GPU (gpus), or one per core (cpus) without GPUs.
    n_jobs: int | None = None
    # GPU ids given to jobs, round-robin by worker (each sees only its GPU: CUDA_VISIBLE_DEVICES).
    # null: every visible GPU; []: none, jobs run on the CPU (GPUs hidden). A repeated id
    # ([0, 0, 1, 1]) runs two jobs per GPU.
    gpus: list[str] | None = None
    # Cores shared between the jobs. null: the cores this process may use (affinity, cgroup quota).
    cpus: int | None = None
    # Torch threads per job. null: cpus // jobs at once (at least 1), so jobs never oversubscribe.
    threads_per_job: int | None = None


ConfigStore.instance().store(
    name="initlab_local_launcher", node=LocalLauncherConf, provider="initlab"
)
