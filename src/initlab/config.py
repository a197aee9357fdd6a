"""The config's schema: every setting's type, range and role, declared once.

The dataclasses below are the single declaration of ``conf/train.yaml`` (``TrainConf``) and
``conf/propagate.yaml`` (``PropagateConf``). Hydra enforces their types when it composes
(``initlab.cli.register_schemas`` stores them in Hydra's ConfigStore as the base of both files);
``validate`` checks everything else in one place, each problem as one ``ConfigError`` line that
names the field, the value and what is allowed:

- the ranges and choices in each field's metadata, and unknown keys (``+model.dept=3``,
  ``+foo=1``);
- the free-form sections against what they are passed to: ``init.*`` against the init function's
  parameters, ``optimizer.*`` against the optimizer class's, ``trainer.*`` against
  ``lightning.Trainer``'s (with ranges for the ones initlab relies on, and a refusal for the ones
  initlab sets itself);
- values that are valid alone but not together (batch norm and batch size, val split and dataset
  size, steps per execution and the validation interval, ...).

Each field's *role* says what it means for a run's fingerprint (``initlab.fingerprint``):
``result`` (it determines the result), ``bookkeeping`` (where outputs go, what is printed or
logged), ``extend`` (a budget a finished run may be extended by: ``trainer.max_epochs``),
``report`` (how the record summarises the history: ``thresholds``, recomputed on a rerun).

No Hydra and no torch at import: the init, optimizer and Trainer checks import what they check.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

MISSING = "???"  # omegaconf.MISSING: the value comes from the yaml files (conf/), not from here
RESULT, BOOKKEEPING, EXTEND, REPORT = "result", "bookkeeping", "extend", "report"
SEED_MAX = 2**32 - 1  # numpy's and Lightning's seed range; out of it Lightning draws a random seed
SIGNALS = ("SIGUSR1", "SIGUSR2", "SIGHUP", "SIGQUIT", "SIGALRM")  # besides SIGTERM and SIGINT


class ConfigError(ValueError):
    """A config value is out of range, of the wrong type, unknown, or clashes with another."""


# -- predicates and the field helper ------------------------------------------------------------
def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _pos_int(v: Any) -> bool:
    return _int(v) and v > 0


def _seed(v: Any) -> bool:
    return _int(v) and 0 <= v <= SEED_MAX


def _optional(ok: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or ok(v)


def _one_of(*choices: Any) -> Callable[[Any], bool]:
    return lambda v: any(v == c and type(v) is type(c) for c in choices)


def _setting(
    default: Any = MISSING,
    allowed: str = "",
    ok: Callable[[Any], bool] | None = None,
    role: str = RESULT,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A dataclass field with its rule: ``ok(value)`` or ``must be <allowed>``, and its role.

    Values live in the yaml files (``conf/``): a field's default is MISSING unless the yaml files
    may leave it out."""
    meta = {"allowed": allowed, "ok": ok, "role": role}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


POS_INT = "a positive integer"


# -- the sections --------------------------------------------------------------------------------
@dataclass
class ModelConf:
    input_size: int = _setting(MISSING, POS_INT, _pos_int)
    num_classes: int = _setting(MISSING, "an integer >= 2", lambda v: _int(v) and v >= 2)
    depth: int | None = _setting(MISSING, f"{POS_INT} (or null)", _optional(_pos_int))
    width: int | None = _setting(MISSING, f"{POS_INT} (or null)", _optional(_pos_int))
    hidden_sizes: list[int] | None = _setting(
        MISSING,
        "a non-empty list of positive integers (or null)",
        _optional(lambda v: len(v) > 0 and all(_pos_int(h) for h in v)),
    )
    activation: str = _setting(MISSING)  # choices: initlab.mlp.ACTIVATIONS


@dataclass
class NormConf:
    name: str = _setting(MISSING)  # choices: initlab.mlp.NORMS


@dataclass
class DataConf:
    name: str = _setting(MISSING)  # choices: initlab.data.DATASET_NAMES
    # where the files are, and what to do when they are not: the dataset's identity (its files'
    # checksums, in the fingerprint) says what was read, whatever the path
    root: str = _setting(MISSING, "a path", lambda v: isinstance(v, str) and v != "", BOOKKEEPING)
    download: bool = _setting(MISSING, "true or false", role=BOOKKEEPING)
    fallback: bool = _setting(MISSING, "true or false", role=BOOKKEEPING)
    batch_size: int = _setting(MISSING, POS_INT, _pos_int)
    eval_batch_size: int = _setting(MISSING, POS_INT, _pos_int)
    val_size: int = _setting(MISSING, POS_INT, _pos_int)
    split_seed: int = _setting(MISSING, f"an integer in [0, {SEED_MAX}]", _seed)
    mean: float = _setting(MISSING, "a finite number", _number)
    std: float = _setting(MISSING, "a number > 0", lambda v: _number(v) and v > 0)
    # the generated set's sizes (data=synthetic only)
    synthetic_train: int | None = _setting(
        None, "an integer >= 20 (or null)", _optional(lambda v: _int(v) and v >= 20)
    )
    synthetic_test: int | None = _setting(None, f"{POS_INT} (or null)", _optional(_pos_int))


@dataclass
class LoggerConf:
    type: str = _setting(
        MISSING, "one of: tensorboard, csv, none", _one_of("tensorboard", "csv", "none")
    )
    subdir: str | None = _setting(
        None,
        "a directory name (no '/'), or null for the run dir itself",
        _optional(lambda v: isinstance(v, str) and v not in ("", ".", "..") and "/" not in v),
        BOOKKEEPING,
    )


@dataclass
class DiagnosticsConf:
    enabled: bool = _setting(MISSING, "true or false", role=BOOKKEEPING)
    every_n_steps: int = _setting(MISSING, POS_INT, _pos_int, BOOKKEEPING)
    histograms: bool = _setting(MISSING, "true or false", role=BOOKKEEPING)
    histogram_every_n_steps: int | None = _setting(
        MISSING, f"{POS_INT} (or null)", _optional(_pos_int), BOOKKEEPING
    )
    symmetry: bool = _setting(MISSING, "true or false", role=BOOKKEEPING)


@dataclass
class CheckpointConf:
    signals: list[str] = _setting(
        MISSING,
        f"a list of signal names from: {', '.join(SIGNALS)}",
        lambda v: all(s in SIGNALS for s in v),
        BOOKKEEPING,
    )


def _thresholds(v: Any) -> bool:
    return all(_number(t) and 0 < t < 1 for t in v) and len(set(v)) == len(v)


@dataclass
class TrainConf:
    """conf/train.yaml. ``init``, ``optimizer`` and ``trainer`` are free-form here: their keys
    are checked against the init function, the optimizer class and ``lightning.Trainer``."""

    seed: int = _setting(MISSING, f"an integer in [0, {SEED_MAX}]", _seed)
    thresholds: list[float] = _setting(MISSING, "distinct numbers in (0, 1)", _thresholds, REPORT)
    study: str | None = _setting(MISSING)
    force: bool = _setting(MISSING, "true or false", role=BOOKKEEPING)
    progress_bar: Any = _setting(
        MISSING, "auto, true or false", _one_of("auto", True, False), BOOKKEEPING
    )
    steps_per_execution: Any = _setting(
        MISSING, "auto or a positive integer", lambda v: v == "auto" or _pos_int(v), BOOKKEEPING
    )
    checkpoint: CheckpointConf = _setting(factory=CheckpointConf, role=BOOKKEEPING)
    init: dict[str, Any] = _setting(factory=dict)
    norm: NormConf = _setting(factory=NormConf)
    model: ModelConf = _setting(factory=ModelConf)
    data: DataConf = _setting(factory=DataConf)
    optimizer: dict[str, Any] = _setting(factory=dict)
    trainer: dict[str, Any] = _setting(factory=dict)
    logger: LoggerConf = _setting(factory=LoggerConf, role=BOOKKEEPING)
    diagnostics: DiagnosticsConf = _setting(factory=DiagnosticsConf, role=BOOKKEEPING)


@dataclass
class PropagateSection:
    inputs: str = _setting(MISSING, "one of: mnist, gaussian", _one_of("mnist", "gaussian"))
    n_inputs: int = _setting(MISSING, POS_INT, _pos_int)
    seeds: int = _setting(MISSING, "an integer >= 2 (for the spread)", lambda v: _int(v) and v >= 2)


@dataclass
class PropagateConf:
    """conf/propagate.yaml: the network of train.py at init, and how it is measured."""

    seed: int = _setting(MISSING, f"an integer in [0, {SEED_MAX}]", _seed)
    init: dict[str, Any] = _setting(factory=dict)
    norm: NormConf = _setting(factory=NormConf)
    model: ModelConf = _setting(factory=ModelConf)
    data: DataConf = _setting(factory=DataConf)
    propagate: PropagateSection = _setting(factory=PropagateSection)


# -- the free-form sections ----------------------------------------------------------------------
# Sections whose keys are arguments of what they configure (added with +key=... on the command
# line), checked against it
FREE_FORM = {
    "init": "the init function",
    "optimizer": "the optimizer class",
    "trainer": "lightning.Trainer",
}
_POSITIVE = ("a number > 0", lambda v: _number(v) and v > 0)
_FINITE = ("a finite number", _number)
# init parameters by name (their types otherwise follow the init function's defaults)
INIT_RULES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "std": _POSITIVE,
    "bound": _POSITIVE,
    "gain": ("a number > 0", lambda v: _number(v) and v > 0),
    "value": _FINITE,
    "tol": _POSITIVE,
    "max_iter": (POS_INT, _pos_int),
    "batch_size": (POS_INT, _pos_int),
    "mode": ("one of: fan_in, fan_out", _one_of("fan_in", "fan_out")),
    "distribution": ("one of: normal, uniform", _one_of("normal", "uniform")),
    "bias": ("a finite number (or null: the init's own bias)", _optional(_number)),
}


def _pair_in_unit(v: Any) -> bool:
    if isinstance(v, (str, bytes, Mapping)) or not isinstance(v, Iterable):
        return False
    v = list(v)
    return len(v) == 2 and all(_number(b) and 0 <= b < 1 for b in v)


# optimizer arguments by name; others must be parameters of the optimizer class
OPTIMIZER_RULES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "lr": ("a number > 0", lambda v: _number(v) and v > 0),
    "momentum": ("a number in [0, 1)", lambda v: _number(v) and 0 <= v < 1),
    "dampening": ("a number in [0, 1]", lambda v: _number(v) and 0 <= v <= 1),
    "weight_decay": ("a number >= 0", lambda v: _number(v) and v >= 0),
    "eps": _POSITIVE,
    "alpha": ("a number in [0, 1)", lambda v: _number(v) and 0 <= v < 1),
    "betas": ("two numbers in [0, 1)", lambda v: _pair_in_unit(v)),
}
_FRACTION_OR_COUNT = (
    "a positive integer (batches) or a fraction in (0, 1] (or null)",
    _optional(lambda v: _pos_int(v) or (_number(v) and isinstance(v, float) and 0 < v <= 1)),
)
# Trainer arguments initlab relies on: (what is allowed, check, role)
TRAINER_RULES: dict[str, tuple[str, Callable[[Any], bool], str]] = {
    "max_epochs": (POS_INT, _pos_int, EXTEND),
    "max_steps": ("-1 (no limit) or a positive integer", lambda v: v == -1 or _pos_int(v), EXTEND),
    "min_epochs": ("an integer >= 0 (or null)", _optional(lambda v: _int(v) and v >= 0), RESULT),
    "min_steps": ("an integer >= 0 (or null)", _optional(lambda v: _int(v) and v >= 0), RESULT),
    "accelerator": (
        "one of: auto, cpu, gpu, cuda, mps",
        _one_of("auto", "cpu", "gpu", "cuda", "mps"),
        RESULT,
    ),
    "devices": (
        "1 (one device per job: a sweep runs jobs side by side, see hydra/launcher=local)",
        lambda v: v == 1 or v == "1",
        RESULT,
    ),
    "deterministic": ("true, false or warn", _one_of(True, False, "warn"), RESULT),
    "val_check_interval": (
        "a positive integer (steps) or a fraction of an epoch in (0, 1] (or null: 1.0)",
        _optional(lambda v: _pos_int(v) or (isinstance(v, float) and 0 < v <= 1)),
        RESULT,
    ),
    "check_val_every_n_epoch": (f"{POS_INT} (or null)", _optional(_pos_int), RESULT),
    "log_every_n_steps": (POS_INT, _pos_int, RESULT),
    "num_sanity_val_steps": ("an integer >= -1", lambda v: _int(v) and v >= -1, RESULT),
    "limit_train_batches": (*_FRACTION_OR_COUNT, RESULT),
    "limit_val_batches": (*_FRACTION_OR_COUNT, RESULT),
    "limit_test_batches": (*_FRACTION_OR_COUNT, RESULT),
    "precision": (
        "one of: 32, 64, 32-true, 64-true, bf16-mixed, 16-mixed, bf16-true, 16-true",
        lambda v: (
            str(v)
            in ("32", "64", "32-true", "64-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true")
        ),  # fmt: skip
        RESULT,
    ),
    "enable_model_summary": ("true or false", _one_of(True, False), BOOKKEEPING),
    "profiler": ("null or a profiler name", _optional(lambda v: isinstance(v, str)), BOOKKEEPING),
}
# Trainer arguments initlab sets itself, or that cannot work with how it trains
TRAINER_REFUSED: dict[str, str] = {
    "logger": "set by initlab: choose logger=tensorboard, logger=csv or logger=none",
    "callbacks": "set by initlab",
    "default_root_dir": "set by initlab to the run's output dir (hydra.run.dir / hydra.sweep.dir)",
    "enable_progress_bar": "set by initlab: use progress_bar=true|false",
    "enable_checkpointing": "always on: last.ckpt is what a killed run resumes from",
    "plugins": "set by initlab (atomic checkpoints, SLURM)",
    "strategy": "one device per job: a sweep runs jobs side by side",
    "num_nodes": "one device per job: a sweep runs jobs side by side",
    "accumulate_grad_batches": "initlab steps the optimizer itself (manual optimization)",
    "gradient_clip_val": "initlab steps the optimizer itself (manual optimization)",
    "gradient_clip_algorithm": "initlab steps the optimizer itself (manual optimization)",
    "overfit_batches": "not supported by initlab's data loading: use debug=smoke or a smaller "
    "data.val_size",
    "fast_dev_run": "not supported (it turns off logging and checkpoints): use debug=smoke",
    "barebones": "not supported (initlab's callbacks and logging need the full trainer)",
    "use_distributed_sampler": "initlab's sampler is the data order: it must stay",
    "reload_dataloaders_every_n_epochs": "initlab's sampler reshuffles every epoch itself",
}


# -- walking a section ---------------------------------------------------------------------------
def _type_ok(annotation: str, v: Any) -> bool:
    """Whether ``v`` has the type the (string) annotation declares (None: when Optional)."""
    if v is None:
        return "None" in annotation or annotation == "Any"
    base = annotation.split(" |")[0]
    checks: dict[str, Callable[[Any], bool]] = {
        "int": _int,
        "float": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
        "bool": lambda x: isinstance(x, bool),
        "str": lambda x: isinstance(x, str),
    }
    if base in checks:
        return checks[base](v)
    if base.startswith("list"):
        return not isinstance(v, (str, bytes, Mapping)) and isinstance(v, Iterable)
    if base.startswith("dict"):
        return isinstance(v, Mapping)
    return True


def _message(key: str, v: Any, allowed: str) -> str:
    if isinstance(v, Iterable) and not isinstance(v, (str, bytes, Mapping)):
        v = list(v)
    return f"{key}={v!r} must be {allowed}"


def _items(section: Any) -> dict[str, Any]:
    """A section's values; a missing one (``???``) as MISSING, without raising."""
    if not isinstance(section, Mapping):
        return {}
    out = {}
    for k in section:
        try:
            out[str(k)] = section[k]
        except Exception:  # omegaconf's MissingMandatoryValue
            out[str(k)] = MISSING
    return out


def _check_dataclass(schema: type, section: Any, prefix: str, extra: Iterable[str] = ()) -> None:
    """Unknown keys, then each declared field's type and rule, recursing into sections."""
    if not isinstance(section, Mapping):
        raise ConfigError(f"{prefix[:-1]}={section!r} must be a section (a mapping of keys)")
    values = _items(section)
    declared = {f.name: f for f in fields(schema)}
    unknown = sorted(set(values) - set(declared) - set(extra))
    if unknown:
        key = f"{prefix}{unknown[0]}"
        where = f"'{prefix[:-1]}'" if prefix else "initlab's config"
        raise ConfigError(f"{key} is not a key of {where} (it has: {', '.join(declared)})")
    for name, f in declared.items():
        key = f"{prefix}{name}"
        v = values.get(name, MISSING)
        if isinstance(v, str) and v == MISSING:
            raise ConfigError(f"{key} is missing from the config")
        if f.type in _SECTIONS:
            _check_dataclass(_SECTIONS[f.type], v, f"{key}.")
            continue
        allowed, ok = f.metadata.get("allowed"), f.metadata.get("ok")
        if not _type_ok(f.type, v):
            raise ConfigError(_message(key, v, allowed or f"of type {f.type}"))
        if ok is not None and not ok(v):
            raise ConfigError(_message(key, v, allowed))


def _check_choice(key: str, v: Any, allowed: Iterable[str]) -> None:
    allowed = list(allowed)
    if v not in allowed:
        raise ConfigError(f"{key}={v!r} is not one of: {', '.join(map(str, allowed))}")


def _check_init(init: Any) -> None:
    """``init.name`` is an init; its other keys are its parameters, with their types and ranges."""
    from initlab.inits import DATA_DEPENDENT, INITS, init_parameters

    values = _items(init)
    _check_choice("init.name", values.get("name"), sorted(INITS))
    name = values["name"]
    params = init_parameters(name)
    fn = DATA_DEPENDENT.get(name, INITS[name])
    defaults = {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.default is not inspect.Parameter.empty
    }
    for key, v in values.items():
        if key == "name":
            continue
        if key not in (*params, "bias"):
            takes = ", ".join([*params, "bias"])
            raise ConfigError(f"init.{key} is not a parameter of init={name} (it takes: {takes})")
        allowed, ok = INIT_RULES.get(key, ("", None))  # type: ignore[assignment]
        if ok is None:
            default = defaults.get(key)
            if isinstance(default, str):
                allowed, ok = "a string", lambda x: isinstance(x, str)
            elif _number(default):
                allowed, ok = "a finite number", _number
            else:
                continue
        if key == "gain" and defaults.get("gain", 0) is None:
            allowed, ok = f"{allowed} (or null: the activation's gain)", _optional(ok)
        if not ok(v):
            raise ConfigError(_message(f"init.{key}", v, allowed))


def import_target(target: str) -> Any:
    """The object a dotted ``_target_`` names (None when it does not import)."""
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _check_optimizer(opt: Any) -> None:
    """A ``_partial_`` of a torch optimizer class, whose arguments it has, in range."""
    import torch

    values = _items(opt)
    target = values.get("_target_")
    cls = import_target(target) if isinstance(target, str) else None
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(
            f"optimizer._target_={target!r} must name a torch optimizer class, "
            "e.g. torch.optim.SGD or torch.optim.Adam"
        )
    if values.get("_partial_") is not True:
        raise ConfigError(
            f"optimizer._partial_={values.get('_partial_')!r} must be true "
            "(the module calls it with its parameters)"
        )
    params = [p for p in inspect.signature(cls).parameters if p not in ("self", "params")]
    for key, v in values.items():
        if key in ("_target_", "_partial_"):
            continue
        if key not in params:
            raise ConfigError(
                f"optimizer.{key} is not an argument of {target} (it takes: {', '.join(params)})"
            )
        rule = OPTIMIZER_RULES.get(key)
        if rule is not None and not rule[1](v):
            raise ConfigError(_message(f"optimizer.{key}", v, rule[0]))
    if "lr" not in values:
        raise ConfigError(f"optimizer.lr is missing: {target} needs a learning rate")


def trainer_arguments() -> list[str]:
    """The keyword arguments of ``lightning.Trainer``."""
    import lightning as L

    return [p for p in inspect.signature(L.Trainer.__init__).parameters if p != "self"]


def _check_trainer(trainer: Any) -> None:
    values = _items(trainer)
    known = None
    for key, v in values.items():
        if key in TRAINER_REFUSED:
            raise ConfigError(f"trainer.{key}={v!r} is not allowed: {TRAINER_REFUSED[key]}")
        rule = TRAINER_RULES.get(key)
        if rule is None:
            known = known if known is not None else trainer_arguments()
            if key not in known:
                raise ConfigError(
                    f"trainer.{key} is not an argument of lightning.Trainer "
                    f"(it takes: {', '.join(k for k in known if k not in TRAINER_REFUSED)})"
                )
            continue
        if not rule[1](v):
            raise ConfigError(_message(f"trainer.{key}", v, rule[0]))
    for key in ("max_epochs", "val_check_interval", "log_every_n_steps"):
        if key not in values:
            raise ConfigError(f"trainer.{key} is missing from the config")


# -- roles ---------------------------------------------------------------------------------------
def role(key: str) -> str:
    """The role of a dotted config key (see the module docstring); undeclared keys (an init
    parameter, an optimizer or Trainer argument) determine the result unless declared otherwise.
    """
    parts = key.split(".")
    if parts[0] == "trainer" and len(parts) == 2:
        rule = TRAINER_RULES.get(parts[1])
        return rule[2] if rule else RESULT
    schema: Any = TrainConf
    for part in parts:
        if not is_dataclass(schema):
            return RESULT
        f = {f.name: f for f in fields(schema)}.get(part)
        if f is None:
            return RESULT
        if f.metadata.get("role", RESULT) != RESULT:
            return f.metadata["role"]
        schema = _SECTIONS.get(f.type)
    return RESULT


# -- the rules between fields --------------------------------------------------------------------
def training_set_size(cfg: Mapping[str, Any]) -> int | None:
    """Images the training + validation split is made from (None: not known before loading)."""
    from initlab.data import MNIST_SIZES

    data = cfg["data"]
    if data["name"] == "mnist":
        return MNIST_SIZES["train"]
    return data["synthetic_train"]


def _cross_checks(cfg: Mapping[str, Any]) -> None:
    from initlab.data import DATASET_NAMES, IMAGE_PIXELS, NUM_CLASSES
    from initlab.mlp import ACTIVATIONS, NORMS, min_train_batch

    model, data = cfg["model"], cfg["data"]
    _check_choice("norm.name", cfg["norm"]["name"], NORMS)
    _check_choice("model.activation", model["activation"], list(ACTIVATIONS))
    _check_choice("data.name", data["name"], DATASET_NAMES)
    if model["hidden_sizes"] is not None and model["width"] is not None:
        raise ConfigError("model.hidden_sizes and model.width are both set: give one of them")
    if model["input_size"] != IMAGE_PIXELS:
        raise ConfigError(
            f"model.input_size={model['input_size']} must be {IMAGE_PIXELS}: "
            f"data.name={data['name']} has 28x28 images"
        )
    if model["num_classes"] != NUM_CLASSES:
        raise ConfigError(
            f"model.num_classes={model['num_classes']} must be {NUM_CLASSES}: "
            f"data.name={data['name']} has {NUM_CLASSES} classes"
        )
    n_train = training_set_size(cfg)
    if n_train is not None and data["val_size"] >= n_train:
        raise ConfigError(
            f"data.val_size={data['val_size']} must be smaller than the "
            f"{n_train} training images it is split from"
        )
    if data["batch_size"] < min_train_batch(cfg["norm"]["name"]):
        raise ConfigError(
            f"data.batch_size={data['batch_size']} must be at least "
            f"{min_train_batch(cfg['norm']['name'])} with norm={cfg['norm']['name']} "
            "(batch statistics need two samples)"
        )
    init_batch = cfg["init"].get("batch_size")  # a data-dependent init's batch (lsuv)
    if _int(init_batch) and init_batch < min_train_batch(cfg["norm"]["name"]):
        raise ConfigError(
            f"init.batch_size={init_batch} must be at least 2 with norm={cfg['norm']['name']}: "
            f"init={cfg['init']['name']} runs the network in training mode on that batch"
        )
    if "trainer" in cfg:
        _check_schedule(cfg, n_train)


def _check_schedule(cfg: Mapping[str, Any], n_train: int | None) -> None:
    trainer, data = cfg["trainer"], cfg["data"]
    every = trainer.get("val_check_interval")
    per_epoch = trainer.get("check_val_every_n_epoch") is not None
    if per_epoch and _int(every) and n_train is not None:
        from initlab.data import batch_count
        from initlab.mlp import min_train_batch

        min_batch = min_train_batch(cfg["norm"]["name"])
        batches = batch_count(n_train - data["val_size"], data["batch_size"], min_batch)
        limit = trainer.get("limit_train_batches")
        if _int(limit):
            batches = min(batches, limit)
        elif isinstance(limit, float):
            batches = max(1, int(batches * limit))
        if every > batches:
            raise ConfigError(
                f"trainer.val_check_interval={every} must be at most the {batches} training "
                "steps of an epoch when trainer.check_val_every_n_epoch is set (or set "
                "check_val_every_n_epoch=null to count it across epochs)"
            )
    _steps_per_execution(cfg)


def _steps_per_execution(cfg: Mapping[str, Any]) -> None:
    """'auto', or a positive integer that divides a step-counted validation interval."""
    k = cfg["steps_per_execution"]
    if k in ("auto", 1):
        return
    trainer = cfg["trainer"]
    every = trainer.get("val_check_interval")
    per_epoch = trainer.get("check_val_every_n_epoch") is not None
    if _int(every) and not per_epoch and every % k:
        raise ConfigError(
            f"steps_per_execution={k} must divide trainer.val_check_interval={every} "
            "(validation happens between blocks of steps), or be auto"
        )
    if not (every is None or every == 1.0 or (_int(every) and not per_epoch)):
        raise ConfigError(
            f"steps_per_execution={k} needs trainer.val_check_interval in steps (an integer, "
            f"with check_val_every_n_epoch=null) or 1.0, not {every!r}: set it to 1 or auto"
        )


# -- entry points --------------------------------------------------------------------------------
_SECTIONS: dict[str, type] = {
    c.__name__: c
    for c in (
        ModelConf,
        NormConf,
        DataConf,
        LoggerConf,
        DiagnosticsConf,
        CheckpointConf,
        PropagateSection,
    )  # fmt: skip
}


def validate(cfg: Mapping[str, Any]) -> None:
    """Raise ConfigError for the first problem of a composed train config (``hydra`` ignored)."""
    _check_dataclass(TrainConf, cfg, "", extra=("hydra",))
    _check_init(cfg["init"])
    _check_optimizer(cfg["optimizer"])
    _check_trainer(cfg["trainer"])
    _cross_checks(cfg)


def validate_propagate(cfg: Mapping[str, Any]) -> None:
    """Raise ConfigError for the first problem of a composed propagate config."""
    _check_dataclass(PropagateConf, cfg, "", extra=("hydra",))
    _check_init(cfg["init"])
    _cross_checks(cfg)


def allowed(key: str) -> str | None:
    """What the dotted ``key`` allows, for a message about a value Hydra refused as it composed
    (None: not a declared field)."""
    parts = key.split(".")
    if len(parts) == 2 and parts[0] in ("trainer", "optimizer", "init"):
        rules = {"trainer": TRAINER_RULES, "optimizer": OPTIMIZER_RULES, "init": INIT_RULES}
        rule = rules[parts[0]].get(parts[1])
        return rule[0] if rule else None
    schema: Any = TrainConf
    for i, part in enumerate(parts):
        f = {f.name: f for f in fields(schema)}.get(part) if is_dataclass(schema) else None
        if f is None:
            return None
        if i == len(parts) - 1:
            return f.metadata.get("allowed") or f"of type {f.type}"
        schema = _SECTIONS.get(f.type)
    return None
