"""The one way initlab replaces a file: atomically, in the file's own directory.

``write_atomic(path, write)`` lets ``write(f)`` fill a temporary file next to ``path`` (same
filesystem: never ``$TMPDIR``), fsyncs it, optionally keeps the file it replaces
(``keep_previous``: a hard link, or a copy where links are not allowed), renames it over
``path`` and fsyncs the directory. At every instant ``path`` is the old file or the new one;
a write that fails (a full disk, a kill, an exception in ``write``) leaves ``path`` as it was and
no temporary file behind. results.json, the report's files, checkpoints, the embedded MNIST
cache, rewritten log files and every figure (``save_figure_atomic``) go through it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

TEMP_SUFFIX = ".partial"
# .<target name>.<pid>.<8 hex digits>.partial: what a write makes before its rename
TEMP_NAME = re.compile(r"^\..+\.\d+\.[0-9a-f]{8}" + re.escape(TEMP_SUFFIX) + r"$")


def temp_name(target: Path) -> Path:
    """Where a write into ``target`` is made before its rename (a hidden sibling)."""
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def fsync_dir(directory: Path) -> None:
    """Make the renames in ``directory`` durable (not possible everywhere: then skipped)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(
    path: str | Path,
    write: Callable[[BinaryIO], Any],
    keep_previous: Path | None = None,
) -> Path:
    """Replace ``path`` with what ``write(f)`` writes, atomically (module docstring);
    ``keep_previous``: where the replaced file is kept (if there was one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temps = [temp_name(path)]
    try:
        with open(temps[0], "xb") as f:  # the permissions a plain open gives (umask)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous is not None and path.is_file():
            temps.append(temp_name(keep_previous))
            try:
                os.link(path, temps[1])
            except OSError:  # a filesystem without hard links: copy it instead
                shutil.copyfile(path, temps[1])
            os.replace(temps[1], keep_previous)
        os.replace(temps[0], path)
        temps.clear()
        fsync_dir(path.parent)
    finally:
        for temp in temps:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
    return path


def remove_stale_temp_files(directory: str | Path) -> list[Path]:
    """Remove the temporary files of writes that were killed from ``directory``; return them.
    Only call it while no write into ``directory`` runs (the run dir's owner does)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for entry in directory.iterdir():
        if TEMP_NAME.match(entry.name) and entry.is_file():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry)
    return removed


def save_figure_atomic(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """A matplotlib figure as PNG at ``path``, atomically (``write_atomic``)."""
    return write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight"))
