"""A run's fingerprint: everything that determines its result, compared before a run dir is reused.

Re-running a command in an existing output dir skips a finished run and resumes an unfinished
one. That is only true to the record if the run there is the run asked for: the same settings
(the composed config minus bookkeeping, by the roles declared in :mod:`initlab.config`) and the
same data (the dataset's identity as the loader states it: name, split sizes and the checksums of
the files it read; never the path, which may change while the files do not).

The budget is one number, ``budget.steps`` (``initlab.schedule``: epochs, ``max_steps`` and
``limit_train_batches`` make it), in place of the keys it is made of: two configs that train the
same steps are the same run. It alone may differ when a run is extended or resumed.

The checkpoint stores the whole fingerprint (``fingerprint()``); results.json stores its hash
beside the run's ``config``, ``dataset`` and ``budget``, from which the same fingerprint is
rebuilt (``of_record``). ``differences`` lists what differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from initlab.config import BOOKKEEPING, EXTEND, REPORT, role

FINGERPRINT_VERSION = 2  # 2: the budget in steps, in place of max_epochs / max_steps
BUDGET = "budget.steps"  # the one key an extension or a resume may change
# A plain MLP does not depend on the residual settings: while model.residual is false they are
# left out, so its fingerprint is the one it had before they existed (its run dir is still
# skipped or resumed), and model.branch_layers makes no other run of it.
RESIDUAL_KEYS = ("model.residual", "model.branch_layers")
# Settings left out at the value that draws what the init drew before the setting existed, so
# that those runs keep their fingerprint: mean_field's Gaussian weights (init.weights)
LEFT_OUT_AT = {"init.weights": "gaussian"}


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = list(v) if isinstance(v, tuple) else v
    return out


def determining(cfg: Mapping[str, Any], budget_steps: int | None = None) -> dict[str, Any]:
    """The config keys (dotted) that determine the result, with their values; the keys the
    budget is made of as ``budget.steps`` (when known)."""
    flat = _flatten({k: v for k, v in cfg.items() if k != "hydra"})
    if not flat.get(RESIDUAL_KEYS[0]):
        flat = {k: v for k, v in flat.items() if k not in RESIDUAL_KEYS}
    flat = {k: v for k, v in flat.items() if k not in LEFT_OUT_AT or v != LEFT_OUT_AT[k]}
    out = {k: v for k, v in sorted(flat.items()) if role(k) not in (BOOKKEEPING, REPORT, EXTEND)}
    if budget_steps is not None:
        out[BUDGET] = int(budget_steps)
    return out


def _sha256(config: Mapping[str, Any], dataset: Mapping[str, Any] | None) -> str:
    text = json.dumps(
        {"version": FINGERPRINT_VERSION, "config": config, "dataset": dataset},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprint(
    cfg: Mapping[str, Any], dataset: Mapping[str, Any] | None, budget_steps: int | None = None
) -> dict[str, Any]:
    """``{"sha256", "config", "dataset"}`` of a plain config, the data module's identity and
    the budget in steps (the run's ``Schedule.total_steps``)."""
    config = determining(cfg, budget_steps)
    dataset = dict(dataset) if dataset is not None else None
    return {"sha256": _sha256(config, dataset), "config": config, "dataset": dataset}


def of_record(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The fingerprint of a results.json record, rebuilt from its ``config`` and ``dataset``;
    None when the record has none (written by an initlab before fingerprints)."""
    sha, cfg, budget = record.get("fingerprint"), record.get("config"), record.get("budget")
    if not isinstance(sha, str) or not isinstance(cfg, Mapping):
        return None
    steps = budget.get("steps") if isinstance(budget, Mapping) else None
    return {"sha256": sha, "config": determining(cfg, steps), "dataset": record.get("dataset")}


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (old value, new value)}`` for every config key and dataset field that differs."""
    out: dict[str, tuple[Any, Any]] = {}
    a, b = old.get("config") or {}, new.get("config") or {}
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            out[key] = (a.get(key, "<absent>"), b.get(key, "<absent>"))
    da = _flatten(old.get("dataset") or {}, "dataset.")
    db = _flatten(new.get("dataset") or {}, "dataset.")
    # the dataset's name and sizes first: they say more than a file's checksum
    for key in sorted(set(da) | set(db), key=lambda k: (k.startswith("dataset.files."), k)):
        if da.get(key, "<absent>") != db.get(key, "<absent>"):
            out[key] = (da.get(key, "<absent>"), db.get(key, "<absent>"))
    if not out and old.get("sha256") != new.get("sha256"):
        out["fingerprint"] = (old.get("sha256"), new.get("sha256"))  # another initlab version
    return out


def extension_only(diff: Mapping[str, tuple[Any, Any]]) -> bool:
    """Whether the only difference is a budget that grew."""
    if set(diff) != {BUDGET}:
        return False
    old, new = diff[BUDGET]
    return isinstance(old, int) and isinstance(new, int) and new > old


def budget_only(diff: Mapping[str, tuple[Any, Any]]) -> bool:
    """Whether nothing but the budget differs (a resume may change it)."""
    return set(diff) <= {BUDGET}


def describe(diff: Mapping[str, tuple[Any, Any]], limit: int = 4) -> str:
    """``optimizer.lr 0.01 in the run, 0.5 now; ...`` for a one-line message."""
    items = [f"{k} {old!r} in the run, {new!r} now" for k, (old, new) in diff.items()]
    text = "; ".join(items[:limit])
    if len(items) > limit:
        text += f"; and {len(items) - limit} more"
    return text
