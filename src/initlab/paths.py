"""Output paths: job directory names that every filesystem accepts.

A sweep names each job's directory after its overrides (``init=he,norm=batchnorm``). A long
override (``model.hidden_sizes=[...]`` with many layers) makes a name longer than the 255 bytes a
path component may have, and the job could not even be created. ``job_dirname`` keeps short names
as they are and shortens long ones deterministically, with a hash of the whole name, so that a
rerun finds the same directory; the full overrides stay in the job's ``.hydra/overrides.yaml``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

MAX_NAME_BYTES = 255  # a path component on Linux, macOS and Windows filesystems


def safe_name(name: str) -> str:
    """``name`` as one path component inside its parent: a '/' in a value (``key=a/../b``)
    would make nested directories, or climb out of the sweep dir, so it is written %2F (and a
    NUL byte, which no path may hold, %00); '.' and '..' alone become %2E and %2E%2E, and an
    empty name (a job without overrides) "run", so a job never writes into its sweep dir."""
    name = name.replace("/", "%2F").replace("\0", "%00")
    return {".": "%2E", "..": "%2E%2E", "": "run"}.get(name, name)


def job_dirname(name: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    """``name`` as one directory name (``safe_name``) if it fits in ``max_bytes`` bytes (UTF-8),
    else its head and a hash of it all."""
    name = safe_name(name)
    raw = name.encode("utf-8")
    if len(raw) <= max_bytes:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:16]
    suffix = f"...{digest}"
    head = raw[: max_bytes - len(suffix)].decode("utf-8", errors="ignore")
    return head + suffix


def long_components(path: str | Path, max_bytes: int = MAX_NAME_BYTES) -> list[str]:
    """The components of ``path`` longer than ``max_bytes`` bytes (none: every one is fine)."""
    return [p for p in Path(path).parts if len(p.encode("utf-8")) > max_bytes]


def dir_suffix(*parts: str | None) -> str:
    """The end of a run or sweep directory's name after its time: "" without parts, else "_" and
    the parts that are set, comma-joined ("_experiment=depth,debug=smoke", "_init=he"), so that
    TensorBoard names a single run by its overrides and keeps smoke studies apart. ``parts`` are
    "key=value" strings; one whose value is empty or None is left out."""
    kept = [p for p in parts if p and not str(p).endswith(("=", "=None", "=null"))]
    return job_dirname("_" + ",".join(kept), MAX_NAME_BYTES - 9) if kept else ""  # 9: HH-MM-SS_
