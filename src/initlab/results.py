"""results.json: the one record of a run that reports, sweeps and users build on.

The schema is documented in docs/results.md. Files are written atomically (temp file in the same
directory, then rename), so a reader never sees half a file. Non-finite floats (a diverged run's
NaN loss) are written as null, keeping the file strict JSON.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

RESULTS_FILE = "results.json"
STATUSES = ("ok", "diverged", "failed")  # what a run writes into results.json
UNREADABLE = "unreadable"  # a results.json that is not a trustworthy record (see classify)
CATEGORIES = (*STATUSES, UNREADABLE)  # what classify says of a results.json file
# 2: fingerprint, dataset identity, the optimizer's hyperparameters; 3: layer_profile
SCHEMA_VERSION = 3
DEFAULT_THRESHOLDS = (0.90, 0.95, 0.97)  # conf/train.yaml's thresholds


def _finite(obj: Any) -> Any:
    """Replace NaN/inf floats by None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Write a file atomically: ``write(f)`` fills a temp file in the same directory, which is
    fsynced and renamed over ``path``. Readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # what open() gives a new file (mkstemp's are 0600)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (NaN/inf written as null)."""
    text = json.dumps(_finite(obj), indent=2, allow_nan=False) + "\n"
    return write_text_atomic(path, text)


def threshold_key(threshold: float | str) -> str:
    """The key of a val-accuracy threshold in steps_to_val_acc / seconds_to_val_acc: two decimals
    when they are exact ("0.90", "0.95"), otherwise the shortest text that reads back as the same
    float ("0.975"), so that distinct thresholds never share a key. Accepts a key too
    ("0.9" and "0.90" both give "0.90")."""
    t = float(threshold)
    two = f"{t:.2f}"
    return two if float(two) == t else repr(t)


def first_reaching(
    history: Sequence[Mapping[str, Any]], thresholds: Iterable[float], key: str = "step"
) -> dict[str, float | None]:
    """For each threshold, ``key`` ("step" or "wall_s") of the first validation whose val_acc
    reached it (None: never). Keyed by ``threshold_key``: "0.90", "0.975"."""
    out: dict[str, float | None] = {}
    for t in thresholds:
        out[threshold_key(t)] = next(
            (h[key] for h in history if h["val_acc"] is not None and h["val_acc"] >= t), None
        )
    return out


def area_under_val_acc(history: Sequence[Mapping[str, Any]]) -> float | None:
    """Mean val accuracy over training steps: the trapezoid area under val_acc(step) from the
    first to the last validation, divided by that step range. In [0, 1]; higher is faster."""
    points = [(h["step"], h["val_acc"]) for h in history if h["val_acc"] is not None]
    if len(points) < 2 or points[-1][0] == points[0][0]:
        return None
    area = sum(
        (s1 - s0) * (a0 + a1) / 2 for (s0, a0), (s1, a1) in zip(points, points[1:], strict=False)
    )
    return area / (points[-1][0] - points[0][0])


def read_results(path: str | Path) -> dict[str, Any]:
    """Read one results.json."""
    with open(path) as f:
        return json.load(f)


def find_results(sweep_dir: str | Path) -> list[Path]:
    """Every results.json below a run or sweep directory, sorted."""
    return sorted(Path(sweep_dir).rglob(RESULTS_FILE))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_record(record: Any) -> str | None:
    """Why ``record`` (a parsed results.json) is not a record to trust; None when it is one.

    A record is a JSON object with a status in STATUSES and an init name; an "ok" or "diverged"
    run also has its ``final`` object with ``test_acc`` (a number; null only when diverged)."""
    if not isinstance(record, dict):
        return f"not a JSON object ({type(record).__name__})"
    status = record.get("status")
    if status not in STATUSES:
        return f"status {status!r} is not one of {', '.join(STATUSES)}"
    if not isinstance(record.get("init"), str) or not record["init"]:
        return "no init name"
    if status in ("ok", "diverged"):
        final = record.get("final")
        if not isinstance(final, dict):
            return f"status {status!r} but no final object"
        if "test_acc" not in final:
            return f"status {status!r} but final has no test_acc"
        test_acc = final["test_acc"]
        if test_acc is not None and not _is_number(test_acc):
            return f"final.test_acc {test_acc!r} is not a number"
        if status == "ok" and test_acc is None:
            return "status 'ok' but final.test_acc is null (only a diverged run lacks one)"
    return None


def classify(path: str | Path) -> tuple[str, dict[str, Any] | None, str | None]:
    """What one results.json is: (category, record, reason), the category one of CATEGORIES.

    ("ok" | "diverged" | "failed", the record, None) for a trustworthy record (check_record);
    ("unreadable", None, why) for a file that cannot be read or parsed (absent, truncated, not
    UTF-8, not JSON) or that parses to something that is not a record. Never raises for a bad
    file: the end-of-sweep tally and the report both count with it, so they always agree."""
    try:
        record = read_results(path)
    except Exception as exc:  # OSError, JSONDecodeError, UnicodeDecodeError, RecursionError, ...
        return UNREADABLE, None, f"{type(exc).__name__}: {exc}"
    reason = check_record(record)
    if reason is not None:
        return UNREADABLE, None, reason
    return record["status"], record, None


def classify_all(
    sweep_dir: str | Path,
) -> Iterator[tuple[Path, str, dict[str, Any] | None, str | None]]:
    """(path, category, record, reason) for every results.json below ``sweep_dir``, sorted."""
    for path in find_results(sweep_dir):
        yield (path, *classify(path))


def count_results(sweep_dir: str | Path) -> Counter:
    """The results.json files below ``sweep_dir`` counted by category: every one of CATEGORIES
    is a key (0 when none)."""
    counts: Counter = Counter({c: 0 for c in CATEGORIES})
    counts.update(category for _, category, _, _ in classify_all(sweep_dir))
    return counts


def format_counts(counts: Mapping[str, int]) -> str:
    """A tally as the sweep's last line and summary.md's header write it, every category named:
    "5 ok, 0 diverged, 1 failed, 0 unreadable"."""
    return ", ".join(f"{counts.get(c, 0)} {c}" for c in CATEGORIES)
