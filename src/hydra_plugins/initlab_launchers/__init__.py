"""initlab's Hydra plugins (found by Hydra's plugin discovery through the ``hydra_plugins``
namespace package): its launchers, its config schema and its resolvers.

- ``local`` (:mod:`.local_launcher`): N jobs at once on this machine, each in its own spawned
  worker process with its share of the CPU threads, or its own GPU.
- ``slurm`` / ``slurm_local`` (:mod:`.submitit_launchers`): hydra-submitit-launcher's SLURM and
  local executors, with failure isolation (a killed job is recorded as failed, the sweep goes on).

- :mod:`.conf_schema`: initlab's config schema in Hydra's ConfigStore, and the resolver that keeps
  job directory names short enough for any filesystem.

The launchers' configs are ``conf/hydra/launcher/*.yaml``; their dataclass defaults live in
:mod:`.config`.
"""

# Importing the package registers the schema and resolvers in this process: a launcher's worker
# or a SLURM job imports it (to run its jobs) before it resolves a job's output dir.
from . import conf_schema  # noqa: F401

# What `--hydra-help` lists under hydra/launcher, one line each (train.py prints it after Hydra's
# text, which no app config can change: Hydra composes it without one).
LAUNCHERS_HELP = """\
== Launchers (hydra/launcher=NAME, with -m) ==
  basic           Hydra's: one job after the other, in this process (the default)
  local           initlab's: N jobs at once on this machine, each in its own process, with its
                  share of the cores or a GPU of its own (hydra.launcher.n_jobs, gpus, cpus)
  slurm           initlab's: each job a task of a SLURM job array; a job that ends without a
                  result is recorded as failed and the sweep goes on
  slurm_local     initlab's slurm launcher on submitit's local executor (no scheduler)
  submitit_slurm, submitit_local
                  hydra-submitit-launcher's own, which slurm and slurm_local extend: use those
A launcher's settings: python train.py hydra/launcher=local --cfg hydra -p hydra.launcher"""
