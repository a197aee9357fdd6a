"""Configurations: the runs that share everything but the seed, their metrics over seeds, and the
order and labels the report shows them in."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from initlab.report.load import (
    auc,
    dataset_name,
    get,
    number,
    optimizer_setting,
    pct,
    steps_to,
)
from initlab.results import STATUSES, branch_layers_of, threshold_key

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
    "standard",
    "mean_field",
    "default",
    "lsuv",
    "zero_identity",
)


NORM_ORDER = ("none", "batchnorm", "layernorm", "weightnorm")
SPEED_THRESHOLD = "0.95"  # the tutorial's "fast": steps to 95% val accuracy, when recorded


def order_of(value: Any, order: Sequence[str]) -> tuple:
    return (order.index(value), "") if value in order else (len(order), str(value))


def params_label(params: Any) -> str:
    if not isinstance(params, Mapping) or not params:
        return "-"
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))


def residual_setting(record: Mapping[str, Any]) -> str | None:
    """A residual net's branch length, ``m=2`` (None: a plain MLP, also a record from before
    residual nets), so that a residual and a plain net of the same widths are two
    configurations (``initlab.results.branch_layers_of``)."""
    built = branch_layers_of(record)
    return None if built is None else f"m={built}"


def fmt_num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e6:
        return str(v)
    return f"{v:g}" if isinstance(v, float) else str(v)


DEFINING: tuple[tuple[str, Callable[[Mapping[str, Any]], Any]], ...] = (
    ("study", lambda r: r.get("study")),
    ("init", lambda r: r.get("init")),
    ("init params", lambda r: params_label(r.get("init_params"))),
    ("norm", lambda r: r.get("norm")),
    ("activation", lambda r: r.get("activation")),
    ("depth", lambda r: len(r["hidden_sizes"]) if r.get("hidden_sizes") else r.get("depth")),
    ("widths", lambda r: "-".join(map(str, r.get("hidden_sizes") or [])) or None),
    ("residual", lambda r: residual_setting(r)),
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
        values = [number(get(r, "final", name)) for r in self.runs]
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


def fmt_mean(stat: Stat, digits: int = 3) -> str:
    """The mean as every cell of the report rounds it (the answer line compares these texts)."""
    return "-" if stat.mean is None else f"{stat.mean:.{digits}f}"


def fmt_stat(stat: Stat, digits: int = 3) -> str:
    """The "mean ± std" (sample std); a lone value alone, never "± 0" for one run; "(k/n)" when
    k of n runs have a value."""
    if not stat.values:
        return "-" if stat.n == 0 else f"- (0/{stat.n})"
    text = fmt_mean(stat, digits)
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
    """ "2 ok, 1 failed": the statuses that occur, in STATUSES' order."""
    return ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts.get(s))


TEST_ACC_COLUMN = "test acc"  # the main table's column the rows are sorted by (sort_key)


def test_acc_cell(config: Config) -> str:
    """The main table's test accuracy cell; the answer line quotes this very text."""
    return fmt_stat(config.final("test_acc"))


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


def sort_key(config: Config) -> tuple:
    """Mean test accuracy, best first; configurations without one last."""
    mean = config.final("test_acc").mean
    k = config.key
    return (
        mean is None,
        -(mean or 0.0),
        order_of(k["init"], INIT_ORDER),
        order_of(k["norm"], NORM_ORDER),
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


def config_label(config: Config, shown: Sequence[str]) -> str:
    return ", ".join(f"{f}={fmt_num(config.key[f])}" for f in shown)


def missing_seeds(configs: Sequence[Config]) -> list[tuple[Config, list[Any]]]:
    """Configurations that lack some of the seeds the sweep ran (the union over all runs)."""
    every = {s for c in configs for s in c.seeds if s is not None}
    out = []
    for c in configs:
        lack = sorted(every - set(c.seeds), key=str)
        if lack:
            out.append((c, lack))
    return out


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
