"""results.json: the one record of a run that reports, sweeps and users build on.

The schema is documented in docs/results.md. Files are written atomically (temp file in the same
directory, then rename), so a reader never sees half a file. Non-finite floats (a diverged run's
NaN loss) are written as null, keeping the file strict JSON.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from initlab.atomic import write_atomic as _write_atomic

RESULTS_FILE = "results.json"
STATUSES = ("ok", "diverged", "failed")  # what a run writes into results.json
UNREADABLE = "unreadable"  # a results.json that is not a trustworthy record (see classify)
CATEGORIES = (*STATUSES, UNREADABLE)  # what classify says of a results.json file
# 2: fingerprint, dataset identity, the optimizer's hyperparameters; 3: layer_profile;
# 4: train_eval_loss/acc (final, history) and runtime, both optional (so 3 is read as well)
SCHEMA_VERSION = 4
READ_VERSIONS = (3, SCHEMA_VERSION)  # the schema versions this initlab reads (RECORD below)
# runtime's keys that decide a run's numbers beyond its config (initlab.runtime); the report
# says when a study's runs differ in one
RUNTIME_DECIDING = (
    "device",
    "torch_threads",
    "deterministic_algorithms",
    "cudnn_deterministic",
    "cudnn_benchmark",
    "float32_matmul_precision",
    "torch_version",
)
MAX_RESULTS_BYTES = 64 * 2**20  # a results.json larger is refused unread (a run writes ~100 KiB)
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


def write_atomic(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Write a file atomically (initlab.atomic.write_atomic): readers see the old file or the
    new one, never half."""
    return _write_atomic(path, write)


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


def branch_layers_of(record: Mapping[str, Any]) -> int | None:
    """A run's residual branch length (None: a plain MLP), as its record says the net was
    built; a record from before it said so: as its config asked (none before residual nets)."""
    if "branch_layers" in record:
        return record["branch_layers"]
    config = record.get("config")
    model = config.get("model") if isinstance(config, Mapping) else None
    if not isinstance(model, Mapping) or not model.get("residual"):
        return None
    return model.get("branch_layers")


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


# -- reading a file that may not be what its name says ---------------------------------------
_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class RefusedFile(ValueError):
    """A file a reader refuses: not a regular file, too large, or not strict JSON. The message
    is the reason, one line."""


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def file_kind(path: str | Path) -> str | None:
    """What ``path`` is when it is not a regular file (or a symlink to one), told from its
    metadata alone, never opening it (a FIFO would block the reader forever, a device such as
    /dev/zero never ends): "a directory", "a FIFO", "a character device", "a block device", "a
    socket", "a symlink to /dev/zero, a character device", "a dangling symlink to <target>";
    None for a regular file. FileNotFoundError when nothing is there, not even a symlink."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return f"a dangling symlink to {target}"
        except OSError as exc:  # a loop, or a path through a file
            return f"a symlink to {target} that cannot be followed ({exc.strerror})"
        return None if stat.S_ISREG(st.st_mode) else f"a symlink to {target}, {_kind(st.st_mode)}"
    return None if stat.S_ISREG(st.st_mode) else _kind(st.st_mode)


def read_regular(path: str | Path, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes``; RefusedFile
    (one line, the reason) otherwise, without opening what is not a regular file and without
    reading a file that is too large. OSError when it cannot be read (FileNotFoundError: none
    there); ``what`` names the file in the reason ("a results.json")."""
    kind = file_kind(path)
    if kind is not None:
        raise RefusedFile(f"not a regular file ({kind})")
    # O_NONBLOCK: were it swapped for a FIFO since, opening it would not block (fstat says)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise RefusedFile(f"not a regular file ({_kind(st.st_mode)})")
        size = st.st_size
        data = f.read(max_bytes + 1) if size <= max_bytes else b""
    if size > max_bytes or len(data) > max_bytes:
        size = max(size, len(data))
        limit = f"{max_bytes // 2**20} MiB" if max_bytes % 2**20 == 0 else f"{max_bytes:,} bytes"
        raise RefusedFile(f"too large: {size:,} bytes, more than the {limit} {what} may have")
    return data


def _not_strict(constant: str) -> Any:
    raise RefusedFile(f"not strict JSON: {constant} (initlab writes a non-finite number as null)")


def read_json(path: str | Path, max_bytes: int = MAX_RESULTS_BYTES, what: str = "file") -> Any:
    """Parse ``path`` as strict JSON (UTF-8; NaN and Infinity refused), read with
    ``read_regular``. Raises RefusedFile (the reason), OSError, UnicodeDecodeError or
    json.JSONDecodeError (both ValueError), or RecursionError (nested too deep)."""
    text = read_regular(path, max_bytes, what).decode("utf-8")
    return json.loads(text, parse_constant=_not_strict)


def read_results(path: str | Path) -> Any:
    """Read one results.json as JSON, refusing what is not a regular file of at most
    MAX_RESULTS_BYTES and what is not strict JSON (see read_json). Checks nothing of what it
    holds: ``classify`` does (check_record)."""
    return read_json(path, MAX_RESULTS_BYTES, "a results.json")


def find_named(root: str | Path, name: str) -> list[Path]:
    """Every entry called ``name`` below ``root`` (itself included), sorted: whatever it is, a
    dangling symlink or a FIFO too (Path.rglob leaves out a dangling symlink: a results.json
    that would go uncounted), so that a reader can say what it is. Symlinks to directories are
    not followed (a loop would never end)."""
    found = [
        Path(dirpath) / name
        for dirpath, dirnames, filenames in os.walk(root)
        if name in filenames or name in dirnames
    ]
    return sorted(found)


def find_results(sweep_dir: str | Path) -> list[Path]:
    """Every results.json below a run or sweep directory, sorted (see find_named)."""
    return find_named(sweep_dir, RESULTS_FILE)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# -- the record's schema ---------------------------------------------------------------------
# Declared once: every field a record may have, its type, whether null is allowed, which
# statuses' records must have it, and a number's range. check_record checks a record against
# it, so every reader that uses classify (the tally, the report, the dashboard, a rerun's
# previous_run) gets only records it can trust. docs/results.md describes the same fields.
FINISHED = frozenset({"ok", "diverged"})  # a run that trained: the whole record
EVERY = frozenset(STATUSES)  # a failed run (or a launcher's record of a lost job) holds less


@dataclass(frozen=True)
class Field:
    """One field: its ``type`` (a name of TYPES, or ListOf / MapOf / Obj), whether it may be
    null, whether it must be there (at the top level: the statuses whose records must have it;
    inside an object: True or False), and the range of a number."""

    type: Any
    nullable: bool = False
    required: bool | frozenset[str] = False
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class ListOf:
    """A JSON list of ``item``s (``nonempty``: at least one)."""

    item: Field
    nonempty: bool = False


@dataclass(frozen=True)
class MapOf:
    """A JSON object of ``value``s; its keys thresholds in (0, 1) when ``thresholds``."""

    value: Field
    thresholds: bool = False


@dataclass(frozen=True, eq=False)
class Obj:
    """A JSON object whose fields ``fields`` declares (other keys are allowed, and ignored)."""

    fields: Mapping[str, Field]


_INT_BOUND = 2**63  # a JSON integer larger than this is no step, seed or size (nor a float)


def _int(v: Any) -> bool:
    return type(v) is int and -_INT_BOUND < v < _INT_BOUND


def _number(v: Any) -> bool:
    return _int(v) or (type(v) is float and math.isfinite(v))


# type name -> (test, what a value of it is)
TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int": (_int, "an integer"),
    "number": (_number, "a number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "nonempty str": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "scalar": (lambda v: isinstance(v, (str, bool)) or _number(v), "a string, number, bool"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "object": (lambda v: isinstance(v, dict), "an object"),
}

_LOSS = Field("number", nullable=True)
_ACC = Field("number", nullable=True, low=0, high=1)
_SECONDS = Field("number", nullable=True, low=0)
_PROFILE_AT = Field(
    Obj(
        {
            "step": Field("int", required=True, low=0),
            "layers": Field(ListOf(Field("str")), required=True),
            "preact_q": Field(ListOf(_LOSS), required=True),
            "grad_preact_q": Field(ListOf(_LOSS), required=True),
        }
    )
)
RECORD = Obj(
    {
        "schema_version": Field("int", required=EVERY),
        "status": Field("str", required=EVERY),
        "error": Field("str", nullable=True, required=frozenset({"failed"})),
        "recorded_by": Field("str"),
        "study": Field("str", nullable=True),
        "init": Field("nonempty str", required=EVERY),
        "init_params": Field(MapOf(Field("scalar", nullable=True)), required=FINISHED),
        "norm": Field("str", required=FINISHED),
        "activation": Field("str", required=FINISHED),
        "depth": Field("int", required=FINISHED, low=1),
        "hidden_sizes": Field(ListOf(Field("int", low=1), nonempty=True), required=FINISHED),
        # a residual net's branch length, as built (null: a plain MLP; absent in older records)
        "branch_layers": Field("int", nullable=True, low=1),
        "seed": Field("int", required=FINISHED, low=0),
        "optimizer": Field(
            Obj(
                {
                    "name": Field("str", required=True),
                    "lr": Field("number"),
                    "momentum": Field("number"),
                }
            ),
            nullable=True,
            required=FINISHED,
        ),
        "batch_size": Field("int", required=FINISHED, low=1),
        "max_epochs": Field("int", nullable=True, required=FINISHED),
        # the schedule's budget (initlab.schedule); absent in records before it
        "budget": Field(
            Obj(
                {
                    "steps": Field("int", required=True, low=1),
                    "steps_per_epoch": Field("int", required=True, low=1),
                    "epochs": Field("int", required=True, low=1),
                }
            ),
            nullable=True,
        ),
        "output_dir": Field("str"),
        "dataset": Field(
            Obj(
                {
                    "name": Field("str", required=True),
                    "train": Field("int", low=0),
                    "val": Field("int", low=0),
                    "test": Field("int", low=0),
                    "train_eval": Field("int", low=1),
                    "files": Field(MapOf(Field("str"))),
                }
            ),
            nullable=True,
            required=FINISHED,
        ),
        "fingerprint": Field("str"),
        "diverged_at_step": Field("int", nullable=True, low=0),
        "final": Field(
            Obj(
                {
                    "train_loss": _LOSS,
                    "train_acc": _ACC,
                    "val_loss": _LOSS,
                    "val_acc": _ACC,
                    "train_eval_loss": _LOSS,
                    "train_eval_acc": _ACC,
                    "test_loss": _LOSS,
                    # null only for a diverged run (check_record)
                    "test_acc": Field("number", nullable=True, required=True, low=0, high=1),
                }
            ),
            required=FINISHED,
        ),
        "history": Field(
            ListOf(
                Field(
                    Obj(
                        {
                            "step": Field("int", required=True, low=0),
                            "epoch": Field("int", low=0),
                            "val_loss": _LOSS,
                            "val_acc": Field("number", nullable=True, required=True, low=0, high=1),
                            "train_loss": _LOSS,
                            "train_eval_loss": _LOSS,
                            "train_eval_acc": _ACC,
                            "wall_s": _SECONDS,
                        }
                    )
                )
            ),
            required=FINISHED,
        ),
        "steps_to_val_acc": Field(MapOf(Field("int", nullable=True, low=0), thresholds=True)),
        "seconds_to_val_acc": Field(MapOf(_SECONDS, thresholds=True)),
        "auc_val_acc": _ACC,
        "runtime": Field(
            Obj(
                {
                    "device": Field("str"),
                    "torch_threads": Field("int", low=1),
                    "interop_threads": Field("int", low=1),
                    "deterministic_algorithms": Field("bool"),
                    "cudnn_deterministic": Field("bool"),
                    "cudnn_benchmark": Field("bool"),
                    "float32_matmul_precision": Field("str"),
                    "torch_version": Field("str"),
                }
            ),
            nullable=True,
        ),
        "layer_profile": Field(Obj({"first": _PROFILE_AT, "last": _PROFILE_AT}), nullable=True),
        # the input-output Jacobian's spectrum at step 0 (initlab.propagation.spectrum.run_section)
        "jacobian": Field(
            Obj(
                {
                    **{k: Field("number", nullable=True) for k in ("m1", "var", "spread", "s_max")},
                    "inputs": Field("int", low=0),
                    "predicted": Field(
                        Obj({k: Field("number", nullable=True) for k in ("m1", "spread", "var")}),
                        nullable=True,
                    ),
                }
            ),
            nullable=True,
        ),
        "timing": Field(
            Obj(
                {
                    "wall_s": _SECONDS,
                    "train_s": _SECONDS,
                    "val_s": _SECONDS,
                    "test_s": _SECONDS,
                    "train_samples": Field("int", nullable=True, low=0),
                    "train_samples_per_s": _SECONDS,
                }
            )
        ),
        "config": Field("object", required=FINISHED),
    }
)


def _show(v: Any) -> str:
    """A value as a reason shows it: a string quoted, anything else as JSON, cut at 40."""
    text = repr(v) if isinstance(v, str) else json.dumps(v, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _what(f: Field) -> str:
    """What a value of ``f`` is, for a reason: "an integer >= 1", "a list or null"."""
    t = f.type
    if isinstance(t, ListOf):
        what = "a non-empty list" if t.nonempty else "a list"
    elif isinstance(t, (MapOf, Obj)):
        what = "an object"
    else:
        what = TYPES[t][1]
        if f.low is not None and f.high is not None:
            what += f" in [{f.low:g}, {f.high:g}]"
        elif f.low is not None:
            what += f" >= {f.low:g}"
    return what + (" or null" if f.nullable else "")


def _threshold(key: str) -> bool:
    try:
        return 0 < float(key) < 1
    except ValueError:
        return False


def check_value(value: Any, f: Field, path: str) -> str | None:
    """Why ``value`` (at ``path`` in its document: "final.test_acc", "history[3]"; "" for
    the document itself) is not a value of ``f``; None when it is one. One line."""
    wrong = f"{path} {_show(value)} is not {_what(f)}".lstrip()
    if value is None:
        return None if f.nullable else wrong
    t = f.type
    if isinstance(t, ListOf):
        if not isinstance(value, list) or (t.nonempty and not value):
            return wrong
        return next(
            (w for i, v in enumerate(value) if (w := check_value(v, t.item, f"{path}[{i}]"))), None
        )
    if isinstance(t, MapOf):
        if not isinstance(value, dict):
            return wrong
        for k, v in value.items():
            if t.thresholds and not _threshold(k):
                return f"{path} has a key {_show(k)} that is not a threshold in (0, 1)"
            if why := check_value(v, t.value, f"{path}.{k}"):
                return why
        return None
    if isinstance(t, Obj):
        if not isinstance(value, dict):
            return wrong
        for name, sub in t.fields.items():
            if name not in value:
                if sub.required:
                    return f"{path} has no {name}" if path else f"no {name}"
            elif why := check_value(value[name], sub, f"{path}.{name}" if path else name):
                return why
        return None
    test, _ = TYPES[t]
    if not test(value):
        return wrong
    if (f.low is not None and value < f.low) or (f.high is not None and value > f.high):
        return wrong
    return None


def check_record(record: Any) -> str | None:
    """Why ``record`` (a parsed results.json) is not a record to trust; None when it is one.

    A record is a JSON object of a schema_version this initlab reads (READ_VERSIONS), with a
    status in STATUSES and an init name; an "ok" or "diverged" run also has its ``final``
    object with ``test_acc`` (a number; null only when diverged). Then every field is checked
    against RECORD: its type, null where allowed, its range, the fields the status requires;
    and the fields that say the same thing agree (depth and hidden_sizes)."""
    if not isinstance(record, dict):
        return f"not a JSON object ({type(record).__name__})"
    version = record.get("schema_version", ...)
    if not (_int(version) and version in READ_VERSIONS):
        found = "no schema_version" if version is ... else f"schema_version {_show(version)}"
        reads = ", ".join(map(str, READ_VERSIONS))
        return (
            f"{found}: this initlab reads schema_version {reads} only (a record written by "
            "another initlab: report it with that one, or run it again with this one)"
        )
    status = record.get("status")
    if status not in STATUSES:
        return f"status {status!r} is not one of {', '.join(STATUSES)}"
    if not isinstance(record.get("init"), str) or not record["init"]:
        return "no init name"
    if status in FINISHED:
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
    for name, f in RECORD.fields.items():
        if name not in record:
            if isinstance(f.required, frozenset) and status in f.required:
                return f"status {status!r} but no {name}"
        elif why := check_value(record[name], f, name):
            return why
    depth, hidden = record.get("depth"), record.get("hidden_sizes")
    if depth is not None and hidden is not None and depth != len(hidden):
        return f"depth {depth} but hidden_sizes {_show(hidden)} has {len(hidden)} layers"
    return None


def classify(path: str | Path) -> tuple[str, dict[str, Any] | None, str | None]:
    """What one results.json is: (category, record, reason), the category one of CATEGORIES.

    ("ok" | "diverged" | "failed", the record, None) for a trustworthy record (check_record);
    ("unreadable", None, why) for a file that is not a regular file (a FIFO, a directory, a
    device, a dangling symlink: never opened), is too large, cannot be read or parsed (absent,
    truncated, not UTF-8, not strict JSON), or parses to something that is not a record of this
    schema. Never raises for a bad file: the end-of-sweep tally and the report both count with
    it, so they always agree."""
    try:
        record = read_results(path)
    except RefusedFile as exc:  # not a regular file, too large, not strict JSON
        return UNREADABLE, None, str(exc)
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
