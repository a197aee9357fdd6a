"""Every use initlab makes of Hydra beyond its documented API, in one place.

initlab checks a command line before Hydra acts on it (``initlab.cli.preflight``), which means
knowing, before Hydra runs, what Hydra will do with it: the jobs its basic sweeper will make of a
grid, and in which order; the directory name (``hydra.job.override_dirname``) each job gets; and
what Hydra's errors say, to turn them into one line. Hydra has no public API for these, so this
module uses Hydra's own code where it can (the basic sweeper's ``split_arguments`` and
``_parse_config``, the config loader's ``get_overrides_dirname``), and otherwise names the
text or the behaviour initlab relies on. Besides: the name of the basic launcher's logger (a
sweep's terminal quiets it), and the exception of a failed ``JobReturn`` (its
``_return_value``: the public ``return_value`` raises it). Each is a small function or constant
here; the rest of initlab never imports ``hydra._internal`` nor reads ``_return_value`` itself (a
test checks the source). ``INTERNALS`` lists the internal names and ``check_internals()`` names
the one a new Hydra moved; tests/test_hydra_internals.py checks each text and behaviour against
what Hydra itself does.

Checked on hydra-core 1.3.8 (pyproject.toml pins hydra-core>=1.3.2,<1.4). Before widening that
pin, run tests/test_hydra_internals.py, tests/test_bad_input.py and tests/test_launchers.py on the
new version, and update this module where Hydra changed.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import hydra
from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException, MissingConfigException

CHECKED_ON = "1.3.8"  # the hydra-core version these internals were checked on
PIN = "hydra-core>=1.3.2,<1.4"

# Hydra's basic sweeper (the default hydra/sweeper), as its config's _target_ names it.
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
# The logger on which Hydra's basic launcher lists every job as it starts ("#3 : init=he ...").
BASIC_LAUNCHER_LOGGER = "hydra._internal.core_plugins.basic_launcher"

# Every internal name initlab uses: a module, then attributes.
INTERNALS: tuple[str, ...] = (
    f"{BASIC_SWEEPER}.split_arguments",
    f"{BASIC_SWEEPER}._parse_config",
    "hydra._internal.config_loader_impl.get_overrides_dirname",
    f"{BASIC_LAUNCHER_LOGGER}.log",
    "hydra.core.utils.JobReturn._return_value",
)

# The texts of Hydra's errors that initlab reads (tests check that Hydra still prints them):
# a key that is not in the config, and a value the schema refuses.
COULD_NOT_OVERRIDE = re.compile(r"Could not override '([^']+)'")
ERROR_MERGING = re.compile(r"Error merging override (\S+?)=(.*)$")


class HydraInternalsError(RuntimeError):
    """This Hydra lacks an internal initlab relies on."""


def _missing_message(name: str, where: str) -> str:
    return (
        f"hydra-core {hydra.__version__} moved or removed {where} ({name}), which initlab relies"
        f" on (checked on hydra-core {CHECKED_ON}): update src/initlab/_hydra.py, or install"
        f" {PIN}"
    )


def _resolve(name: str) -> Any:
    """The object ``name`` names (the longest importable module, then attributes); raise
    HydraInternalsError naming the part that is missing."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        module_name = ".".join(parts[:i])
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                where = f"{getattr(obj, '__name__', type(obj).__name__)}.{attr}"
                raise HydraInternalsError(_missing_message(name, where))
            obj = getattr(obj, attr)
        return obj
    raise HydraInternalsError(_missing_message(name, parts[0]))  # pragma: no cover


def check_internals(names: Iterable[str] = INTERNALS) -> None:
    """Raise HydraInternalsError naming the first of ``names`` (default: all INTERNALS) this
    Hydra lacks, with its version, so that a Hydra upgrade fails before a command line is
    checked, not in the middle of a sweep."""
    for name in names:
        _resolve(name)


# -- the basic sweeper's jobs ---------------------------------------------------------------------
def is_basic_sweeper(target: Any) -> bool:
    """Whether ``hydra.sweeper._target_`` is Hydra's basic sweeper (None: the default, which is)."""
    return target is None or str(target).rsplit(".", 1)[-1] == BASIC_SWEEPER.rsplit(".", 1)[-1]


def basic_sweeper_jobs(
    params: Mapping[str, Any] | None, overrides: Sequence[str], parse: Any
) -> list[list[str]]:
    """The override list of every job Hydra's basic sweeper makes of ``hydra.sweeper.params``
    and the command line's ``overrides``, in the order it runs them, by the sweeper's own code:
    ``BasicSweeper._parse_config`` (the params first, as ``key=value``), then
    ``BasicSweeper.split_arguments`` (a key given again replaces its values, keeping its place;
    the product of every key's values). ``parse``: an ``OverridesParser.parse_overrides``.

    Touches ``hydra._internal.core_plugins.basic_sweeper.BasicSweeper``: Hydra makes the jobs
    inside ``sweep()``, which launches them; it has no public function that only lists them.
    Raises HydraException for a sweep the basic sweeper cannot run (an interval)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    lines = BasicSweeper(max_batch_size=None, params=dict(params or {}))._parse_config()
    batches = BasicSweeper.split_arguments(parse([*lines, *overrides]), None)
    return [list(job) for batch in batches for job in batch]


def override_dirname(
    overrides: Sequence[Override], kv_sep: str, item_sep: str, exclude_keys: Sequence[str]
) -> str:
    """``hydra.job.override_dirname`` of a job with these overrides, as Hydra's config loader
    computes it: the job's own overrides (not Hydra's: ``hydra.*``, ``hydra/*``) whose key is not
    excluded, sorted, joined by ``item_sep``, each ``=`` replaced by ``kv_sep``.

    Touches ``hydra._internal.config_loader_impl.get_overrides_dirname``: Hydra computes it while
    it loads a job's config; initlab needs it for jobs it has not composed one by one."""
    from hydra._internal.config_loader_impl import get_overrides_dirname

    app = [o for o in overrides if not o.is_hydra_override()]
    return get_overrides_dirname(
        overrides=app, exclude_keys=list(exclude_keys), item_sep=item_sep, kv_sep=kv_sep
    )


def sweeps_hydra_setting(o: Override) -> bool:
    """Whether Hydra refuses ``o`` as a sweep over one of its own settings (``hydra.x=a,b``,
    ``hydra.sweeper.params.seed=0,1`` unquoted): in a multirun its config loader raises
    "Sweeping over Hydra's configuration is not supported"; in a single run, it reads the
    list as ambiguous. The rule of ``ConfigLoaderImpl.validate_sweep_overrides_legal``, which is
    internal; a test compares the two."""
    return o.is_sweep_override() and o.is_hydra_override()


# -- Hydra's errors -------------------------------------------------------------------------------
def composition_cause(exc: BaseException) -> BaseException:
    """The OmegaConf error behind a ConfigCompositionException (Hydra raises it ``from`` the
    error of the override it applied), or ``exc`` itself."""
    if isinstance(exc, ConfigCompositionException) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def overridden_key(exc: BaseException) -> str | None:
    """The key of "Could not override 'model.dept'." (a key the config does not have)."""
    found = COULD_NOT_OVERRIDE.search(str(exc))
    return found.group(1) if found else None


def merged_override(exc: BaseException) -> tuple[str, str] | None:
    """The key and value of "Error merging override model.depth=two" (a value the schema
    refused)."""
    found = ERROR_MERGING.search(str(exc))
    return (found.group(1), found.group(2)) if found else None


def missing_option(exc: MissingConfigException) -> tuple[str, str, list[str]]:
    """The group, the option and the group's options of a config that was not found:
    ``missing_cfg_file`` is "group/option" ("init/hee", "hydra/sweeper/optuna")."""
    group, _, option = (exc.missing_cfg_file or "").rpartition("/")
    return group, option, sorted(exc.options or [])


# -- a job's return -------------------------------------------------------------------------------
def job_value(ret: Any) -> Any:
    """What a JobReturn holds: the task's return value, or the exception of a failed job.

    Touches ``JobReturn._return_value``: the public ``return_value`` raises a failed job's
    exception (and writes to stderr), and a launcher must log it or wrap it, not raise it. (It
    is set through the public setter, ``ret.return_value = ...``.)"""
    return ret._return_value
