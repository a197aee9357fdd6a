"""Checking a command line before Hydra acts on it (used by train.py and scripts/*.py).

Hydra creates the run or sweep directory before the task function runs, and reports a bad
override with a multi-line message and exit status 1. ``preflight`` composes the config the
command line asks for (every value of every swept key, and the experiment's grid) and validates
it first: bad input gets one line naming the field, the value and what is allowed, exit status 2,
and nothing is written. This module imports Hydra; the rest of initlab does not need it.
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from initlab.config import ConfigError, validate
from initlab.data import MNIST_FILES, DataError, mnist_present, verify_mnist

# Flags after which Hydra does something other than run the task: leave those to Hydra.
_HYDRA_ONLY = {"-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "-i", "--info",
               "-sc", "--shell-completion", "-p", "--package", "-cp", "--config-path",
               "-cn", "--config-name", "-cd", "--config-dir", "--experimental-rerun"}  # fmt: skip
_MULTIRUN = {"-m", "--multirun"}


class BadInput(ValueError):
    """One line saying what in the command line is wrong and what is allowed."""


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    kept = []
    for ln in lines:
        if ln.startswith(("full_key", "object_type", "Set the environment", "Config search")):
            break
        kept.append(ln)
    return " ".join(kept) or str(text)


def _missing_option(exc: MissingConfigException) -> str:
    group, _, option = (exc.missing_cfg_file or "").rpartition("/")
    options = ", ".join(sorted(exc.options or []))
    if group and options:
        return f"{group}={option} is not an option of config group '{group}': one of {options}"
    return _one_line(str(exc))


def job_override_lists(
    overrides: Sequence[str], multirun: bool, sweeper_params: Mapping[str, Any] | None = None
) -> list[list[str]]:
    """The override lists to check: every value of every swept key at least once.

    Not the whole grid (that can be hundreds of jobs): all keys at their first value, then each
    other value of each swept key on its own. Fields are validated one by one, so this finds any
    bad value. ``sweeper_params`` (an experiment's grid) count as sweeps unless the command line
    sets the same key.
    """
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(list(overrides))
    axes: list[list[str]] = []
    for o in parsed:
        if o.is_sweep_override():
            if not multirun:
                raise BadInput(f"{o.input_line} is a sweep: add -m (--multirun) to run each value")
            axes.append([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()])
        else:
            axes.append([o.input_line])
    if multirun and sweeper_params:
        given = {o.key_or_group for o in parsed}
        for key, values in sweeper_params.items():
            if key not in given:
                swept = parser.parse_override(f"{key}={values}")
                if swept.is_sweep_override():
                    axes.append([f"{key}={v}" for v in swept.sweep_string_iterator()])
                else:
                    axes.append([f"{key}={values}"])
    first = [axis[0] for axis in axes]
    jobs = [first]
    for i, axis in enumerate(axes):
        for value in axis[1:]:
            jobs.append([*first[:i], value, *first[i + 1 :]])
    return jobs


def _unknown_key(message: str, config_dir: str | Path, config_name: str) -> str | None:
    """'model.dept=3': say that the key does not exist and which keys its parent has."""
    found = re.search(r"Could not override '([^']+)'", message)
    if not found or "To append to your config" not in message:
        return None
    key = found.group(1)
    parent, _, leaf = key.rpartition(".")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
        defaults = compose(config_name)
    node = OmegaConf.select(defaults, parent) if parent else defaults
    keys = ", ".join(str(k) for k in node) if OmegaConf.is_dict(node) else ""
    where = f"'{parent}'" if parent else "the config"
    return f"{key} is not a key of {where} (it has: {keys}); to add a new key use +{key}=..."


def _check_mnist_root(data: Any) -> None:
    """The MNIST files that are there are intact; if they are missing, they can be fetched."""
    verify_mnist(data.root)
    if mnist_present(data.root) or data.fallback:
        return
    raw = Path(str(data.root)) / "MNIST" / "raw"
    if not data.download:
        raise BadInput(
            f"MNIST is not in {raw} and data.download=false: put the four files "
            f"{', '.join(MNIST_FILES)} (or their .gz) there, or set data.root to the folder "
            "that holds MNIST/raw"
        )
    if not _can_create(Path(str(data.root))):
        raise BadInput(
            f"MNIST is not in {raw} and data.root={data.root} cannot be written to download it: "
            "choose a writable data.root, or one that holds MNIST/raw"
        )


def _can_create(path: Path) -> bool:
    probe = path.resolve()
    while not probe.exists():
        probe = probe.parent
    try:
        with tempfile.TemporaryFile(dir=probe):
            return True
    except OSError:
        return False


def _writable_ancestor(path: Path) -> None:
    """Raise BadInput unless ``path`` exists or could be created (and written to)."""
    if not _can_create(path):
        raise BadInput(f"output directory {path} cannot be created or written")


def check(
    argv: Sequence[str],
    config_dir: str | Path,
    config_name: str,
    validate_fn: Callable[[Any], None] = validate,
) -> None:
    """Compose and validate what ``argv`` asks for; raise BadInput with one line if it is bad."""
    if any(a.split("=")[0] in _HYDRA_ONLY for a in argv):
        return
    multirun = any(a in _MULTIRUN for a in argv)
    overrides = [a for a in argv if not a.startswith("-")]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
            jobs = job_override_lists(overrides, multirun)  # the command line's own values
            first = compose(config_name, overrides=jobs[0], return_hydra_config=True)
            params = OmegaConf.select(first, "hydra.sweeper.params") if multirun else None
            jobs = job_override_lists(overrides, multirun, params)  # and the experiment's grid
            for job in jobs:
                cfg = compose(config_name, overrides=job, return_hydra_config=True)
                out = OmegaConf.select(cfg, "hydra.sweep.dir" if multirun else "hydra.run.dir")
                validate_fn(cfg)
                data = cfg.get("data")
                if data is not None and data.get("name") == "mnist":
                    _check_mnist_root(data)
            _writable_ancestor(Path(str(out)))
    except MissingConfigException as exc:
        raise BadInput(_missing_option(exc)) from None
    except (HydraException, OmegaConfBaseException) as exc:
        message = _unknown_key(str(exc), config_dir, config_name) or _one_line(str(exc))
        raise BadInput(message) from None
    except (ConfigError, DataError) as exc:
        raise BadInput(str(exc)) from None
    finally:
        GlobalHydra.instance().clear()


def preflight(
    argv: Sequence[str],
    config_dir: str | Path,
    config_name: str,
    validate_fn: Callable[[Any], None] = validate,
) -> None:
    """``check``, then on bad input: the one line on stderr and exit status 2."""
    try:
        check(argv, config_dir, config_name, validate_fn)
    except BadInput as exc:
        print(f"initlab: error: {exc}", file=sys.stderr)
        sys.exit(2)
