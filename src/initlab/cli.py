"""Checking a command line before Hydra acts on it (used by train.py and scripts/*.py).

Hydra creates the run or sweep directory before the task function runs, and reports a bad
override with a multi-line message and exit status 1. ``preflight`` first builds every job the
command line asks for (the whole grid of a sweep, the experiment's included, in the order Hydra's
basic sweeper runs them) and checks each before anything is written. A search (Optuna's sweeper,
``hparams_search=...``) is checked without running Optuna: its choices are enumerated, and each
interval or range by a job at each of its ends (``search_ends``), since a trial may sample
anything between them:

- Hydra's own settings first: a list given to one (Hydra sweeps none), the keys of
  ``hydra.sweeper.params`` given on the command line (the config's, addressable there, in the
  grid), the sweeper's settings (``initlab.config.validate_sweeper``: Optuna's n_trials, n_jobs,
  direction, sampler, storage, ...), and an experiment's grid without -m (Hydra would run one
  job and drop the grid);
- its config (``initlab.config.validate``: types, ranges, unknown keys, values that clash);
- its output dir: creatable, no path component over 255 bytes, and, when it already holds a run,
  that run's fingerprint (``initlab.run.previous_run``: a different configuration is refused);
  with directories named after the moment (``${now:...}``), the newest unfinished run or sweep
  of the same command (``initlab.rerun``), where it then continues;
- the machine: the MNIST files, the Trainer and optimizer as Lightning and torch build them, and
  whether the model fits in the device's memory.

Bad input gets one line naming the field, the value and what is allowed, exit status 2, and
nothing is written. This module imports Hydra; the rest of initlab does not need it. What it
relies on in Hydra beyond its documented API (the basic sweeper's jobs, a job's directory name,
the texts of Hydra's errors) is in ``initlab._hydra``.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import glob
import itertools
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from initlab import _hydra, rerun
from initlab.checks import (
    check_data,
    check_machine,
    check_output_dir,
    check_previous_run,
    check_space,
    once,
    one_line,
)
from initlab.config import FREE_FORM, allowed, sweeper_allowed, validate, validate_sweeper
from initlab.errors import BadInput, bad_input_errors
from initlab.paths import job_dirname

# Flags after which Hydra does something other than run the task: leave those to Hydra.
_HYDRA_ONLY = {"-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "-i", "--info",
               "-sc", "--shell-completion", "-p", "--package", "-cp", "--config-path",
               "-cn", "--config-name", "-cd", "--config-dir", "--experimental-rerun"}  # fmt: skip
_MULTIRUN = {"-m", "--multirun"}


def _missing_option(exc: MissingConfigException) -> str:
    group, option, choices = _hydra.missing_option(exc)
    if (group, option) == ("hydra/sweeper", "optuna"):  # hparams_search's sweeper
        return (
            "hydra/sweeper=optuna needs the Optuna sweeper plugin, which is not installed: "
            "pip install -e '.[optuna]' (hydra-optuna-sweeper)"
        )
    options = ", ".join(choices)
    if group and options:
        return f"{group}={option} is not an option of config group '{group}': one of {options}"
    return one_line(str(exc))


def _type_error(exc: BaseException) -> str | None:
    """'model.depth=two': Hydra refused the value for the schema's type; say what is allowed."""
    cause = _hydra.composition_cause(exc)
    key = getattr(cause, "full_key", None)
    if type(cause).__name__ != "ValidationError" or not key:
        return None
    what = sweeper_allowed(str(key)) if str(key).startswith("hydra.") else allowed(str(key))
    found = _hydra.merged_override(exc)
    if found:
        value: Any = found[1]
        with contextlib.suppress(Exception):
            value = OverridesParser.create().parse_override(f"x={value}").value()
        return f"{key}={value!r} must be {what or 'of the declared type'}"
    return f"{key}: {one_line(str(cause))}" + (f" (allowed: {what})" if what else "")


def sweep_jobs(
    overrides: Sequence[str],
    multirun: bool,
    sweeper_params: Mapping[str, Any] | None = None,
    search: bool = False,
) -> list[list[str]]:
    """The override list of every job, as Hydra's basic sweeper makes them (by its own code,
    ``initlab._hydra.basic_sweeper_jobs``): the experiment's ``sweeper_params`` first, a key on
    the command line replacing the same key's grid, then the product of every key's values in
    that order.

    ``search``: the sweeper samples a search space (Optuna) instead: its choices are enumerated
    as lists are, and an interval, or a range, is represented by its two ends (``search_ends``),
    so the jobs are the corners of the space, not the trials the sweeper will run."""
    return [[_line(v) for v in job] for job in _jobs(overrides, multirun, sweeper_params, search)]


@dataclass(frozen=True)
class End:
    """One end of a searched interval or range, as the job that checks it sets it.

    ``inside``: for an interval whose upper end is excluded (Optuna 2 samples [low, high)), the
    value just below it, checked when the end itself is refused (``optimizer.momentum`` in
    ``interval(0.5, 1)`` never takes 1)."""

    line: str  # the override that sets the end: "init.gain=0.25"
    sweep: str  # the override that asked for the search: "init.gain=interval(0.25, 4.0)"
    end: str  # "lower" or "upper"
    inside: str | None = None
    floats: bool = False  # an interval of floats between whole numbers: int(...) was meant?

    def where(self, message: str) -> str:
        """Which end the message is about; with the hint that int(interval(...)) samples
        integers when the value refused had to be one."""
        hint = ""
        if self.floats and "integer" in message:
            hint = f" (it samples floats; int({self.sweep.split('=', 1)[1]}) samples integers)"
        return f"{self.sweep}{hint} at its {self.end} bound"


def _line(value: str | End) -> str:
    return value.line if isinstance(value, End) else value


def _choices(job: Sequence[str | End]) -> list[str]:
    """A job of a search without its ends: the config's values where it searches."""
    return [v for v in job if not isinstance(v, End)]


def _jobs(
    overrides: Sequence[str],
    multirun: bool,
    sweeper_params: Mapping[str, Any] | None,
    search: bool,
) -> list[tuple[str | End, ...]]:
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(list(overrides))
    if not multirun:
        for o in parsed:
            if o.is_sweep_override():
                raise BadInput(f"{o.input_line} is a sweep: add -m (--multirun) to run each value")
        return [tuple(overrides)]
    params = [f"{k}={v}" for k, v in (sweeper_params or {}).items()]
    axes: dict[str, list[str | End]] = {}
    for o in parser.parse_overrides(params + list(overrides)):
        key = o.get_key_element()
        value = o.value()
        if not o.is_sweep_override():
            axes[key] = [f"{key}={o.get_value_element_as_str()}"]
        elif search and isinstance(value, (IntervalSweep, RangeSweep)) and not _shuffled(value):
            axes[key] = list(search_ends(o))
        elif o.is_discrete_sweep():
            axes[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
            if not axes[key]:
                raise BadInput(f"{o.input_line} has no values: no job would run")
        else:
            raise BadInput(
                f"{o.input_line}: the basic sweeper runs lists of values, not intervals; search "
                "an interval with Optuna: hparams_search=<name> or hydra/sweeper=optuna "
                "(pip install -e '.[optuna]')"
            )
    if not search:  # the basic sweeper's own jobs, in its order (the same, without the checks)
        return [tuple(job) for job in _basic_jobs(sweeper_params, overrides)]
    return list(itertools.product(*axes.values()))


def _basic_jobs(params: Mapping[str, Any] | None, overrides: Sequence[str]) -> list[list[str]]:
    return _hydra.basic_sweeper_jobs(params, overrides, OverridesParser.create().parse_overrides)


def _shuffled(value: Any) -> bool:
    return isinstance(value, RangeSweep) and value.shuffle


def search_ends(o: Override) -> tuple[End, ...]:
    """The ends of an interval or an (unshuffled) range that a search sweeper samples, as Optuna
    2 does (hydra-optuna-sweeper): ``interval(a, b)`` floats in [a, b); ``int(interval(a, b))``
    integers in [a, b]; ``tag(log, ...)`` the same on a log scale, a > 0; ``range(a, b, s)``
    a + k*s up to b, b included. Raise BadInput for one Optuna refuses (or would sample
    infinity from)."""
    key, value = o.get_key_element(), o.value()
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if not (step > 0 and start <= stop):
            raise BadInput(
                f"{o.input_line}: a searched range goes up from its start to its stop: "
                "give start <= stop and a step > 0"
            )
        if all(isinstance(x, int) for x in (start, stop, step)):
            high: float = start + (stop - start) // step * step
        else:  # as Optuna's DiscreteUniformDistribution cuts it, in decimal
            d_start, d_step = Decimal(str(start)), Decimal(str(step))
            high = float((Decimal(str(stop)) - d_start) // d_step * d_step + d_start)
            start = float(start)
        ends, floats = [(start, "lower", None), (high, "upper", None)], False
    else:
        assert isinstance(value, IntervalSweep)
        low, high = value.start, value.end
        for end, name in ((low, "lower"), (high, "upper")):
            if not math.isfinite(end):
                raise BadInput(f"{o.input_line}: its {name} bound must be a finite number")
        if low > high:
            raise BadInput(f"{o.input_line}: its lower bound {low} is above its upper bound {high}")
        if "log" in value.tags and low <= 0:
            raise BadInput(f"{o.input_line}: a log-scale interval needs a lower bound > 0")
        integers = isinstance(low, int) and isinstance(high, int)
        inside = None if integers or low == high else math.nextafter(high, low)
        ends = [(low, "lower", None), (high, "upper", inside)]
        floats = not integers and float(low).is_integer() and float(high).is_integer()
    out = [
        End(f"{key}={x!r}", o.input_line, name, None if y is None else f"{key}={y!r}", floats)
        for x, name, y in ends
    ]
    return tuple(out[:1] if out[0].line == out[1].line else out)


# What preflight needs of Hydra's own section of a job's config.
_HYDRA_KEYS = (
    "mode",
    "job.chdir",
    "run.dir",
    "sweep.dir",
    "output_subdir",
    "sweeper._target_",
    "sweeper.params",
    "launcher._target_",
)


class _Composer:
    """Composes the jobs of a sweep as plain dicts: Hydra's compose once per combination of
    config-group choices (and Hydra settings), then each job's plain value overrides applied to a
    copy (where Hydra would apply them with ``OmegaConf.update``; the schema's types are checked
    by ``validate`` after). A 225-job study composes 15 times instead of 225. A job whose
    overrides are not plain values (a delete, an interpolation, an unknown key) is composed by
    Hydra whole, so Hydra's own errors are the ones seen."""

    def __init__(self, config_dir: Path, config_name: str) -> None:
        self.config_dir, self.config_name = config_dir, config_name
        self.parser = OverridesParser.create()
        self.cache: dict[tuple[str, ...], dict[str, Any]] = {}

    def _is_composed(self, o: Override) -> bool:
        """A config-group choice, a setting of Hydra's own, or a delete: Hydra composes these."""
        key = o.key_or_group
        return (
            key.startswith(("hydra.", "hydra/"))
            or (self.config_dir / key).is_dir()
            or o.is_delete()
        )

    def _compose(self, overrides: Sequence[str]) -> dict[str, Any]:
        cfg = compose(self.config_name, overrides=list(overrides), return_hydra_config=True)
        plain = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
                 for k, v in cfg.items() if k != "hydra"}  # fmt: skip
        plain["hydra"] = {k: OmegaConf.select(cfg.hydra, k) for k in _HYDRA_KEYS}
        params = OmegaConf.select(cfg, "hydra.sweeper.params")
        plain["hydra"]["sweeper.params"] = (
            OmegaConf.to_container(params, resolve=True) if OmegaConf.is_config(params) else {}
        )
        plain["hydra"]["sweeper"] = OmegaConf.to_container(
            cfg.hydra.sweeper, resolve=True, enum_to_str=True
        )
        plain["hydra"]["naming"] = OmegaConf.to_container(
            cfg.hydra.job.config.override_dirname, resolve=True
        )
        for key in ("run.dir", "sweep.dir"):
            plain["hydra"][f"{key}:pattern"] = dir_pattern(cfg, f"hydra.{key}")
        return plain

    def whole(self, job: Sequence[str]) -> dict[str, Any]:
        """A job composed by Hydra whole: its ``hydra`` section as Hydra's own (a single run's
        dir is named after all its overrides; the cached compositions know only their groups)."""
        return _named(self._compose(job), self.parser.parse_overrides(list(job)))

    def __call__(self, job: Sequence[str]) -> dict[str, Any]:
        parsed = self.parser.parse_overrides(list(job))
        groups = tuple(o.input_line for o in parsed if self._is_composed(o))
        if groups not in self.cache:
            self.cache[groups] = self._compose(groups)
        cfg = copy.deepcopy(self.cache[groups])
        for o in parsed:
            if self._is_composed(o):
                continue
            value = o.value()
            parent, _, leaf = o.key_or_group.rpartition(".")
            node: Any = cfg
            for part in parent.split(".") if parent else []:
                node = node.get(part) if isinstance(node, dict) else None
            # Hydra's rules: a key must exist to be set, must not to be added with +, and ++
            # sets either way; an interpolation needs OmegaConf
            if isinstance(node, dict) and leaf in node:
                applies = not o.is_add()
            else:
                applies = isinstance(node, dict) and (o.is_add() or o.is_force_add())
            if not applies or (isinstance(value, str) and "${" in value):
                cfg = self._compose(job)  # let Hydra compose it, and say what is wrong
                break
            node[leaf] = _merged(node.get(leaf), value)
        return _named(cfg, parsed)


def _named(cfg: dict[str, Any], parsed: Sequence[Override]) -> dict[str, Any]:
    """``cfg`` with the job's directory name (``hydra.job.override_dirname``) as Hydra gives it."""
    naming = cfg["hydra"]["naming"]
    cfg["hydra"]["override_dirname"] = _hydra.override_dirname(
        parsed, naming["kv_sep"], naming["item_sep"], naming["exclude_keys"]
    )
    return cfg


_NOW = re.compile(r"\$\{now:[^}]*\}")


def dir_pattern(cfg: Any, key: str) -> str | None:
    """The glob of every directory the template at ``key`` makes, whatever the moment: each
    ``${now:...}`` a wildcard, the rest resolved (and escaped); None for a template without
    ``${now:...}`` (one directory: the same command finds it as it is)."""
    parent, _, leaf = key.rpartition(".")
    raw = OmegaConf.to_container(OmegaConf.select(cfg, parent), resolve=False).get(leaf)
    if not isinstance(raw, str) or not _NOW.search(raw):
        return None
    scratch = copy.deepcopy(cfg)
    OmegaConf.set_readonly(scratch, False)
    parts = []
    try:
        for piece in _NOW.split(raw):
            OmegaConf.update(scratch, key, piece, merge=False, force_add=True)
            parts.append(glob.escape(str(OmegaConf.select(scratch, key))))
    except OmegaConfBaseException:  # a ${now:...} inside another interpolation: no pattern
        return None
    return "*".join(parts)


def _merged(old: Any, new: Any) -> Any:
    """A value override as OmegaConf.update(merge=True) applies it: dicts merge, others replace."""
    if isinstance(old, dict) and isinstance(new, dict):
        return {**old, **{k: _merged(old.get(k), v) for k, v in new.items()}}
    return new


def job_output_dir(cfg: Mapping[str, Any], sweep_dir: Path) -> Path:
    """Where Hydra will put this job of a sweep (its directory name shortened as Hydra's will
    be), in ``sweep_dir`` (the sweep's, resolved once: its ``${now:...}`` moves on)."""
    return sweep_dir / job_dirname(cfg["hydra"]["override_dirname"])


@dataclass(frozen=True)
class Checked:
    """What a command line that passed will do: a sweep or one run, and the directory it writes
    into (the sweep dir, or the run dir), as Hydra will resolve it."""

    multirun: bool
    output_dir: Path
    note: str | None = None  # the unfinished run or sweep it continues, or why it did not

    def pinned(self) -> str:
        """The override that makes Hydra use exactly this directory (its ``${now:...}``
        resolved once), quoted for Hydra's override grammar."""
        key = "hydra.sweep.dir" if self.multirun else "hydra.run.dir"
        return rerun.quoted_override(key, str(self.output_dir))


def check(
    argv: Sequence[str],
    config_dir: str | Path,
    config_name: str,
    validate_fn: Callable[..., None] = validate,
    runs: bool = True,
) -> Checked | None:
    """Compose and check every job ``argv`` asks for; raise BadInput with one line if one is bad.

    ``validate_fn(cfg, torch_free=...)``: the config's rules (``initlab.config.validate``); what
    needs no torch is checked for every job before the rest for any. ``runs``: the jobs are
    training runs (train.py): also check their output dirs against what they hold, the disk's
    room for them, and the machine. Nothing is written. Returns what the command line will do
    (None for a command that runs nothing: ``--help``, ``--cfg``, ...).
    """
    if any(a.split("=")[0] in _HYDRA_ONLY for a in argv):
        return None
    _hydra.check_internals()  # a Hydra that moved what initlab relies on: named, before all
    multirun = any(a in _MULTIRUN for a in argv)
    overrides = [a for a in argv if not a.startswith("-")]
    config_dir = Path(config_dir).resolve()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            composer = _Composer(config_dir, config_name)
            _check_hydra_settings(overrides, composer)
            first = composer(_settings_job(overrides))
            # hydra.mode=MULTIRUN in a config (an hparams_search) sweeps without -m, as Hydra does
            multirun = multirun or getattr(first["hydra"]["mode"], "name", None) == "MULTIRUN"
            search = multirun and not _hydra.is_basic_sweeper(first["hydra"]["sweeper._target_"])
            params = first["hydra"]["sweeper.params"] if multirun else None
            if first["hydra"]["job.chdir"]:
                raise BadInput(
                    "hydra.job.chdir=true is not supported: initlab never changes the working "
                    "directory (relative paths such as data.root are read from where you "
                    "launch, and each run writes into its own output dir anyway)"
                )
            if not multirun:
                _check_no_grid_dropped(overrides, first)
            sweep_dir = Path(str(first["hydra"]["sweep.dir"])) if multirun else None
            if sweep_dir is not None:
                validate_sweeper(first["hydra"]["sweeper"])
                check_output_dir(sweep_dir)
            seen: set[str] = set()
            identities: dict[str, Any] = {}
            devices: dict[str, Any] = {}
            outputs: list[Path] = []
            placed: list[tuple[dict[str, Any], Path]] = []  # the jobs that will run, and where

            def check_job(job: Sequence[str], real: bool = True, torch_free: bool = False) -> None:
                """``real``: a job the sweeper will run, not one at the ends of a search;
                ``torch_free``: only what needs no torch (its values' rules, its data)."""
                cfg = composer(job)
                if torch_free:
                    validate_fn(cfg, torch_free=True)
                    once(seen, "data", cfg.get("data"), check_data)
                    return
                validate_fn(cfg)
                if sweep_dir is None:  # named after every override: Hydra composes them all
                    first.update(composer.whole(job))  # (a single run: its one job)
                    out = Path(str(first["hydra"]["run.dir"]))
                else:
                    out = job_output_dir(cfg, sweep_dir)
                outputs.append(out)
                # a job's dir is made in the sweep dir (checked above): only its name may fail
                check_output_dir(out, creatable=not multirun)
                once(seen, "data", cfg.get("data"), check_data)
                if runs:
                    check_machine(cfg, seen, devices)
                    check_space(out, cfg)
                    if real:  # a dir named after the ends of a search is no trial's
                        placed.append((cfg, out))

            def passes_inside(job: Sequence[str | End], torch_free: bool) -> bool:
                """An excluded upper end refused: the job at the value just below it, as the
                sweeper samples it."""
                if not any(isinstance(v, End) and v.inside for v in job):
                    return False
                inside = [v.inside or v.line if isinstance(v, End) else v for v in job]
                try:
                    check_job(inside, False, torch_free)
                except Exception:
                    return False
                return True

            jobs = _jobs(overrides, multirun, params, search)
            # a search: its choices alone first (the config's values where it searches an
            # interval), so that a refusal at the ends is the ends'
            searched = [job for job in jobs if any(isinstance(v, End) for v in job)]

            def check_every_job(torch_free: bool) -> None:
                for job in dict.fromkeys(tuple(_choices(job)) for job in searched):
                    check_job(job, real=False, torch_free=torch_free)
                for job in jobs:
                    ends = [v for v in job if isinstance(v, End)]
                    if not ends:
                        check_job(job, torch_free=torch_free)
                        continue
                    try:
                        check_job([_line(v) for v in job], real=False, torch_free=torch_free)
                    except Exception as exc:
                        if not passes_inside(job, torch_free):
                            raise _AtEnds(exc, ends) from None

            # every job's values and data first: a bad value in a sweep's last job is refused
            # before torch loads (seconds) for the first job's optimizer and Trainer
            check_every_job(torch_free=True)
            check_every_job(torch_free=False)
            where = sweep_dir or outputs[0]
            if not runs:
                return Checked(multirun, where)
            return _place(where, placed, overrides, first, multirun, search, identities)
    except _AtEnds as at:
        message = _bad_input(at.exc, config_dir, config_name, overrides)
        if message is None:
            raise at.exc from None
        named = [e for e in at.ends if _key_of(e.line) in message] or at.ends
        raise BadInput(f"{', '.join(e.where(message) for e in named)}: {message}") from None
    except Exception as exc:
        message = _bad_input(exc, config_dir, config_name, overrides)
        if message is None:
            raise
        raise BadInput(message) from None
    finally:
        GlobalHydra.instance().clear()


def _place(
    where: Path,
    placed: Sequence[tuple[dict[str, Any], Path]],
    overrides: Sequence[str],
    first: Mapping[str, Any],
    multirun: bool,
    search: bool,
    identities: dict[str, Any],
) -> Checked:
    """Where the command runs: the newest unfinished run or sweep of the same command, when its
    directories are named after the moment (``initlab.rerun``) and it still holds this
    configuration; else ``where``. Each job's dir must hold its run, or nothing
    (``check_previous_run``: a different configuration is refused). Not for a search, whose
    trials are not known before it runs, nor with force=true, which starts over."""
    pattern = first["hydra"]["sweep.dir:pattern" if multirun else "run.dir:pattern"]
    found = None
    if pattern and not search and not first.get("force"):
        jobs = [str(out.relative_to(where)) for _, out in placed] if multirun else None
        subdir = first["hydra"]["output_subdir"]
        found = rerun.find_unfinished(pattern, overrides, jobs, subdir, exclude=where)
    note = None
    if found is not None:
        try:
            for cfg, out in placed:
                check_previous_run(cfg, found / out.relative_to(where), identities)
        except bad_input_errors() as exc:
            note = (
                f"the unfinished {'sweep' if multirun else 'run'} of this command in {found} "
                f"is not this configuration now ({one_line(str(exc))}): it is left as it is, "
                f"and this one starts in {where}"
            )
        else:
            what = "sweep" if multirun else "run"
            return Checked(multirun, found, f"continuing the unfinished {what} in {found}")
    for cfg, out in placed:
        check_previous_run(cfg, out, identities)
    return Checked(multirun, where, note)


class _AtEnds(Exception):
    """A job at the ends of a search space was refused: which ends, and why."""

    def __init__(self, exc: Exception, ends: Sequence[End]) -> None:
        super().__init__(str(exc))
        self.exc, self.ends = exc, list(ends)


def _key_of(line: str) -> str:
    return line.split("=", 1)[0].lstrip("+~")


def _settings_job(overrides: Sequence[str]) -> list[str]:
    """The command line with each list at its first value and each interval left out: what
    Hydra's own settings (mode, sweeper and its params, dirs) are composed from before the jobs
    are known."""
    job = []
    for o in OverridesParser.create().parse_overrides(list(overrides)):
        if not o.is_sweep_override():
            job.append(o.input_line)
        elif o.is_discrete_sweep():
            first = next(iter(o.sweep_string_iterator()), None)
            if first is not None:
                job.append(f"{o.get_key_element()}={first}")
    return job


# -- Hydra's own settings on the command line: what Hydra would take, or crash on, past here -------
_PARAMS = "hydra.sweeper.params."


def _check_hydra_settings(overrides: Sequence[str], composer: _Composer) -> None:
    """A list given to one of Hydra's settings (Hydra sweeps only the config's keys: it refuses
    ``hydra.x=a,b`` in a multirun, and reads it as ambiguous in a single run), and the keys of
    ``hydra.sweeper.params`` on the command line: each a key of the config, that Hydra can
    address there, and in the grid (``_sweeper_param_problem``)."""
    parsed = composer.parser.parse_overrides(list(overrides))
    for o in parsed:
        if _hydra.sweeps_hydra_setting(o) and not o.key_or_group.startswith(_PARAMS):
            raise BadInput(
                f"{o.input_line} gives a list to a setting of Hydra's, which Hydra does not "
                "sweep: give it one value"
            )
    grid = [o for o in parsed if o.key_or_group.startswith(_PARAMS) and not o.is_delete()]
    if not grid:
        return
    rest = [o.input_line for o in parsed if not o.key_or_group.startswith(_PARAMS)]
    base = composer(_settings_job(rest))
    study = next((o.input_line for o in parsed if o.key_or_group == "experiment"), None)
    for o in grid:
        problem = _sweeper_param_problem(o, base, composer.config_dir, study)
        if problem:
            raise BadInput(problem)


def _sweeper_param_problem(
    o: Override, base: Mapping[str, Any], config_dir: Path, study: str | None
) -> str | None:
    """What is wrong with ``hydra.sweeper.params.<key>=...`` on the command line, if anything:
    a key that is not the config's (the closest named), a key with a dot (Hydra reads it as a
    section of hydra.sweeper.params), a list not quoted (Hydra sweeps none of its own settings),
    or a key not in the grid without + (or no grid to add it to)."""
    key = o.key_or_group[len(_PARAMS) :]
    values = o.input_line.split("=", 1)[1]
    if not o.is_sweep_override() and isinstance(o.value(), str):
        values = o.value()  # a quoted list: its text
    setting = o.input_line.split("=", 1)[0]
    known = _config_keys(base, config_dir)
    parent = key.split(".", 1)[0]
    if key not in known and not ("." in key and parent in ("optimizer", "trainer")):
        closest = difflib.get_close_matches(key, sorted(known), n=1)
        name = closest[0] if closest else key
        has = f"closest: {name}" if closest else "it has: " + ", ".join(sorted(_top_keys(base)))
        how = f"to sweep a key, give its values directly: -m {name}={values}"
        if "." not in name:
            how += f", or quote them: '{setting.replace(key, name)}=\"{values}\"'"
        return f"{o.input_line}: {key} is not a key of the config ({has}); {how}"
    if "." in key:
        return (
            f"{o.input_line}: Hydra reads this as a key {key.split('.', 1)[1]} inside "
            f"hydra.sweeper.params.{parent}, not as the key {key}: sweep {key} directly: "
            f"-m {'' if key in known else '+'}{key}={values}"
        )
    if o.is_sweep_override():
        return (
            f"{o.input_line} gives a list to a setting of Hydra's, which Hydra does not sweep: "
            f"quote it to set the grid of {key} ('{setting}=\"{values}\"'), or sweep {key} "
            f"directly: -m {key}={values}"
        )
    params = base["hydra"]["sweeper.params"] or {}
    if not params:
        return (
            f"{o.input_line}: there is no grid in hydra.sweeper.params to add {key} to (an "
            f"experiment=... sets one): sweep {key} directly: -m {key}={values}"
        )
    if key not in params and not (o.is_add() or o.is_force_add()):
        where = study or "hydra.sweeper.params"
        return (
            f"{o.input_line}: {key} is not in the grid of {where} (it has: "
            f"{', '.join(params)}): add it with +{o.input_line}, or sweep it directly: "
            f"-m {key}={values}"
        )
    return None


def _top_keys(cfg: Mapping[str, Any]) -> list[str]:
    return [str(k) for k in cfg if k != "hydra"]


def _config_keys(cfg: Mapping[str, Any], config_dir: Path) -> set[str]:
    """Every key of the composed config (dotted), every config group, and every key an option
    of a group sets (``init.gain``: an option of init has it)."""
    import yaml

    keys: set[str] = set()

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for k, v in node.items():
            keys.add(f"{prefix}{k}")
            if isinstance(v, Mapping):
                walk(v, f"{prefix}{k}.")

    walk({k: v for k, v in cfg.items() if k != "hydra"}, "")
    for group in sorted(p for p in config_dir.iterdir() if p.is_dir() and p.name != "hydra"):
        keys.add(group.name)
        for option in group.glob("*.yaml"):
            text = option.read_text()
            if "@package _global_" in text.split("\n", 1)[0]:
                continue
            with contextlib.suppress(yaml.YAMLError):
                data = yaml.safe_load(text)
                if isinstance(data, dict):
                    keys |= {f"{group.name}.{k}" for k in data if k != "defaults"}
    return keys


def _check_no_grid_dropped(overrides: Sequence[str], first: Mapping[str, Any]) -> None:
    """Without -m Hydra runs one job and ignores ``hydra.sweeper.params``: refuse a command line
    whose grid (an experiment's) has more than one job, as a list without -m is refused."""
    params = first["hydra"]["sweeper.params"]
    if not params or not _hydra.is_basic_sweeper(first["hydra"]["sweeper._target_"]):
        return
    try:
        jobs = _basic_jobs(params, [o for o in overrides if not _key_of(o).startswith("hydra")])
    except HydraException:  # not a grid the basic sweeper runs: it says so with -m
        return
    if len(jobs) < 2:
        return
    varying = [
        _key_of(line)
        for i, line in enumerate(jobs[0])
        if len({job[i] if i < len(job) else None for job in jobs}) > 1
    ]
    study = next((o for o in overrides if _key_of(o) == "experiment"), "hydra.sweeper.params")
    raise BadInput(
        f"{study} is a study of {len(jobs)} runs ({' x '.join(varying)}): add -m (--multirun) "
        "to run it"
    )


def _bad_input(
    exc: BaseException, config_dir: Path, config_name: str, overrides: Sequence[str] = ()
) -> str | None:
    """The one line for an error that is bad input; None for one that is not (a bug)."""
    if isinstance(exc, BadInput):
        return str(exc)
    if isinstance(exc, MissingConfigException):
        return _missing_option(exc)
    if isinstance(exc, (HydraException, OmegaConfBaseException)):
        unknown = _unknown_key(exc, config_dir, config_name, overrides)
        return _type_error(exc) or unknown or one_line(str(exc))
    if isinstance(exc, bad_input_errors()):
        return str(exc)
    return None


def _unknown_key(
    exc: BaseException, config_dir: str | Path, config_name: str, overrides: Sequence[str] = ()
) -> str | None:
    """'model.dept=3': say that the key does not exist and which keys its parent has (for one
    of Hydra's settings, ``hydra.sweeper.n_trial``: as the command line's choices compose it)."""
    found = _hydra.overridden_key(exc)
    cause = _hydra.composition_cause(exc)
    if found:
        key = found
    elif type(cause).__name__ in ("ConfigKeyError", "ConfigAttributeError") and getattr(
        cause, "full_key", None
    ):
        key = str(cause.full_key)
    else:
        return None
    parent, _, leaf = key.rpartition(".")
    config_dir = Path(config_dir).resolve()
    hydra_key = key.startswith("hydra.")
    choices: list[str] = []
    if hydra_key:  # Hydra's settings depend on the choices: hparams_search=gain's sweeper
        parser = OverridesParser.create()
        choices = [
            o.input_line
            for o in parser.parse_overrides(_settings_job(overrides))
            if o.key_or_group.startswith("hydra/") or (config_dir / o.key_or_group).is_dir()
        ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        try:
            defaults = compose(config_name, choices, return_hydra_config=hydra_key)
        except Exception:
            defaults = compose(config_name, return_hydra_config=hydra_key)
    node = OmegaConf.select(defaults, parent) if parent else defaults
    while parent and not OmegaConf.is_dict(node):  # foo.bar: the config has no foo either
        parent = parent.rpartition(".")[0]
        node = OmegaConf.select(defaults, parent) if parent else defaults
    keys = ", ".join(str(k) for k in node) if OmegaConf.is_dict(node) else ""
    where = f"'{parent}'" if parent else "the config"
    message = f"{key} is not a key of {where} (it has: {keys})"
    # their keys are the init's, optimizer's or Trainer's arguments
    if parent in FREE_FORM and key == f"{parent}.{leaf}":
        message += f"; to give another argument of {FREE_FORM[parent]} use +{key}=..."
    return message


def preflight(
    argv: Sequence[str],
    config_dir: str | Path,
    config_name: str,
    validate_fn: Callable[..., None] = validate,
    runs: bool = True,
) -> Checked | None:
    """``check``, then on bad input: the one line on stderr and exit status 2."""
    try:
        return check(argv, config_dir, config_name, validate_fn, runs)
    except BadInput as exc:
        print(f"initlab: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except _hydra.HydraInternalsError as exc:  # not the input: the installed Hydra
        print(f"initlab: error: {exc}", file=sys.stderr)
        sys.exit(1)
