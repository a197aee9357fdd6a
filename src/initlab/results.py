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
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

RESULTS_FILE = "results.json"
STATUSES = ("ok", "diverged", "failed")
SCHEMA_VERSION = 1


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


def first_reaching(
    history: Sequence[Mapping[str, Any]], thresholds: Iterable[float], key: str = "step"
) -> dict[str, float | None]:
    """For each threshold, ``key`` ("step" or "wall_s") of the first validation whose val_acc
    reached it (None: never). Keys are the thresholds with two decimals: "0.90"."""
    out: dict[str, float | None] = {}
    for t in thresholds:
        out[f"{t:.2f}"] = next(
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
