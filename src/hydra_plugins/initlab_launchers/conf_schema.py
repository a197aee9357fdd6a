"""initlab's config schema and resolvers, made known to Hydra wherever it composes a config.

Hydra imports every module below ``hydra_plugins`` when it starts (its plugin discovery), in the
training process, in launcher workers and in SLURM jobs alike, so registering here needs no call
from train.py, the scripts or the tests:

- ``initlab_train`` / ``initlab_propagate``: the dataclasses of :mod:`initlab.config` in Hydra's
  ConfigStore, the base of ``conf/train.yaml`` and ``conf/propagate.yaml`` (their defaults lists
  start with them), so that Hydra checks every value's type as it composes;
- ``${initlab_job_dir:...}``: :func:`initlab.paths.job_dirname`, which keeps a sweep's job
  directory name within the filesystem's 255 bytes (``hydra.sweep.subdir`` in
  ``conf/hydra/default.yaml``).
"""

# No `from __future__ import annotations`: Hydra's plugin scanner runs this module before it is
# in sys.modules (see config.py).
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from initlab.config import PropagateConf, TrainConf
from initlab.paths import dir_suffix, job_dirname

ConfigStore.instance().store(name="initlab_train", node=TrainConf, provider="initlab")
ConfigStore.instance().store(name="initlab_propagate", node=PropagateConf, provider="initlab")
OmegaConf.register_new_resolver("initlab_job_dir", job_dirname, replace=True)
OmegaConf.register_new_resolver("initlab_dir_suffix", dir_suffix, replace=True)
