"""Reading a sweep: every results.json below a directory, and what each record says.

Accessors that read old records too (steps to a threshold recomputed from the history when the
record lacks it, the AUC likewise) and never trust a field's type.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from initlab.results import (
    CATEGORIES,
    DEFAULT_THRESHOLDS,
    UNREADABLE,
    area_under_val_acc,
    classify_all,
    first_reaching,
    threshold_key,
)


@dataclass
class Unreadable:
    path: Path
    reason: str


def load_runs(sweep_dir: str | Path) -> tuple[list[dict[str, Any]], list[Unreadable]]:
    """Every results.json below ``sweep_dir``: (records, unreadable files), each file classified
    by initlab.results.classify (as the end-of-sweep tally counts them).

    Each record gets ``_path`` (the file) and ``_run`` (its directory relative to ``sweep_dir``).
    A file that cannot be read or parsed (half-written, corrupt) or is not a results record is
    returned as unreadable, with the reason, and never aggregated.
    """
    root = Path(sweep_dir)
    runs, bad = [], []
    for path, _category, record, reason in classify_all(root):
        if record is None:
            bad.append(Unreadable(path, reason or "unreadable"))
            continue
        record["_path"] = path
        record["_run"] = path.parent.relative_to(root).as_posix() or "."
        runs.append(record)
    return runs, bad


def category_counts(runs: Sequence[Mapping[str, Any]], n_unreadable: int) -> Counter:
    """The tally of load_runs' answer (its records, and how many files were unreadable) by
    category (initlab.results.CATEGORIES), every category a key: what
    initlab.results.count_results (the end-of-sweep tally) says of the same files."""
    out: Counter = Counter({c: 0 for c in CATEGORIES})
    out.update(r["status"] for r in runs)
    out[UNREADABLE] += n_unreadable
    return out


def get(obj: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(k)
    return obj


def number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def as_key(threshold: Any) -> str | None:
    """threshold_key of a threshold or key; None when it is not a number in (0, 1)."""
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        return None
    return threshold_key(t) if 0 < t < 1 else None


def recorded_steps(record: Mapping[str, Any]) -> dict[str, float | None] | None:
    """The run's own steps_to_val_acc, keys normalised by threshold_key ("0.9" -> "0.90") and
    keys that are not thresholds dropped; None when the record has no such object."""
    steps = record.get("steps_to_val_acc")
    if not isinstance(steps, Mapping):
        return None
    out = {}
    for k, v in steps.items():
        key = as_key(k)
        if key is not None:
            out[key] = v if number(v) is not None else None  # an int stays an int (the CSV)
    return out


def validations(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The validations of a record that have a step and a val accuracy."""
    history = record.get("history")
    if not isinstance(history, list):
        return []
    return [
        h
        for h in history
        if isinstance(h, Mapping)
        and number(h.get("step")) is not None
        and number(h.get("val_acc")) is not None
    ]


def report_thresholds(runs: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """The val-accuracy thresholds of the report (keys as threshold_key writes them, sorted by
    value): the union of the runs' steps_to_val_acc keys, or DEFAULT_THRESHOLDS when no run
    has one (records older than the field)."""
    keys: set[str] = set()
    for r in runs:
        keys.update(recorded_steps(r) or ())
    if not keys:
        keys = {threshold_key(t) for t in DEFAULT_THRESHOLDS}
    return tuple(sorted(keys, key=float))


def steps_to(
    record: Mapping[str, Any], thresholds: Iterable[float | str] | None = None
) -> dict[str, float | None] | None:
    """The run's steps to each val-accuracy threshold: its recorded steps_to_val_acc, plus, for
    each of ``thresholds`` it did not record (a record older than the field, or written with
    other thresholds), the step recomputed from its history. None when the run has neither (a
    failed run); a threshold it has no value for is absent from the answer."""
    recorded = recorded_steps(record)
    history = record.get("history")
    validated = isinstance(history, list) and len(history) > 0
    if recorded is None and not validated:
        return None
    if thresholds is None:
        thresholds = recorded if recorded else DEFAULT_THRESHOLDS
    out = dict(recorded or {})
    missing = [k for k in (as_key(t) for t in thresholds) if k is not None and k not in out]
    if missing and validated:
        out.update(first_reaching(validations(record), [float(k) for k in missing], "step"))
    return out


def pct(key: str) -> str:
    """A threshold key as a percentage, exactly: "0.95" -> "95", "0.975" -> "97.5"."""
    try:
        return format((Decimal(key) * 100).normalize(), "f")
    except (InvalidOperation, ValueError):
        return str(key)


def auc(record: Mapping[str, Any]) -> float | None:
    """auc_val_acc, or computed from the history for records written before the field."""
    if "auc_val_acc" in record:
        return number(record["auc_val_acc"])
    history = validations(record)
    return area_under_val_acc(history) if history else None


def dataset_name(record: Mapping[str, Any]) -> str | None:
    return get(record, "dataset", "name")


def optimizer_setting(record: Mapping[str, Any], key: str) -> Any:
    """The optimizer's ``key`` ("name", "lr", ...) as the run's optimizer stated it; for a run
    that failed before its optimizer was built (``optimizer`` null), as its config asked, so
    that it joins the configuration it was meant for."""
    if isinstance(record.get("optimizer"), Mapping):
        return get(record, "optimizer", key)
    asked = get(record, "config", "optimizer")
    if not isinstance(asked, Mapping):
        return None
    if key == "name":
        target = asked.get("_target_")
        return str(target).rsplit(".", 1)[-1].lower() if target else None
    return asked.get(key)


def run_length(record: Mapping[str, Any]) -> float | None:
    """The optimizer steps the run trained: its last validation's step (one is at the end of
    training); None without a validation."""
    history = validations(record)
    return number(history[-1]["step"]) if history else None
