"""The report's figures (matplotlib, imported only to draw; the Agg backend, no display)."""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from initlab.propagation import PROPAGATION_FILE
from initlab.propagation.plots import plot_sweep
from initlab.report.aggregate import (
    INIT_ORDER,
    NORM_ORDER,
    Config,
    config_label,
    order_of,
    speed_note,
    speed_threshold,
    varying_fields,
)
from initlab.report.files import save_figure_atomic
from initlab.report.load import number, pct, report_thresholds, validations
from initlab.report.tables import fmt_status
from initlab.results import read_results

log = logging.getLogger(__name__)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(inits: Iterable[str]) -> dict[str, str]:
    names = sorted(set(inits), key=lambda n: order_of(n, INIT_ORDER))
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
        panels.setdefault(config_label(c, fields) or "all runs", []).append(c)
    return panels


def _panel_order(name: str, value: Any) -> tuple:
    if name == "norm":
        return order_of(value, NORM_ORDER)
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
        for h in validations(r):
            by_step.setdefault(number(h["step"]), []).append(number(h["val_acc"]))
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
    plt = pyplot()
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
            for c in sorted(group, key=lambda c: order_of(c.key["init"], INIT_ORDER)):
                steps, mean, lo, hi = curves[id(c)]
                label = _line_label(c, with_params)
                if not len(steps):
                    no_curve.append(label)
                    continue
                if zoomed and hi.max() < 0.9:
                    below.append(f"{label} (max {hi.max():.3f})")
                    continue
                color = colors[c.key["init"]]
                seeds = len([x for x in c.runs if validations(x)])
                ax.plot(steps, mean, color=color, lw=1.8, label=f"{label}, {seeds} seed(s)")
                ax.fill_between(steps, lo, hi, color=color, alpha=0.2, lw=0)
                for x in c.runs:  # where a diverged run stopped
                    h = validations(x)
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

    plt = pyplot()
    shown = varying_fields(configs)
    with_params = "init params" in shown
    panels = _panels(configs, exclude=("init", "norm"))
    fig, axes = _grid(plt, len(panels), width=5.8, height=4.8, max_cols=3)

    def row_of(c: Config) -> str:
        return c.key["init"] + (f" ({c.key['init params']})" if with_params else "")

    image = None
    for ax, (title, group) in zip(axes, panels.items(), strict=True):
        rows = sorted(
            {row_of(c) for c in group}, key=lambda r: order_of(r.split(" ")[0], INIT_ORDER)
        )
        cols = sorted({c.key["norm"] for c in group}, key=lambda n: order_of(n, NORM_ORDER))
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
    plt = pyplot()
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
        for label in sorted(lines, key=lambda lb: order_of(lines[lb][0].key["init"], INIT_ORDER)):
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


def _profile_ratios(record: Mapping[str, Any], at: str) -> list[float] | None:
    """E[delta_l^2] / E[delta_L^2] per hidden layer of a run's layer profile (``at``: "first"
    or "last"); None when it has none or a value is not positive."""
    profile = record.get("layer_profile")
    grads = profile.get(at, {}).get("grad_preact_q") if isinstance(profile, Mapping) else None
    if not isinstance(grads, list) or not grads:
        return None
    values = [number(g) for g in grads]
    if any(v is None or v <= 0 for v in values):
        return None
    return [v / values[-1] for v in values]


def plot_gradient_profile(configs: Sequence[Config], path: Path) -> Path | None:
    """E[(dL/dh_l)^2] over the last hidden layer's, against the layer l (log axis): one colour
    per init, solid at step 0, dashed at the end of training; the geometric mean over seeds (the
    ratios are products of per-layer factors: their logs average). One panel per value of the
    other varying fields. None when no run recorded a layer profile."""
    curves: dict[int, dict[str, list[float]]] = {}
    for c in configs:
        for at in ("first", "last"):
            ratios = [r for r in (_profile_ratios(x, at) for x in c.runs) if r is not None]
            if ratios and len({len(r) for r in ratios}) == 1:
                logs = [
                    sum(math.log(v) for v in col) / len(col) for col in zip(*ratios, strict=True)
                ]
                curves.setdefault(id(c), {})[at] = [math.exp(v) for v in logs]
    if not curves:
        return None
    plt = pyplot()
    from matplotlib.lines import Line2D

    with_params = "init params" in varying_fields(configs)
    profiled = {id(c) for c in configs if any(_profile_ratios(x, "first") for x in c.runs)}
    recorded = [
        c for c in configs if any(isinstance(x.get("layer_profile"), Mapping) for x in c.runs)
    ]
    panels = _panels(recorded, exclude=("init",))
    colors = _colors(c.key["init"] for c in configs)
    fig, axes = _grid(plt, len(panels), width=7.0, height=4.4, max_cols=2)
    for ax, (title, group) in zip(axes, panels.items(), strict=True):
        handles = []
        for c in sorted(group, key=lambda c: order_of(c.key["init"], INIT_ORDER)):
            if id(c) not in curves:
                continue
            color = colors[c.key["init"]]
            for at, style in (("first", "-"), ("last", "--")):
                ys = curves[id(c)].get(at)
                if ys is not None:
                    ax.plot(range(1, len(ys) + 1), ys, style, marker="o", ms=3, color=color)
            handles.append(Line2D([], [], color=color, label=_line_label(c, with_params)))
        handles += [
            Line2D([], [], color="black", ls="-", label="step 0"),
            Line2D([], [], color="black", ls="--", label="end of training"),
        ]
        missing = [c.key["init"] for c in group if id(c) not in profiled]
        if missing:
            ax.text(
                0.02,
                0.02,
                "no gradient below the top layer: " + ", ".join(missing),
                transform=ax.transAxes,
                fontsize=8,
                color="firebrick",
                va="bottom",
            )
        ax.set_yscale("log")
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("hidden layer l (1 = next to the input)")
        ax.set_ylabel("E[(dL/dh_l)²] / last hidden layer's")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(
        "Back-propagated gradient across layers (geometric mean over seeds): below 1 toward the "
        "input = vanishing; solid: step 0, dashed: end of training",
        fontsize=10,
    )
    try:
        return save_figure_atomic(fig, path)
    finally:
        plt.close(fig)
