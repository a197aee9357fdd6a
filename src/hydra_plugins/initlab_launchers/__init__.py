"""initlab's Hydra launchers (found by Hydra's plugin discovery through the ``hydra_plugins``
namespace package).

- ``local`` (:mod:`.local_launcher`): N jobs at once on this machine, each in its own spawned
  worker process with its share of the CPU threads, or its own GPU.
- ``slurm`` / ``slurm_local`` (:mod:`.submitit_launchers`): hydra-submitit-launcher's SLURM and
  local executors, with failure isolation (a killed job is recorded as failed, the sweep goes on).

Their configs are ``conf/hydra/launcher/*.yaml``; the dataclass defaults live in :mod:`.config`.
"""
