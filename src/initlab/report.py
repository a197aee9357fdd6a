"""The report of a sweep: every results.json below a directory, aggregated over seeds.

``write_report(sweep_dir)`` writes into ``sweep_dir``:

- ``summary.csv``: one row per run, every field of its results.json flattened (``final.test_acc``,
  ``config.optimizer.lr``, ...; the per-validation ``history`` is summarised by its length), plus
  one row per unreadable results.json (status ``unreadable``);
- ``summary.md``: a header (dataset, network, optimizer, run tally), then one row per
  configuration (everything that defines a run except its seed) with mean ± sample std over
  seeds, best test accuracy first; for the ``tutorial`` study, the tutorial's claim beside what
  was measured; then the failed and diverged runs, missing seeds and unreadable files;
- plots: ``val_acc_vs_step.png``, ``test_acc_heatmap.png``, ``depth.png`` (when depth varies),
  ``propagation.png`` (when ``propagation.json`` files are below the directory).

Every file is written atomically (temp file in the same directory, fsync, rename), so a crash
never leaves a half file. A results.json that cannot be parsed is listed as unreadable, never
trusted. Pure standard library + numpy + matplotlib (imported only to plot); no Hydra.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from initlab.results import (
    CATEGORIES,
    DEFAULT_THRESHOLDS,
    STATUSES,
    UNREADABLE,
    area_under_val_acc,
    classify_all,
    first_reaching,
    format_counts,
    read_results,
    threshold_key,
    write_atomic,
    write_text_atomic,
)

log = logging.getLogger(__name__)

SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
VAL_PLOT = "val_acc_vs_step.png"
HEATMAP_PLOT = "test_acc_heatmap.png"
DEPTH_PLOT = "depth.png"
PROPAGATION_PLOT = "propagation.png"
PROPAGATION_FILE = "propagation.json"  # as initlab.propagation writes it (not imported: torch)
SPEED_THRESHOLD = "0.95"  # the tutorial's "fast": steps to 95% val accuracy, when recorded

# Display order of inits and norms (the README's order); unknown names follow, sorted.
INIT_ORDER = (
    "zero",
    "constant",
    "small_uniform",
    "small_normal",
    "large_uniform",
    "large_normal",
    "xavier",
    "xavier_normal",
    "he",
    "he_uniform",
    "kaiming",
    "tutorial_he",
    "lecun",
    "orthogonal",
    "default",
    "lsuv",
    "zero_identity",
)
NORM_ORDER = ("none", "batchnorm", "layernorm", "weightnorm")

# The tutorial's qualitative claims, and the orders they imply (higher = better / faster).
TUTORIAL_STUDY = "tutorial"
TUTORIAL_CLAIMS = {
    "zero": "low",
    "small_uniform": "medium, slow",
    "small_normal": "medium, slow",
    "xavier": "high, fast",
    "he": "very high, fastest",
    "tutorial_he": "very high, fastest (its He code)",
    "large_uniform": "no ranking: may vanish early, may escape local optima",
    "large_normal": "no ranking: may vanish early, may escape local optima",
}
NOT_IN_TUTORIAL = "(not in the tutorial)"
ACC_LEVEL = {
    "zero": 0,
    "small_uniform": 1,
    "small_normal": 1,
    "xavier": 2,
    "he": 3,
    "tutorial_he": 3,
}
SPEED_LEVEL = {"small_uniform": 1, "small_normal": 1, "xavier": 2, "he": 3, "tutorial_he": 3}


def how_to_read(keys: Sequence[str], example: str | None = None) -> str:
    """The paragraph under the header, for the thresholds ``keys`` (report_thresholds); its
    example column is ``example`` (default: 95% when it is one of them, else the highest)."""
    if example is None:
        example = SPEED_THRESHOLD if SPEED_THRESHOLD in keys else keys[-1]
    listed = ", ".join(f"{pct(k)}%" for k in keys)
    return (
        "One row per configuration (the runs that differ only in their seed), best mean test "
        "accuracy first. Each cell is mean ± sample standard deviation (ddof=1) over the seeds "
        "that have a value; a single value is written alone, and (k/n) says when only k of the n "
        f"runs have one. *steps to {pct(example)}%* is the first optimizer step at which "
        f"validation accuracy reached {pct(example)}%, averaged over the seeds that reached it, "
        "with (k/n) how many did; *never* means none did (one column per threshold in the runs' "
        f"results.json: {listed}). *val AUC* is the mean validation accuracy over training (area "
        "under the val-accuracy curve per step): higher means it learned faster and better. A "
        "diverged run (its loss became NaN) or a failed one (an error) is counted in *status* "
        "and listed below the table, never dropped."
    )


# -- atomic writes -----------------------------------------------------------------------------
def save_figure_atomic(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """``fig.savefig`` as PNG into a temp file in the same directory, then rename."""
    return write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight"))


# -- loading -----------------------------------------------------------------------------------
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


# -- small accessors ---------------------------------------------------------------------------
def _get(obj: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(k)
    return obj


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _key(threshold: Any) -> str | None:
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
        key = _key(k)
        if key is not None:
            out[key] = v if _number(v) is not None else None  # an int stays an int (the CSV)
    return out


def _history(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The validations of a record that have a step and a val accuracy."""
    history = record.get("history")
    if not isinstance(history, list):
        return []
    return [
        h
        for h in history
        if isinstance(h, Mapping)
        and _number(h.get("step")) is not None
        and _number(h.get("val_acc")) is not None
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
    missing = [k for k in (_key(t) for t in thresholds) if k is not None and k not in out]
    if missing and validated:
        out.update(first_reaching(_history(record), [float(k) for k in missing], "step"))
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
        return _number(record["auc_val_acc"])
    history = _history(record)
    return area_under_val_acc(history) if history else None


def dataset_name(record: Mapping[str, Any]) -> str | None:
    return _get(record, "dataset", "name")


# -- configurations ----------------------------------------------------------------------------
def _params_label(params: Any) -> str:
    if not isinstance(params, Mapping) or not params:
        return "-"
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))


def _fmt_num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e6:
        return str(v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def optimizer_setting(record: Mapping[str, Any], key: str) -> Any:
    """The optimizer's ``key`` ("name", "lr", ...) as the run's optimizer stated it; for a run
    that failed before its optimizer was built (``optimizer`` null), as its config asked, so
    that it joins the configuration it was meant for."""
    if isinstance(record.get("optimizer"), Mapping):
        return _get(record, "optimizer", key)
    asked = _get(record, "config", "optimizer")
    if not isinstance(asked, Mapping):
        return None
    if key == "name":
        target = asked.get("_target_")
        return str(target).rsplit(".", 1)[-1].lower() if target else None
    return asked.get(key)


# The fields that define a configuration, as (column, getter) on a record; the seed excluded.
DEFINING: tuple[tuple[str, Callable[[Mapping[str, Any]], Any]], ...] = (
    ("study", lambda r: r.get("study")),
    ("init", lambda r: r.get("init")),
    ("init params", lambda r: _params_label(r.get("init_params"))),
    ("norm", lambda r: r.get("norm")),
    ("activation", lambda r: r.get("activation")),
    ("depth", lambda r: len(r["hidden_sizes"]) if r.get("hidden_sizes") else r.get("depth")),
    ("widths", lambda r: "-".join(map(str, r.get("hidden_sizes") or [])) or None),
    ("optimizer", lambda r: optimizer_setting(r, "name")),
    ("lr", lambda r: optimizer_setting(r, "lr")),
    ("momentum", lambda r: optimizer_setting(r, "momentum")),
    ("batch", lambda r: r.get("batch_size")),
    ("epochs", lambda r: r.get("max_epochs")),
    ("dataset", dataset_name),
)
FIELDS = tuple(name for name, _ in DEFINING)


@dataclass
class Stat:
    """A metric over the runs of one configuration."""

    values: list[float]  # the runs that have a value
    n: int  # the runs that could have one

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof=1); None with fewer than two values."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None


@dataclass
class Config:
    """The runs that share everything but the seed."""

    key: dict[str, Any]
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def seeds(self) -> list[Any]:
        return sorted((r.get("seed") for r in self.runs), key=lambda s: (s is None, str(s)))

    @property
    def status_counts(self) -> Counter:
        return Counter(r["status"] for r in self.runs)

    def final(self, name: str) -> Stat:
        values = [_number(_get(r, "final", name)) for r in self.runs]
        return Stat([v for v in values if v is not None], len(self.runs))

    def auc(self) -> Stat:
        values = [auc(r) for r in self.runs]
        return Stat([v for v in values if v is not None], len(self.runs))

    def steps(self, threshold: str) -> Stat:
        """Steps to ``threshold`` (a key, "0.95") over the runs that reached it; n = the runs
        with a value or a "never" for it (failed runs have neither)."""
        key = threshold_key(threshold)
        records = [s for s in (steps_to(r, [key]) for r in self.runs) if s and key in s]
        values = [s[key] for s in records]
        return Stat([v for v in values if v is not None], len(records))


def group_configs(runs: Iterable[Mapping[str, Any]]) -> list[Config]:
    """Group runs by their defining fields (all but the seed).

    A run that failed before loading its data has no dataset name; it joins the configuration
    that is otherwise the same when those runs agree on one dataset.
    """
    rest_fields = [(n, g) for n, g in DEFINING if n != "dataset"]
    by_rest: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in runs:
        rest = tuple(json.dumps(g(r), sort_keys=True, default=str) for _, g in rest_fields)
        by_rest.setdefault(rest, []).append(r)
    configs = []
    for group in by_rest.values():
        names = {dataset_name(r) for r in group} - {None}
        fallback = next(iter(names)) if len(names) == 1 else None
        by_data: dict[Any, Config] = {}
        for r in group:
            data = dataset_name(r) or fallback
            if data not in by_data:
                key = {n: g(r) for n, g in rest_fields}
                key["dataset"] = data
                by_data[data] = Config(key)
            by_data[data].runs.append(r)
        configs.extend(by_data.values())
    return configs


def _order(value: Any, order: Sequence[str]) -> tuple:
    return (order.index(value), "") if value in order else (len(order), str(value))


def sort_key(config: Config) -> tuple:
    """Mean test accuracy, best first; configurations without one last."""
    mean = config.final("test_acc").mean
    k = config.key
    return (
        mean is None,
        -(mean or 0.0),
        _order(k["init"], INIT_ORDER),
        _order(k["norm"], NORM_ORDER),
        (k["depth"] is None, k["depth"] or 0),
        json.dumps(k, sort_keys=True, default=str),
    )


def varying_fields(configs: Sequence[Config]) -> list[str]:
    """The defining fields shown as table columns: init and norm always, the others when they
    vary across the configurations (init params: when one init has several)."""

    def distinct(name: str) -> set:
        return {json.dumps(c.key[name], default=str) for c in configs}

    shown = []
    for name in FIELDS:
        if name in ("init", "norm"):
            shown.append(name)
        elif name == "init params":
            per_init: dict[str, set] = {}
            for c in configs:
                per_init.setdefault(c.key["init"], set()).add(c.key[name])
            if any(len(v) > 1 for v in per_init.values()):
                shown.append(name)
        elif name == "widths":
            if len(distinct("widths")) > len(distinct("depth")):
                shown.append(name)
        elif len(distinct(name)) > 1:
            shown.append(name)
    return shown


# -- formatting --------------------------------------------------------------------------------
def fmt_stat(stat: Stat, digits: int = 3) -> str:
    """The "mean ± std" (sample std); a lone value alone; "(k/n)" when k of n runs have a value."""
    if not stat.values:
        return "-" if stat.n == 0 else f"- (0/{stat.n})"
    text = f"{stat.mean:.{digits}f}"
    if stat.std is not None:
        text += f" ± {stat.std:.{digits}f}"
    if len(stat.values) < stat.n:
        text += f" ({len(stat.values)}/{stat.n})"
    return text


def fmt_steps(stat: Stat) -> str:
    """Steps as "1100 ± 100 (3/3)": mean ± std over the seeds that reached the threshold, and
    how many did; "never (0/3)" when none did; "-" when no run has a validation record."""
    if stat.n == 0:
        return "-"
    if not stat.values:
        return f"never (0/{stat.n})"
    text = f"{stat.mean:.0f}"
    if stat.std is not None:
        text += f" ± {stat.std:.0f}"
    return f"{text} ({len(stat.values)}/{stat.n})"


def fmt_status(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts.get(s))


def _cell(value: Any) -> str:
    text = "-" if value is None else _fmt_num(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _ordinal_rank(values: Sequence[Any], i: int, better: Callable[[Any, Any], bool]) -> int:
    return 1 + sum(better(v, values[i]) for j, v in enumerate(values) if j != i)


# -- the tutorial's claims ---------------------------------------------------------------------
def speed_threshold(runs: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> str:
    """The threshold at which speed is judged (the tutorial's verdict, the depth plot): 0.95
    when it is one of ``keys``, else the highest of ``keys`` that some run reached, else (no
    run reached any) the lowest."""
    if SPEED_THRESHOLD in keys:
        return SPEED_THRESHOLD
    reached = set()
    for r in runs:
        reached.update(k for k, v in (steps_to(r, keys) or {}).items() if v is not None)
    candidates = [k for k in keys if k in reached]
    return candidates[-1] if candidates else keys[0]


def speed_note(runs: Sequence[Mapping[str, Any]], keys: Sequence[str], key: str) -> str:
    """Why speed is judged at ``key`` when it is not 95% ("" when it is)."""
    if key == SPEED_THRESHOLD:
        return ""
    reached = any((steps_to(r, [key]) or {}).get(key) is not None for r in runs)
    why = "the highest threshold some run reached" if reached else "no run reached any threshold"
    listed = ", ".join(f"{pct(k)}%" for k in keys)
    return (
        f"95% is not among these runs' thresholds ({listed}): speed is judged at {pct(key)}% "
        f"({why})"
    )


def _speed(config: Config, key: str = SPEED_THRESHOLD) -> tuple[float, float] | None:
    """(fraction of seeds that reached ``key``, mean steps to it): faster is a higher fraction,
    then fewer steps. None without validation records."""
    st = config.steps(key)
    if st.n == 0:
        return None
    return (len(st.values) / st.n, st.mean if st.values else math.inf)


def _faster(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool | None:
    """Is speed a faster than b? None when they cannot be told apart (missing, or neither
    reached the threshold)."""
    if a is None or b is None or (a[0] == 0 and b[0] == 0):
        return None
    if a[0] != b[0]:
        return a[0] > b[0]
    return a[1] < b[1] if a[1] != b[1] else None


def _verdict(
    config: Config,
    peers: Sequence[Config],
    level: Mapping[str, int],
    compare: Callable[[Config, Config], bool | None],
    noise: Callable[[Config, Config], bool],
    words: tuple[str, str],
) -> str | None:
    """Does the measured order agree with the tutorial's (``level``) against every peer the
    tutorial ranks differently? None if the tutorial ranks nothing here."""
    mine = level.get(config.key["init"])
    if mine is None:
        return None
    wrong, noisy, judged = [], True, 0
    for other in peers:
        theirs = level.get(other.key["init"])
        if other is config or theirs is None or theirs == mine:
            continue
        better = compare(config, other)
        if better is None:
            continue
        judged += 1
        if better != (mine > theirs):
            wrong.append(f"{words[0] if mine > theirs else words[1]} {other.key['init']}")
            noisy = noisy and noise(config, other)
    if not judged:
        return "n/a"
    if not wrong:
        return "holds"
    return ("no, within seed std: " if noisy else "no: ") + ", ".join(wrong)


def _acc_better(a: Config, b: Config) -> bool | None:
    ma, mb = a.final("test_acc").mean, b.final("test_acc").mean
    if ma is None or mb is None or ma == mb:
        return None
    return ma > mb


def _acc_noise(a: Config, b: Config) -> bool:
    sa, sb = a.final("test_acc"), b.final("test_acc")
    spread = max(s for s in (sa.std, sb.std, 0.0) if s is not None)
    return spread > 0 and abs(sa.mean - sb.mean) <= spread


def _speed_noise(a: Config, b: Config, key: str = SPEED_THRESHOLD) -> bool:
    sa, sb = a.steps(key), b.steps(key)
    if not sa.values or not sb.values or len(sa.values) != sa.n or len(sb.values) != sb.n:
        return False
    spread = max(s for s in (sa.std, sb.std, 0.0) if s is not None)
    return spread > 0 and abs(sa.mean - sb.mean) <= spread


def tutorial_columns(
    configs: Sequence[Config], speed_key: str | None = None
) -> dict[int, tuple[str, str, str]]:
    """For each configuration of the tutorial study (by id): (the tutorial's claim, the measured
    ranks of test accuracy and of speed to ``speed_key`` val accuracy (default: speed_threshold
    of the configurations' runs) among the configurations that differ only in their init, and
    whether the claim holds)."""
    if speed_key is None:
        runs = [r for c in configs for r in c.runs]
        speed_key = speed_threshold(runs, report_thresholds(runs))
    groups: dict[str, list[Config]] = {}
    for c in configs:
        if c.key["study"] != TUTORIAL_STUDY:
            continue
        rest = {k: v for k, v in c.key.items() if k not in ("init", "init params")}
        groups.setdefault(json.dumps(rest, sort_keys=True, default=str), []).append(c)
    out = {}
    for peers in groups.values():
        accs = [p.final("test_acc").mean for p in peers]
        speeds = [_speed(p, speed_key) for p in peers]
        for i, c in enumerate(peers):
            n = len(peers)
            if accs[i] is None:
                measured = "no test acc"
            else:
                rank = _ordinal_rank(accs, i, lambda a, b: a is not None and a > b)
                measured = f"acc #{rank}/{n}"
            if speeds[i] is None or speeds[i][0] == 0:
                measured += f", never {pct(speed_key)}%" if speeds[i] is not None else ""
            else:
                rank = _ordinal_rank(speeds, i, lambda a, b: bool(_faster(a, b)))
                measured += f", speed #{rank}/{n}"
            acc = _verdict(c, peers, ACC_LEVEL, _acc_better, _acc_noise, ("below", "above"))
            speed = _verdict(
                c,
                peers,
                SPEED_LEVEL,
                lambda a, b: _faster(_speed(a, speed_key), _speed(b, speed_key)),
                lambda a, b: _speed_noise(a, b, speed_key),
                ("slower than", "faster than"),
            )
            parts = [f"acc: {acc}"] if acc else []
            parts += [f"speed: {speed}"] if speed else []
            claim = TUTORIAL_CLAIMS.get(c.key["init"], NOT_IN_TUTORIAL)
            out[id(c)] = (claim, measured, "; ".join(parts) or "-")
    return out


# -- the summary -------------------------------------------------------------------------------
def _common(values: Iterable[Any], fmt: Callable[[Any], str] = _fmt_num) -> str:
    distinct = sorted({json.dumps(v, sort_keys=True, default=str) for v in values})
    if len(distinct) == 1:
        return fmt(json.loads(distinct[0]))
    shown = ", ".join(fmt(json.loads(v)) for v in distinct[:6])
    return f"varies ({shown}{', ...' if len(distinct) > 6 else ''})"


def _dataset_text(d: Any) -> str:
    if not isinstance(d, Mapping):
        return "?"
    sizes = [f"{d[k]:,} {k}" for k in ("train", "val", "test") if isinstance(d.get(k), int)]
    return f"{d.get('name')} ({' / '.join(sizes)} images)" if sizes else str(d.get("name"))


def header_lines(runs: Sequence[Mapping[str, Any]], n_unreadable: int) -> list[str]:
    """Dataset, network, optimizer and the run tally ("varies" where runs differ)."""
    with_data = [r for r in runs if isinstance(r.get("dataset"), Mapping)]
    dataset = _common((r["dataset"] for r in with_data), _dataset_text) if with_data else "?"
    inputs = _common(_get(r, "config", "model", "input_size") or "?" for r in runs)
    classes = _common(_get(r, "config", "model", "num_classes") or "?" for r in runs)
    widths = _common("-".join(map(str, r.get("hidden_sizes") or [])) or "?" for r in runs)
    activation = _common(r.get("activation") for r in runs)
    if widths.startswith("varies"):
        depths = _common(len(r.get("hidden_sizes") or []) for r in runs)
        network = f"MLP {inputs}-(hidden widths vary; depth {depths})-{classes}, {activation}"
    else:
        network = f"MLP {inputs}-{widths}-{classes}, {activation}"
    opt = _common(str(optimizer_setting(r, "name") or "?").upper() for r in runs)
    lr = _common(optimizer_setting(r, "lr") for r in runs)
    momentum = _common(optimizer_setting(r, "momentum") for r in runs)
    batch = _common(r.get("batch_size") for r in runs)
    epochs = _common(r.get("max_epochs") for r in runs)
    studies = _common(r.get("study") or "none (plain train.py runs)" for r in runs)
    return [
        f"- **Study**: {studies}",
        f"- **Dataset**: {dataset}",
        f"- **Network**: {network}",
        f"- **Optimizer**: {opt} lr {lr} momentum {momentum}, batch {batch}, {epochs} epochs",
        runs_line(category_counts(runs, n_unreadable)),
    ]


def runs_line(tally: Mapping[str, int]) -> str:
    """The header's tally of the results.json files, in the words of the sweep's last line:
    "- **Runs**: 9 ok, 1 diverged, 1 failed, 1 unreadable (12 results.json; ...)"."""
    total = sum(tally.get(c, 0) for c in CATEGORIES)
    text = f"- **Runs**: {format_counts(tally)} ({total} results.json"
    if tally.get(UNREADABLE):
        text += "; the unreadable ones are listed below and never aggregated"
    return text + ")"


def metrics(keys: Sequence[str]) -> list[tuple[str, Callable[[Config], str]]]:
    """The metric columns of the main table: (name, cell) with one "steps to X%" column per
    threshold key."""
    return [
        ("train acc", lambda c: fmt_stat(c.final("train_acc"))),
        ("test acc", lambda c: fmt_stat(c.final("test_acc"))),
        *((f"steps to {pct(k)}%", lambda c, k=k: fmt_steps(c.steps(k))) for k in keys),
        ("val AUC", lambda c: fmt_stat(c.auc())),
    ]


def summary_table(
    configs: Sequence[Config], keys: Sequence[str] | None = None, speed_key: str | None = None
) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the main table (configs in the order given); ``keys``: the
    thresholds (default: report_thresholds of the configurations' runs)."""
    runs = [r for c in configs for r in c.runs]
    keys = report_thresholds(runs) if keys is None else keys
    speed_key = speed_threshold(runs, keys) if speed_key is None else speed_key
    shown = varying_fields(configs)
    tutorial = tutorial_columns(configs, speed_key)
    columns = metrics(keys)
    header = [*shown, "n", "status", *(name for name, _ in columns)]
    if tutorial:
        header += ["tutorial says", "measured", "claim holds?"]
    rows = []
    for c in configs:
        row = [_fmt_num(c.key[f]) if c.key[f] is not None else "-" for f in shown]
        row += [str(len(c.runs)), fmt_status(c.status_counts)]
        row += [fn(c) for _, fn in columns]
        if tutorial:
            row += list(tutorial.get(id(c), ("", "", "")))
        rows.append(row)
    return header, rows


def _label(config: Config, shown: Sequence[str]) -> str:
    return ", ".join(f"{f}={_fmt_num(config.key[f])}" for f in shown)


def render_summary(
    sweep_dir: Path,
    runs: Sequence[Mapping[str, Any]],
    unreadable: Sequence[Unreadable],
    configs: Sequence[Config],
    plots: Sequence[tuple[str, str]],
    plot_errors: Sequence[str],
) -> str:
    """summary.md's text (deterministic: no timestamps, so rewriting it changes nothing)."""
    lines = [f"# Sweep report: {sweep_dir.name}", ""]
    lines += [f"`{sweep_dir}`", ""]
    if not runs:
        lines += ["No readable results.json below this directory.", ""]
        if unreadable:
            lines += [runs_line(category_counts(runs, len(unreadable))), ""]
    else:
        keys = report_thresholds(runs)
        speed_key = speed_threshold(runs, keys)
        lines += header_lines(runs, len(unreadable))
        lines += ["", f"**How to read this.** {how_to_read(keys, speed_key)}", ""]
        header, rows = summary_table(configs, keys, speed_key)
        lines += _md_table(header, rows)
        lines.append("")
        if any(c.key["study"] == TUTORIAL_STUDY for c in configs):
            note = speed_note(runs, keys, speed_key)
            lines += [
                "*tutorial says*: the tutorial's qualitative claim for that init (final "
                "performance, convergence speed). *measured*: the rank of mean test accuracy "
                f"and of speed to {pct(speed_key)}% val accuracy (more seeds reaching it, then "
                "fewer steps) among the rows that differ only in their init"
                + (f"; {note}" if note else "")
                + ". *claim holds?*: whether the "
                "measured order agrees with the tutorial's against every init it ranks "
                'differently (zero < small < Xavier < He); "within seed std" when the '
                "disagreement is smaller than a seed-to-seed standard deviation.",
                "",
            ]
    bad = [r for r in runs if r["status"] != "ok"]
    if bad:
        lines += ["## Failed and diverged runs", ""]
        rows = []
        for r in sorted(bad, key=lambda r: (r["status"], r["_run"])):
            what = r.get("error") or ""
            if r["status"] == "diverged":
                step = r.get("diverged_at_step")
                what = f"loss not finite at step {step}" if step is not None else "loss not finite"
            rows.append([r["_run"], r["status"], r.get("seed"), what])
        lines += _md_table(["run", "status", "seed", "what happened"], rows)
        lines.append("")
    missing = missing_seeds(configs)
    if missing:
        shown = varying_fields(configs)
        lines += ["## Missing seeds", ""]
        lines += [
            f"- {_label(c, shown)}: seeds {', '.join(map(str, seeds))} missing "
            f"(has {', '.join(map(str, c.seeds))})"
            for c, seeds in missing
        ]
        lines.append("")
    if unreadable:
        lines += ["## Unreadable results.json (not aggregated)", ""]
        lines += _md_table(
            ["file", "why"],
            ([_rel(u.path, sweep_dir), u.reason] for u in unreadable),
        )
        lines.append("")
    if plots or plot_errors:
        lines += ["## Plots", ""]
        for name, caption in plots:
            lines += [f"**{caption}** (`{name}`)", "", f"![{caption}]({name})", ""]
        lines += [f"- {e}" for e in plot_errors]
        if plot_errors:
            lines.append("")
    lines += [
        f"One row per run, every field: `{SUMMARY_CSV}`. Regenerate: "
        f"`python scripts/report.py {sweep_dir}`.",
        "",
    ]
    return "\n".join(lines)


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def missing_seeds(configs: Sequence[Config]) -> list[tuple[Config, list[Any]]]:
    """Configurations that lack some of the seeds the sweep ran (the union over all runs)."""
    every = {s for c in configs for s in c.seeds if s is not None}
    out = []
    for c in configs:
        lack = sorted(every - set(c.seeds), key=str)
        if lack:
            out.append((c, lack))
    return out


# -- summary.csv -------------------------------------------------------------------------------
def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys; lists as JSON text; the history by its length."""
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            key = f"{prefix}{k}"
            if key == "history":
                out["history.n"] = len(v) if isinstance(v, list) else None
            elif isinstance(v, Mapping) and v:
                out.update(flatten(v, key + "."))
            elif isinstance(v, (list, tuple, Mapping)):
                out[key] = json.dumps(v, default=str)
            else:
                out[key] = v
    return out


FIRST_COLUMNS = (
    "run",
    "status",
    "error",
    "study",
    "init",
    "norm",
    "activation",
    "depth",
    "hidden_sizes",
    "seed",
    "final.train_acc",
    "final.val_acc",
    "final.test_acc",
    "final.test_loss",
    # then steps_to_val_acc.<key> for each threshold (report_thresholds), then:
    "auc_val_acc",
)


def summary_csv(runs: Sequence[Mapping[str, Any]], unreadable: Sequence[Unreadable], root: Path):
    """summary.csv's text: one row per run (every field flattened), unreadable files last (status
    "unreadable", the reason in ``error``). ``steps_to_val_acc.<key>``: one column per threshold
    of the report (report_thresholds), from the record or recomputed from its history."""
    thresholds = report_thresholds(runs)
    rows = []
    for r in sorted(runs, key=lambda r: r["_run"]):
        row = flatten({k: v for k, v in r.items() if not k.startswith("_")})
        row = {k: v for k, v in row.items() if not k.startswith("steps_to_val_acc")}
        row["run"] = r["_run"]
        row["auc_val_acc"] = auc(r)
        steps = steps_to(r, thresholds) or {}
        for t in thresholds:
            row[f"steps_to_val_acc.{t}"] = steps.get(t)
        rows.append(row)
    for u in unreadable:
        rows.append({"run": _rel(u.path.parent, root), "status": UNREADABLE, "error": u.reason})
    keys = {k for row in rows for k in row}
    first = list(FIRST_COLUMNS)
    at = first.index("auc_val_acc")
    first[at:at] = [f"steps_to_val_acc.{t}" for t in thresholds]
    columns = [c for c in first if c in keys or c in ("run", "status")]
    columns += sorted(keys - set(columns))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


# -- plots -------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(inits: Iterable[str]) -> dict[str, str]:
    names = sorted(set(inits), key=lambda n: _order(n, INIT_ORDER))
    palette = [f"C{i}" for i in range(10)]
    if len(names) > 10:
        import matplotlib

        cmap = matplotlib.colormaps["tab20"]
        palette = [cmap(i % 20) for i in range(len(names))]
    return {n: palette[i % len(palette)] for i, n in enumerate(names)}


def _panels(configs: Sequence[Config], exclude: Sequence[str]) -> dict[str, list[Config]]:
    """Configurations grouped by the varying fields not in ``exclude`` (one panel each)."""
    fields = [f for f in varying_fields(configs) if f not in exclude and f != "init params"]
    fields = [f for f in fields if len({str(c.key[f]) for c in configs}) > 1]
    panels: dict[str, list[Config]] = {}
    for c in sorted(configs, key=lambda c: tuple(_panel_order(f, c.key[f]) for f in fields)):
        panels.setdefault(_label(c, fields) or "all runs", []).append(c)
    return panels


def _panel_order(name: str, value: Any) -> tuple:
    if name == "norm":
        return _order(value, NORM_ORDER)
    if isinstance(value, (int, float)):
        return (value, "")
    return (math.inf, str(value))


def _line_label(c: Config, with_params: bool) -> str:
    label = c.key["init"]
    if with_params:
        label += f" ({c.key['init params']})"
    counts = c.status_counts
    extra = [f"{counts[s]} {s}" for s in ("diverged", "failed") if counts.get(s)]
    return label + (f" [{', '.join(extra)}]" if extra else "")


def _grid(plt, n: int, width: float = 6.0, height: float = 4.2, max_cols: int = 4):
    cols = min(max_cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained"
    )
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)[:n]


def curve(runs: Sequence[Mapping[str, Any]]):
    """(steps, mean, min, max) of val accuracy over the runs with a history, on the union of
    their steps; each step averages the runs that validated there."""
    import numpy as np

    by_step: dict[float, list[float]] = {}
    for r in runs:
        for h in _history(r):
            by_step.setdefault(_number(h["step"]), []).append(_number(h["val_acc"]))
    steps = sorted(by_step)
    vals = [by_step[s] for s in steps]
    return (
        np.array(steps),
        np.array([statistics.fmean(v) for v in vals]),
        np.array([min(v) for v in vals]),
        np.array([max(v) for v in vals]),
    )


def plot_val_curves(configs: Sequence[Config], path: Path) -> Path:
    """Val accuracy against step, one line per init (mean over seeds, min-max band), one panel
    per value of the other varying fields (norm, depth, ...); a zoomed row below (acc >= 0.9)."""
    plt = _pyplot()
    shown = varying_fields(configs)
    with_params = "init params" in shown
    panels = _panels(configs, exclude=("init",))
    colors = _colors(c.key["init"] for c in configs)
    curves = {id(c): curve(c.runs) for c in configs}
    zoom = any(len(v[1]) and v[1].max() >= 0.9 for v in curves.values())
    n = len(panels)
    cols = min(4, n)
    rows = math.ceil(n / cols) * (2 if zoom else 1)
    fig, axes = plt.subplots(
        rows, cols, figsize=(6.2 * cols, 4.4 * rows), squeeze=False, layout="constrained"
    )
    band_rows = math.ceil(n / cols)
    for ax in axes.flat:
        ax.set_visible(False)
    for i, (title, group) in enumerate(panels.items()):
        r, col = divmod(i, cols)
        targets = [(axes[r][col], False)]
        if zoom:
            targets.append((axes[r + band_rows][col], True))
        for ax, zoomed in targets:
            ax.set_visible(True)
            no_curve, below = [], []
            for c in sorted(group, key=lambda c: _order(c.key["init"], INIT_ORDER)):
                steps, mean, lo, hi = curves[id(c)]
                label = _line_label(c, with_params)
                if not len(steps):
                    no_curve.append(label)
                    continue
                if zoomed and hi.max() < 0.9:
                    below.append(f"{label} (max {hi.max():.3f})")
                    continue
                color = colors[c.key["init"]]
                seeds = len([x for x in c.runs if _history(x)])
                ax.plot(steps, mean, color=color, lw=1.8, label=f"{label}, {seeds} seed(s)")
                ax.fill_between(steps, lo, hi, color=color, alpha=0.2, lw=0)
                for x in c.runs:  # where a diverged run stopped
                    h = _history(x)
                    if x["status"] == "diverged" and h:
                        ax.plot(h[-1]["step"], h[-1]["val_acc"], "x", color=color, ms=9, mew=2)
            notes = ["no curve: " + "; ".join(no_curve)] if no_curve else []
            notes += ["all below 0.9: " + "; ".join(below)] if below else []
            if notes:
                ax.text(
                    0.02,
                    0.02,
                    "\n".join(notes),
                    transform=ax.transAxes,
                    fontsize=8,
                    color="firebrick",
                    va="bottom",
                    bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none"},
                )
            ax.set_ylim((0.9, 1.0) if zoomed else (0.0, 1.0))
            ax.set_xlabel("optimizer step")
            ax.set_ylabel("validation accuracy" + (" (zoom)" if zoomed else ""))
            ax.set_title(title + ("  (zoom: 0.9-1.0)" if zoomed else ""), fontsize=10)
            ax.grid(True, alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8, loc="best")
    fig.suptitle(
        "Validation accuracy during training: line = mean over seeds, band = min-max over "
        "seeds, x = a diverged run's last point",
        fontsize=11,
    )
    try:
        return save_figure_atomic(fig, path)
    finally:
        plt.close(fig)


def _cell_text(c: Config | None) -> tuple[str, float | None]:
    """(annotation, mean test acc) of a heatmap cell."""
    if c is None:
        return "not run", None
    st = c.final("test_acc")
    if not st.values:
        counts = c.status_counts
        return ("failed" if counts.get("failed") == len(c.runs) else fmt_status(counts)), None
    text = f"{st.mean:.3f}"
    if st.std is not None:
        text += f"\n± {st.std:.3f}"
    bad = fmt_status({s: v for s, v in c.status_counts.items() if s != "ok"})
    text += f"\nn={len(c.runs)}" + (f"\n{bad}" if bad else "")
    return text, st.mean


def plot_heatmap(configs: Sequence[Config], path: Path) -> Path:
    """Mean test accuracy, init (rows) x norm (columns); one panel per value of the other
    varying fields (depth, ...)."""
    import numpy as np

    plt = _pyplot()
    shown = varying_fields(configs)
    with_params = "init params" in shown
    panels = _panels(configs, exclude=("init", "norm"))
    fig, axes = _grid(plt, len(panels), width=5.8, height=4.8, max_cols=3)

    def row_of(c: Config) -> str:
        return c.key["init"] + (f" ({c.key['init params']})" if with_params else "")

    image = None
    for ax, (title, group) in zip(axes, panels.items(), strict=True):
        rows = sorted({row_of(c) for c in group}, key=lambda r: _order(r.split(" ")[0], INIT_ORDER))
        cols = sorted({c.key["norm"] for c in group}, key=lambda n: _order(n, NORM_ORDER))
        cells = {(row_of(c), c.key["norm"]): c for c in group}
        grid = np.full((len(rows), len(cols)), np.nan)
        for i, r in enumerate(rows):
            for j, n in enumerate(cols):
                text, mean = _cell_text(cells.get((r, n)))
                if mean is not None:
                    grid[i, j] = mean
                dark = mean is not None and mean < 0.6
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if dark else ("black" if mean is not None else "firebrick"),
                )
        image = ax.imshow(
            np.ma.masked_invalid(grid), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto"
        )
        ax.set_xticks(range(len(cols)), cols)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel("normalization")
        ax.set_ylabel("init")
        if len(panels) > 1:
            ax.set_title(title, fontsize=10)
        ax.set_facecolor("#eeeeee")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="mean test accuracy")
    fig.suptitle("Test accuracy: mean ± sample std over the n seeds of each cell", fontsize=11)
    try:
        return save_figure_atomic(fig, path)
    finally:
        plt.close(fig)


def _errorbar_vs_depth(ax: Any, points: list[tuple[Any, Any]], color: Any, label: str) -> None:
    """Mean ± std against depth, for the (depth, Stat) points that have values."""
    points = [(d, s) for d, s in points if s.values]
    if points:
        ax.errorbar(
            [d for d, _ in points],
            [s.mean for _, s in points],
            yerr=[s.std or 0.0 for _, s in points],
            color=color,
            marker="o",
            capsize=3,
            label=label,
        )


def plot_depth(configs: Sequence[Config], path: Path, speed_key: str | None = None) -> Path:
    """Test accuracy and steps to ``speed_key`` val accuracy (default: speed_threshold of the
    runs: 95% when recorded) against depth, one line per init; one column per value of the other
    varying fields (norm, ...)."""
    runs = [r for c in configs for r in c.runs]
    keys = report_thresholds(runs)
    key = speed_threshold(runs, keys) if speed_key is None else speed_key
    level = f"{pct(key)}%"
    note = speed_note(runs, keys, key)
    plt = _pyplot()
    shown = varying_fields(configs)
    with_params = "init params" in shown
    panels = _panels(configs, exclude=("init", "depth", "widths"))
    colors = _colors(c.key["init"] for c in configs)
    n = len(panels)
    fig, axes = plt.subplots(2, n, figsize=(6.0 * n, 8.4), squeeze=False, layout="constrained")
    depths = sorted({c.key["depth"] for c in configs if c.key["depth"] is not None})
    for j, (title, group) in enumerate(panels.items()):
        ax_acc, ax_steps = axes[0][j], axes[1][j]
        lines: dict[str, list[Config]] = {}
        for c in group:
            label = c.key["init"] + (f" ({c.key['init params']})" if with_params else "")
            lines.setdefault(label, []).append(c)
        never_y = None
        reached = [s for c in group for s in c.steps(key).values]
        if reached:
            never_y = max(reached) * 1.15
        for label in sorted(lines, key=lambda lb: _order(lines[lb][0].key["init"], INIT_ORDER)):
            cs = sorted(lines[label], key=lambda c: c.key["depth"] or 0)
            color = colors[cs[0].key["init"]]
            _errorbar_vs_depth(
                ax_acc, [(c.key["depth"], c.final("test_acc")) for c in cs], color, label
            )
            steps = [(c.key["depth"], c.steps(key)) for c in cs]
            _errorbar_vs_depth(ax_steps, steps, color, label)
            miss = [d for d, s in steps if s.n and not s.values]
            if miss:
                y = never_y if never_y is not None else 1.0
                ax_steps.plot(miss, [y] * len(miss), "v", color=color, ms=9, mfc="none", mew=2)
        if never_y is not None:
            ax_steps.axhline(never_y, color="grey", ls=":", lw=1)
            ax_steps.text(
                0.01,
                never_y,
                f" never reached {level} (hollow triangles)",
                fontsize=8,
                color="grey",
                va="bottom",
                transform=ax_steps.get_yaxis_transform(),
            )
        for ax in (ax_acc, ax_steps):
            ax.set_xscale("log", base=2)
            ax.set_xticks(depths, [str(d) for d in depths])
            ax.minorticks_off()
            ax.set_xlabel("depth (hidden layers)")
            ax.grid(True, alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
        low, high = ax_acc.get_ylim()
        ax_acc.set_ylim(max(low, 0.0), min(high, 1.0))
        ax_acc.set_ylabel("test accuracy (mean ± std)")
        ax_acc.set_title(f"test accuracy vs depth: {title}", fontsize=10)
        ax_steps.set_ylabel(f"steps to {level} val accuracy (mean ± std)")
        ax_steps.set_title(f"steps to {level} vs depth: {title}", fontsize=10)
        if not reached:
            ax_steps.text(
                0.5, 0.5, f"no run reached {level}", ha="center", transform=ax_steps.transAxes
            )
    if note:
        fig.suptitle(note, fontsize=10)
    try:
        return save_figure_atomic(fig, path)
    finally:
        plt.close(fig)


def plot_propagation(sweep_dir: Path, path: Path) -> Path | None:
    """The propagation study's plot of every propagation.json below ``sweep_dir`` (drawn by
    initlab.propagation.plots.plot_sweep); None when there are none."""
    paths = sorted(sweep_dir.rglob(PROPAGATION_FILE))
    if not paths:
        return None
    from initlab.propagation.plots import plot_sweep

    records = []
    for p in paths:
        try:
            records.append(read_results(p))
        except (OSError, ValueError) as exc:
            log.warning("report: skipping unreadable %s (%s)", p, exc)
    if not records:
        return None
    plot_sweep(records, path)
    return path


# -- the whole report --------------------------------------------------------------------------
def write_report(sweep_dir: str | Path, plots: bool = True) -> Path:
    """Read every results.json below ``sweep_dir`` and write summary.csv, the plots and
    summary.md into it (each atomically). Returns the path of summary.md.

    A plot that fails is named in summary.md with its error; the tables are written anyway.
    ``plots=False`` writes the tables only.
    Raises FileNotFoundError when ``sweep_dir`` is not a directory.
    """
    root = Path(sweep_dir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{sweep_dir} is not a directory")
    runs, unreadable = load_runs(root)
    configs = sorted(group_configs(runs), key=sort_key)
    speed_key = speed_threshold(runs, report_thresholds(runs))
    write_text_atomic(root / SUMMARY_CSV, summary_csv(runs, unreadable, root))

    drawn: list[tuple[str, str]] = []
    errors: list[str] = []

    def attempt(name: str, caption: str, draw: Callable[[], Path | None]) -> None:
        try:
            if draw() is not None:
                drawn.append((name, caption))
        except Exception as exc:  # a plot must not cost the tables
            log.exception("report: %s failed", name)
            errors.append(f"`{name}` could not be drawn: {type(exc).__name__}: {exc}")

    if configs and plots:
        attempt(
            VAL_PLOT,
            "Validation accuracy against step, per init (mean, min-max band over seeds)",
            lambda: plot_val_curves(configs, root / VAL_PLOT),
        )
        attempt(
            HEATMAP_PLOT,
            "Mean test accuracy, init x norm",
            lambda: plot_heatmap(configs, root / HEATMAP_PLOT),
        )
        if len({c.key["depth"] for c in configs}) > 1:
            attempt(
                DEPTH_PLOT,
                f"Test accuracy and steps to {pct(speed_key)}% val accuracy against depth, "
                "per init",
                lambda: plot_depth(configs, root / DEPTH_PLOT, speed_key),
            )
    if plots and not (root / PROPAGATION_FILE).exists():  # a propagation run has its own plot
        attempt(
            PROPAGATION_PLOT,
            "Signal propagation at init: q_l per layer, measured and predicted",
            lambda: plot_propagation(root, root / PROPAGATION_PLOT),
        )
    text = render_summary(root, runs, unreadable, configs, drawn, errors)
    return write_text_atomic(root / SUMMARY_MD, text)
