"""Validating a run's config in one place, before any data is loaded or any file written.

Each problem becomes one ``ConfigError`` line naming the field, the bad value and what is allowed.
Works on any mapping (an OmegaConf DictConfig or plain dicts), so it needs no Hydra.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from initlab.data import DATASET_NAMES
from initlab.inits import DATA_DEPENDENT, INITS
from initlab.mlp import ACTIVATIONS, NORMS


class ConfigError(ValueError):
    """A config value is out of range or of the wrong type."""


def _get(cfg: Mapping[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            raise ConfigError(f"{dotted} is missing from the config")
        node = node[key]
    return node


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _positive_int(cfg: Mapping[str, Any], key: str, optional: bool = False) -> None:
    v = _get(cfg, key)
    if v is None and optional:
        return
    if not _is_int(v) or v <= 0:
        raise ConfigError(f"{key}={v!r} must be a positive integer")


def _one_of(cfg: Mapping[str, Any], key: str, allowed: Any) -> None:
    v = _get(cfg, key)
    if v not in allowed:
        raise ConfigError(f"{key}={v!r} is not one of: {', '.join(map(str, allowed))}")


def validate(cfg: Mapping[str, Any]) -> None:
    """Raise ConfigError for the first invalid field of a composed train config."""
    _one_of(cfg, "init.name", sorted(INITS))
    _one_of(cfg, "norm.name", NORMS)
    _one_of(cfg, "model.activation", list(ACTIVATIONS))
    _one_of(cfg, "data.name", DATASET_NAMES)
    if not _is_int(_get(cfg, "seed")):
        raise ConfigError(f"seed={_get(cfg, 'seed')!r} must be an integer")
    for key in (
        "model.input_size",
        "model.num_classes",
        "data.batch_size",
        "data.eval_batch_size",
        "data.val_size",
        "trainer.max_epochs",
    ):
        _positive_int(cfg, key)
    _positive_int(cfg, "model.depth", optional=True)
    _positive_int(cfg, "model.width", optional=True)
    sizes = _get(cfg, "model.hidden_sizes")
    if sizes is not None and (
        isinstance(sizes, (str, bytes))
        or not len(sizes)
        or not all(_is_int(h) and h > 0 for h in sizes)
    ):
        raise ConfigError(
            f"model.hidden_sizes={list(sizes) if not isinstance(sizes, str) else sizes!r} "
            "must be a non-empty list of positive integers"
        )
    if sizes is not None and _get(cfg, "model.width") is not None:
        raise ConfigError("model.hidden_sizes and model.width are both set: give one of them")
    lr = _get(cfg, "optimizer.lr")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ConfigError(f"optimizer.lr={lr!r} must be a number > 0")
    for t in _get(cfg, "thresholds"):
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < 1:
            raise ConfigError(f"thresholds contains {t!r}: each must be a number in (0, 1)")
    n_train = 60000 if _get(cfg, "data.name") == "mnist" else _get(cfg, "data.synthetic_train")
    if _get(cfg, "data.val_size") >= n_train:
        raise ConfigError(
            f"data.val_size={_get(cfg, 'data.val_size')} must be smaller than the "
            f"{n_train} training images it is split from"
        )
    _init_params(cfg)
    _steps_per_execution(cfg)
    force = cfg.get("force", False)
    if not isinstance(force, bool):
        raise ConfigError(f"force={force!r} must be true or false")


def _steps_per_execution(cfg: Mapping[str, Any]) -> None:
    """'auto', or a positive integer that divides a step-counted validation interval."""
    k = cfg.get("steps_per_execution", "auto")
    if k == "auto":
        return
    if not _is_int(k) or k <= 0:
        raise ConfigError(f"steps_per_execution={k!r} must be a positive integer or auto")
    trainer = _get(cfg, "trainer")
    every = trainer.get("val_check_interval")
    if k == 1:
        return
    per_epoch = trainer.get("check_val_every_n_epoch") is not None
    if _is_int(every) and not per_epoch and every % k:
        raise ConfigError(
            f"steps_per_execution={k} must divide trainer.val_check_interval={every} "
            "(validation happens between blocks of steps), or be auto"
        )
    if not (every is None or every == 1.0 or (_is_int(every) and not per_epoch)):
        raise ConfigError(
            f"steps_per_execution={k} needs trainer.val_check_interval in steps (an integer, "
            f"with check_val_every_n_epoch=null) or 1.0, not {every!r}: set it to 1 or auto"
        )


def _init_params(cfg: Mapping[str, Any]) -> None:
    """Each init parameter has the type of its default in the init function."""
    name = _get(cfg, "init.name")
    fn = DATA_DEPENDENT.get(name, INITS[name])
    defaults = {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.default is not inspect.Parameter.empty
    }
    for key, value in _get(cfg, "init").items():
        default = defaults.get(key)
        if key in ("name", "bias"):
            ok = key == "name" or value is None or _is_number(value)
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            ok = _is_number(value)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        else:
            continue
        if not ok:
            raise ConfigError(f"init.{key}={value!r} must be a {_kind(default, key)}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _kind(default: Any, key: str) -> str:
    if key == "bias":
        return "number (or null: the init's own bias)"
    return "number" if not isinstance(default, str) else "string"
