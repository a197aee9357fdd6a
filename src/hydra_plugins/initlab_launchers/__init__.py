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
