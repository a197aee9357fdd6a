"""The MNIST files on disk, read and checked without torch: the preflight checks a data folder
(``initlab.checks.check_data``) before torch loads, and the data module reads through the same
functions, so both judge a file alike.

Every byte parsed is checked first: each file (or its .gz, decompressed in memory) against the
original's size, IDX magic number and md5, and whatever is there instead of a regular file (a
directory, a FIFO, a device, a dangling symlink) is refused, never opened.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from initlab.errors import DataError
from initlab.results import file_kind

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# The original files, decompressed: (bytes, IDX magic number, md5). A .gz is checked by the
# content it decompresses to, so a recompressed copy of the right data passes.
MNIST_CHECKS = {
    "train-images-idx3-ubyte": (47040016, 2051, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (60008, 2049, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (7840016, 2051, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (10008, 2049, "27ae3e4e09519cfbb04c329615203637"),
}
FIX = "delete it so that it is downloaded again, or replace it with the original file"


@dataclass(frozen=True)
class IdxFile:
    """One parsed IDX file: the file read, its array, and the md5 of the bytes parsed."""

    path: Path
    array: np.ndarray
    md5: str


def parse_idx(data: bytes, path: str | Path) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (magic 0x0000 08 ndim, big-endian uint32 dims).

    The header must describe exactly the bytes that follow it; ``path`` only names the file in
    errors.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or data[3] == 0:
        found = int.from_bytes(data[:4], "big")
        raise DataError(f"{path} is not an IDX file of unsigned bytes (magic {found}): {FIX}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} has {len(data)} bytes, shorter than its IDX header: {FIX}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    if len(data) != header + math.prod(dims):
        raise DataError(
            f"{path} has {len(data)} bytes, but its header says {header + math.prod(dims)} "
            f"(dims {dims}): {FIX}"
        )
    # a copy: torch wants writable memory, and the bytes can go
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def _mnist_folder(raw: Path) -> None:
    """``raw`` is a folder (or a symlink to one), or nothing yet; anything else there is refused:
    DataError naming it."""
    if raw.is_dir() or not os.path.lexists(raw):
        return
    kind = file_kind(raw) or "a regular file"
    raise DataError(
        f"{raw} is {kind}, not a folder: delete it (the MNIST files go in a folder of that name), "
        "or set data.root to another folder"
    )


def _mnist_source(raw: Path, name: str) -> Path | None:
    """The file the loader reads for ``name``: the decompressed one, else its .gz, else None
    (nothing there). Whatever is there instead of a regular file (a directory, a FIFO, a device,
    a dangling symlink) is refused, never opened: DataError naming it, what it is, and the fix.
    A symlink to a regular file is that file."""
    _mnist_folder(raw)
    for path in (raw / name, raw / f"{name}.gz"):
        try:
            kind = file_kind(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise DataError(f"{path} cannot be read ({exc.strerror or exc}): {FIX}") from None
        if kind is not None:
            raise DataError(f"{path} is {kind}, not a regular file: {FIX}")
        return path
    return None


def _read_bytes(path: Path, limit: int | None = None) -> bytes:
    """The content of ``path``, decompressed if it is a .gz: at most ``limit`` + 1 bytes of it,
    enough to tell that it is too long (a larger file is never read whole). Only a regular file
    is opened; anything else, or a file that cannot be read, is refused (DataError)."""
    try:
        kind = file_kind(path)
        if kind is not None:
            raise DataError(f"{path} is {kind}, not a regular file: {FIX}")
        # O_NONBLOCK: were it swapped for a FIFO since, opening it would not block (fstat says)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise DataError(f"{path} is not a regular file: {FIX}")
            size = -1 if limit is None else limit + 1
            if path.suffix != ".gz":
                return f.read(size)
            try:
                with gzip.GzipFile(fileobj=f, mode="rb") as g:
                    return g.read(size)
            except (OSError, EOFError, zlib.error) as exc:
                raise DataError(
                    f"{path} cannot be decompressed ({exc}; truncated?): {FIX}"
                ) from None
    except OSError as exc:
        raise DataError(f"{path} cannot be read ({exc.strerror or exc}): {FIX}") from None


def _check_mnist_bytes(path: Path, name: str, data: bytes) -> str:
    """Check the bytes read for MNIST file ``name`` against the original; return their md5."""
    size, magic, md5 = MNIST_CHECKS[name]
    what = f"{path} decompresses to" if path.suffix == ".gz" else f"{path} has"
    if len(data) > size:  # read no further than one byte too many
        raise DataError(f"{what} more than the {size} bytes of the original: {FIX}")
    if len(data) != size:
        short = " (truncated?)" if len(data) < size else ""
        raise DataError(f"{what} {len(data)} bytes, not {size}{short}: {FIX}")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataError(f"{path} has magic number {found}, not {magic}: {FIX}")
    actual = hashlib.md5(data).hexdigest()
    if actual != md5:
        what = f"{path} decompresses to content that" if path.suffix == ".gz" else str(path)
        raise DataError(f"{what} fails its md5 checksum (corrupted): {FIX}")
    return actual


def read_mnist_file(raw: str | Path, name: str) -> IdxFile | None:
    """Read, verify and parse MNIST file ``name`` from the folder ``raw``; None if absent.

    ``raw/<name>`` is read if present, else ``raw/<name>.gz`` decompressed in memory; the exact
    bytes parsed are checked against ``MNIST_CHECKS`` (size, magic number, md5).
    """
    path = _mnist_source(Path(raw), name)
    if path is None:
        return None
    data = _read_bytes(path, MNIST_CHECKS[name][0])
    md5 = _check_mnist_bytes(path, name, data)
    return IdxFile(path, parse_idx(data, path), md5)


def read_idx_file(path: str | Path) -> IdxFile:
    """Read and parse an IDX file (or .gz) that has no reference checksum, e.g. generated."""
    path = Path(path)
    data = _read_bytes(path)
    return IdxFile(path, parse_idx(data, path), hashlib.md5(data).hexdigest())


def verify_mnist(root: str | Path) -> None:
    """Check the MNIST files the loader would read under ``root/MNIST/raw`` against the originals.

    A missing file is fine (it is downloaded, or the fallback applies); a truncated or corrupted
    one, a .gz whose content is not the original's, or something else in a file's place (a
    directory, a FIFO, a device, a dangling symlink: never opened) raises DataError naming it and
    the fix, so no run ever trains on garbage, or falls back because of it.
    """
    raw = Path(root) / "MNIST" / "raw"
    for name in MNIST_FILES:
        path = _mnist_source(raw, name)
        if path is not None:
            _check_mnist_bytes(path, name, _read_bytes(path, MNIST_CHECKS[name][0]))


def mnist_present(root: str | Path) -> bool:
    """Whether all four MNIST files are under ``root/MNIST/raw`` (decompressed or .gz); DataError
    when something else is in a file's place (see ``_mnist_source``)."""
    raw = Path(root) / "MNIST" / "raw"
    return all(_mnist_source(raw, n) is not None for n in MNIST_FILES)
