"""The report's figures (matplotlib, imported only to draw; the Agg backend, no display).

Each figure has to be readable for one run and for a whole study (225 runs), so: panels are
faceted by what varies (``facets``: a grid, depth along the columns, norm down the rows), the
figure is capped at MAX_WIDTH_IN x MAX_HEIGHT_IN inches however many panels it has (the panels
shrink), each init has one colour across the figure and one legend below it lists every init,
and notes are wrapped and cut to fit inside their own panel (``_Notes``).
"""

from __future__ import annotations

import logging
import math
import statistics
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from initlab.atomic import save_figure_atomic
from initlab.propagation.plots import find_propagation, log_ticks, plot_sweep, read_propagation
from initlab.report.aggregate import (
    INIT_ORDER,
    NORM_ORDER,
    Config,
    Stat,
    config_label,
    fmt_status,
    order_of,
    speed_note,
    speed_threshold,
    varying_fields,
)
from initlab.report.load import number, pct, report_thresholds, validations

if TYPE_CHECKING:
    from matplotlib.colors import Normalize

log = logging.getLogger(__name__)

MAX_COLS = 5  # panels in a row before the grid wraps
MAX_WIDTH_IN = 20.0  # every figure's cap in inches (pixels: times save_figure_atomic's dpi)
MAX_HEIGHT_IN = 16.0
ZOOM_FROM = 0.9  # the val curves' zoomed rows: accuracy from here to 1
# Small type: a panel of the capped grid is about 4 x 3 inches.
STYLE = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "legend.fontsize": 8,
    "figure.titlesize": 10,
}
NOTE_COLOR = "firebrick"


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass
class Panel:
    """One panel of a faceted figure: its title, its configurations, its place in the grid."""

    title: str
    configs: list[Config]
    row: int
    col: int


def facets(
    configs: Sequence[Config], exclude: Sequence[str], max_cols: int = MAX_COLS
) -> tuple[list[Panel], int, int]:
    """One panel per value of the varying fields not in ``exclude``, and the grid's (rows, cols).

    With two fields or more the last one (depth, in the depth study) runs along the columns when
    it has at most ``max_cols`` values, the others down the rows, so a row reads along it;
    otherwise the panels wrap in rows of at most ``max_cols``."""
    fields = [f for f in varying_fields(configs) if f not in exclude and f != "init params"]
    fields = [f for f in fields if len({str(c.key[f]) for c in configs}) > 1]
    groups: dict[tuple, list[Config]] = {}
    for c in configs:
        groups.setdefault(tuple(_panel_order(f, c.key[f]) for f in fields), []).append(c)
    keys = sorted(groups)

    def panel(k: tuple, row: int, col: int) -> Panel:
        return Panel(config_label(groups[k][0], fields) or "all runs", groups[k], row, col)

    if len(fields) >= 2:
        col_keys = sorted({k[-1] for k in keys})
        row_keys = sorted({k[:-1] for k in keys})
        if len(col_keys) <= max_cols:
            panels = [panel(k, row_keys.index(k[:-1]), col_keys.index(k[-1])) for k in keys]
            return panels, len(row_keys), len(col_keys)
    rows = max(1, math.ceil(len(keys) / max_cols))
    cols = max(1, math.ceil(len(keys) / rows))
    return [panel(k, *divmod(i, cols)) for i, k in enumerate(keys)], rows, cols


def _panel_order(name: str, value: Any) -> tuple:
    if name == "norm":
        return order_of(value, NORM_ORDER)
    if isinstance(value, (int, float)):
        return (value, "")
    return (math.inf, str(value))


def _figure(plt: Any, cols: int, heights: Sequence[float], width: float, top: float) -> Any:
    """A constrained-layout figure and its GridSpec: ``cols`` columns ``width`` inches wide and
    rows ``heights`` inches high, all shrunk together to fit MAX_WIDTH_IN x MAX_HEIGHT_IN;
    ``top``: inches kept for the title and the legend."""
    w = min(width * cols, MAX_WIDTH_IN)
    h = min(sum(heights), MAX_HEIGHT_IN - top)
    fig = plt.figure(figsize=(w, h + top), layout="constrained")
    return fig, fig.add_gridspec(len(heights), cols, height_ratios=list(heights))


def _init_label(c: Config, with_params: bool) -> str:
    return c.key["init"] + (f" ({c.key['init params']})" if with_params else "")


def _label_order(label: str) -> tuple:
    return order_of(label.split(" ")[0], INIT_ORDER)


def _colors(labels: Iterable[str]) -> dict[str, Any]:
    """One colour per init label, in the inits' display order (tab20 past 10)."""
    names = sorted(set(labels), key=_label_order)
    palette: list[Any] = [f"C{i}" for i in range(10)]
    if len(names) > 10:
        import matplotlib

        cmap = matplotlib.colormaps["tab20"]
        palette = [cmap(i % 20) for i in range(len(names))]
    return {n: palette[i % len(palette)] for i, n in enumerate(names)}


def _legend(fig: Any, handles: list) -> None:
    """The figure's one legend, below the panels (every init, whatever each panel shows; above
    them the constrained layout would set it over the title)."""
    ncols = min(len(handles), max(2, int(fig.get_figwidth() / 1.6)))
    fig.legend(handles=handles, loc="outside lower center", ncols=ncols, frameon=False)


def _top(handles: list, title: bool = True) -> float:
    """Inches beside the panels for the title and a legend of ``handles``."""
    return (0.5 if title else 0.15) + 0.25 * math.ceil(len(handles) / 4)


def _init_handles(colors: Mapping[str, Any], **style: Any) -> list:
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=c, label=n, **style) for n, c in colors.items()]


def _title(fig: Any, text: str) -> None:
    """The figure's title, wrapped to its width (about 2 characters per 11 pt at 10 pt type)."""
    width = max(40, int(fig.get_figwidth() * 72 / 5.5))
    fig.suptitle("\n".join(textwrap.wrap(text, width)))


class _Notes:
    """Texts inside panels, wrapped and cut to fit their axes once the layout has placed them:
    a panel is too small to guess the length of a line in advance."""

    def __init__(self) -> None:
        self._items: list[tuple[Any, Any, str]] = []

    def add(self, ax: Any, items: Sequence[str]) -> None:
        """A note in the lower right corner (the val curves rise away from it)."""
        if not items:
            return
        text = ax.text(
            0.98,
            0.03,
            "",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=7,
            color=NOTE_COLOR,
            zorder=5,
            bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 1.5},
        )
        text.set_in_layout(False)
        self._items.append((ax, text, "; ".join(items)))

    def fit(self, fig: Any) -> None:
        if not self._items:
            return
        fig.draw_without_rendering()  # runs the layout: the axes are where they will be saved
        renderer = fig.canvas.get_renderer()
        for ax, text, raw in self._items:
            box = ax.get_window_extent(renderer)
            room_w, room_h = 0.93 * box.width, 0.92 * box.height
            width = max(10, int(room_w / (0.55 * text.get_fontsize() * fig.dpi / 72)))
            while True:
                lines = textwrap.wrap(raw, width) or [""]
                text.set_text("\n".join(lines))
                extent = text.get_window_extent(renderer)
                if extent.width <= room_w or width <= 10:
                    break
                width = max(10, int(width * 0.85))
            while extent.height > room_h and len(lines) > 1:
                lines = lines[:-1]
                lines[-1] = lines[-1][: max(1, width - 2)] + " …"
                text.set_text("\n".join(lines))
                extent = text.get_window_extent(renderer)


def _save(plt: Any, fig: Any, path: Path, notes: _Notes | None = None) -> Path:
    try:
        if notes is not None:
            notes.fit(fig)
        return save_figure_atomic(fig, path)
    finally:
        plt.close(fig)


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


def _irregular(c: Config, label: str, seeds: int) -> list[str]:
    """What a line does not show: its failed or diverged runs, seeds fewer than ``seeds``."""
    counts = c.status_counts
    what = [f"{counts[s]} {s}" for s in ("diverged", "failed") if counts.get(s)]
    if len(c.runs) < seeds:
        what.append(f"{len(c.runs)} of {seeds} seeds")
    return [f"{label}: {', '.join(what)}"] if what else []


def plot_val_curves(configs: Sequence[Config], path: Path) -> Path:
    """Val accuracy against step, one line per init (mean over seeds, min-max band), one panel
    per value of the other varying fields (norm down, depth across), each with a shorter zoomed
    panel below (accuracy >= ZOOM_FROM) when some line gets there."""
    plt = pyplot()
    with plt.rc_context(STYLE):
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch
        from matplotlib.ticker import MaxNLocator

        with_params = "init params" in varying_fields(configs)
        panels, rows, cols = facets(configs, exclude=("init",))
        labels = {id(c): _init_label(c, with_params) for c in configs}
        colors = _colors(labels.values())
        curves = {id(c): curve(c.runs) for c in configs}
        zoom = any(len(m) and m.max() >= ZOOM_FROM for _, m, _, _ in curves.values())
        seeds = max(len(c.runs) for c in configs)
        width = 6.2 if cols == 1 else 4.6
        per_row = [0.68 * width, 0.4 * width] if zoom else [0.68 * width]
        diverged = any(
            r["status"] == "diverged" and validations(r) for c in configs for r in c.runs
        )
        handles = _init_handles(colors, lw=2)
        if seeds > 1:  # one run per line: no band to explain
            handles.append(Patch(color="grey", alpha=0.3, label="min-max over seeds"))
        if diverged:
            handles.append(
                Line2D([], [], color="grey", marker="x", ls="none", label="a diverged run's end")
            )
        fig, grid = _figure(plt, cols, per_row * rows, width, _top(handles))
        _legend(fig, handles)
        notes = _Notes()
        bottom = {col: max(p.row for p in panels if p.col == col) for col in range(cols)}
        for p in panels:
            main = fig.add_subplot(grid[p.row * len(per_row), p.col])
            axes = [(main, False)]
            if zoom:
                axes.append((fig.add_subplot(grid[p.row * 2 + 1, p.col], sharex=main), True))
                main.tick_params(labelbottom=False)
            for ax, zoomed in axes:
                empty, below, irregular = [], [], []
                for c in sorted(p.configs, key=lambda c: _label_order(labels[id(c)])):
                    steps, mean, lo, hi = curves[id(c)]
                    label, color = labels[id(c)], colors[labels[id(c)]]
                    if not len(steps):
                        empty.append(f"{label}: no curve ({fmt_status(c.status_counts)})")
                        continue
                    irregular += _irregular(c, label, seeds)
                    if zoomed and hi.max() < ZOOM_FROM:
                        below.append(f"{label} {hi.max():.2f}")
                        continue
                    ax.plot(steps, mean, color=color, lw=1.6)
                    ax.fill_between(steps, lo, hi, color=color, alpha=0.2, lw=0)
                    for x in c.runs:  # where a diverged run stopped
                        h = validations(x)
                        if x["status"] == "diverged" and h:
                            ax.plot(h[-1]["step"], h[-1]["val_acc"], "x", color=color, ms=8, mew=2)
                if zoomed and below:
                    notes.add(ax, [f"below {ZOOM_FROM} (best seed): " + ", ".join(below)])
                elif not zoomed:
                    notes.add(ax, empty + irregular)
                    ax.set_title(p.title)
                ax.set_ylim((ZOOM_FROM, 1.0) if zoomed else (0.0, 1.0))
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.grid(True, alpha=0.3)
                if p.col == 0:
                    ax.set_ylabel(
                        f"val accuracy (zoom {ZOOM_FROM}-1)" if zoomed else "val accuracy"
                    )
                if p.row == bottom[p.col] and (zoomed or not zoom):
                    ax.set_xlabel("optimizer step")
        what = (
            "one run per line (one seed: no band)"
            if seeds == 1
            else f"line = mean over seeds (n = {seeds} per line unless noted in red), band = "
            "min-max over seeds"
        )
        _title(
            fig,
            f"Validation accuracy during training: {what}"
            + (f"; below each panel, a zoom on {ZOOM_FROM}-1" if zoom else ""),
        )
        return _save(plt, fig, path, notes)


def _cell_text(c: Config | None, with_n: bool) -> tuple[str, float | None]:
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
    text += (f"\nn={len(c.runs)}" if with_n else "") + (f"\n{bad}" if bad else "")
    return text, st.mean


def heatmap_norm(configs: Sequence[Config]) -> Normalize:
    """The heatmap's colour scale: from the lowest to the highest mean test accuracy shown (a
    fixed 0-1 scale paints 0.96 and 0.99 the same); a band of 0.01 around a single value."""
    from matplotlib.colors import Normalize

    means = [m for m in (c.final("test_acc").mean for c in configs) if m is not None]
    if not means:
        return Normalize(0.0, 1.0)
    low, high = min(means), max(means)
    return Normalize(low, high) if high > low else Normalize(low - 0.005, high + 0.005)


def text_color(rgba: Sequence[float]) -> str:
    """Black or white, whichever reads on a cell of colour ``rgba`` (its luma)."""
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def plot_heatmap(configs: Sequence[Config], path: Path) -> Path:
    """Mean test accuracy, init (rows) x norm (columns), each cell's value printed; one panel per
    value of the other varying fields (depth, ...); the colour scale spans the data."""
    import numpy as np

    plt = pyplot()
    with plt.rc_context(STYLE):
        import matplotlib
        from matplotlib.cm import ScalarMappable

        with_params = "init params" in varying_fields(configs)
        panels, rows, cols = facets(configs, exclude=("init", "norm"), max_cols=3)
        norm, cmap = heatmap_norm(configs), matplotlib.colormaps["viridis"]
        counts = {len(c.runs) for c in configs}
        with_n = len(counts) > 1
        n_inits = max(len({_init_label(c, with_params) for c in p.configs}) for p in panels)
        n_norms = max(len({c.key["norm"] for c in p.configs}) for p in panels)
        lines = max(_cell_text(c, with_n)[0].count("\n") + 1 for c in configs)
        width = 1.3 + 1.0 * n_norms
        height = 0.8 + (0.16 * lines + 0.12) * n_inits
        fig, grid = _figure(plt, cols, [height] * rows, width, _top([]))
        axes = []
        for p in panels:
            ax = fig.add_subplot(grid[p.row, p.col])
            axes.append(ax)
            inits = sorted({_init_label(c, with_params) for c in p.configs}, key=_label_order)
            norms = sorted(
                {c.key["norm"] for c in p.configs}, key=lambda n: order_of(n, NORM_ORDER)
            )
            cells = {(_init_label(c, with_params), c.key["norm"]): c for c in p.configs}
            values = np.full((len(inits), len(norms)), np.nan)
            for i, init in enumerate(inits):
                for j, name in enumerate(norms):
                    text, mean = _cell_text(cells.get((init, name)), with_n)
                    if mean is not None:
                        values[i, j] = mean
                    color = NOTE_COLOR if mean is None else text_color(cmap(norm(mean)))
                    ax.text(j, i, text, ha="center", va="center", fontsize=7.5, color=color)
            ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
            ax.set_xticks(range(len(norms)), norms)
            ax.set_yticks(range(len(inits)), inits)
            if p.row == rows - 1 or not any(q.row == p.row + 1 for q in panels if q.col == p.col):
                ax.set_xlabel("normalization")
            if p.col == 0:
                ax.set_ylabel("init")
            if len(panels) > 1:
                ax.set_title(p.title)
            ax.set_facecolor("#eeeeee")
        if len({c.final("test_acc").mean for c in configs} - {None}) > 1:  # a scale to read
            mappable = ScalarMappable(norm=norm, cmap=cmap)
            fig.colorbar(mappable, ax=axes, shrink=0.8, label="mean test accuracy")
        if counts == {1}:  # one value per cell: no spread to print
            title = "Test accuracy of the one run (seed) of each cell: no spread"
        else:
            n = None if with_n else next(iter(counts))
            seeds = "the n seeds" if n is None else f"the {n} seeds"
            title = f"Test accuracy: mean ± sample std over {seeds} of each cell"
            if 1 in counts:
                title += "; a cell of one run: its value alone"
        _title(fig, title)
        return _save(plt, fig, path)


LONE = {"marker": "o", "mfc": "white", "ms": 5, "ls": "none"}  # a point of one value: no bar
LONE_LABEL = "one run: no spread"


def _errorbar_vs_depth(ax: Any, points: list[tuple[Any, Stat]], color: Any) -> None:
    """Mean ± std against depth, for the (depth, Stat) points that have values. A point of one
    value has no spread: a hollow marker without a bar (a bar of 0 would read as ± 0)."""
    points = [(d, s) for d, s in points if s.values]
    if not points:
        return
    ax.plot([d for d, _ in points], [s.mean for _, s in points], color=color)
    spread = [(d, s) for d, s in points if s.std is not None]
    if spread:
        ax.errorbar(
            [d for d, _ in spread],
            [s.mean for _, s in spread],
            yerr=[s.std for _, s in spread],
            color=color,
            marker="o",
            ms=4,
            capsize=3,
            ls="none",
        )
    lone = [(d, s) for d, s in points if s.std is None]
    if lone:
        ax.plot([d for d, _ in lone], [s.mean for _, s in lone], color=color, **LONE)


def _lone_handle() -> Any:
    """The legend's entry for the hollow markers of _errorbar_vs_depth."""
    from matplotlib.lines import Line2D

    return Line2D([], [], color="grey", label=LONE_LABEL, **LONE)


def _dodge(labels: Sequence[str], depths: Sequence[float]) -> dict[str, float]:
    """Factors on depth (a log axis) that set the inits' points side by side rather than on top
    of each other, all within a third of the smallest gap between two depths."""
    if len(labels) < 2 or len(depths) < 2:
        return dict.fromkeys(labels, 1.0)
    gap = min(math.log2(b / a) for a, b in zip(depths, depths[1:], strict=False))
    step = min(0.05, gap / 3 / (len(labels) - 1))
    middle = (len(labels) - 1) / 2
    return {label: 2 ** ((i - middle) * step) for i, label in enumerate(labels)}


def plot_depth(configs: Sequence[Config], path: Path, speed_key: str | None = None) -> Path:
    """Test accuracy and steps to ``speed_key`` val accuracy (default: speed_threshold of the
    runs: 95% when recorded) against depth, one line per init; one column per value of the other
    varying fields (norm, ...). The configurations whose seeds did not all reach the threshold
    are marked in a strip between the two, one row per init, so that no marker hides another.
    A configuration without a depth (a run that failed before its config could be described)
    has no place on the axis and is left out."""
    configs = [c for c in configs if c.key["depth"] is not None]
    runs = [r for c in configs for r in c.runs]
    keys = report_thresholds(runs)
    key = speed_threshold(runs, keys) if speed_key is None else speed_key
    level = f"{pct(key)}%"
    note = speed_note(runs, keys, key)
    plt = pyplot()
    with plt.rc_context(STYLE):
        from matplotlib.lines import Line2D

        with_params = "init params" in varying_fields(configs)
        panels, _, _ = facets(configs, exclude=("init", "depth", "widths"))
        labels = {id(c): _init_label(c, with_params) for c in configs}
        colors = _colors(labels.values())
        order = list(colors)
        depths = sorted({c.key["depth"] for c in configs if c.key["depth"] is not None})
        offsets = _dodge(order, depths)
        steps = {id(c): c.steps(key) for c in configs}
        short = [s for s in steps.values() if s.n and len(s.values) < s.n]
        cols = min(len(panels), MAX_COLS)
        width = 6.0 if cols == 1 else 4.4
        block = [3.0, 0.3 + 0.17 * len(order), 3.0] if short else [3.0, 3.0]
        handles = _init_handles(colors, marker="o", ms=4)
        lone = [
            c for c in configs if 1 in (len(c.final("test_acc").values), len(steps[id(c)].values))
        ]
        if lone:
            handles.append(_lone_handle())
        never = {"color": "grey", "marker": "v", "ls": "none", "ms": 7, "mew": 1.5}
        if any(not s.values for s in short):
            handles.append(Line2D([], [], mfc="none", label=f"no seed reached {level}", **never))
        if any(s.values for s in short):
            handles.append(Line2D([], [], label=f"some seeds did not reach {level}", **never))
        blocks = math.ceil(len(panels) / cols)
        fig, grid = _figure(plt, cols, block * blocks, width, _top(handles, bool(note)))
        _legend(fig, handles)
        first_acc = first_steps = None
        for i, p in enumerate(panels):
            b, col = divmod(i, cols)
            at = b * len(block)
            ax_acc = fig.add_subplot(grid[at, col], sharey=first_acc)
            ax_steps = fig.add_subplot(grid[at + len(block) - 1, col], sharex=ax_acc)
            if first_steps is not None:
                ax_steps.sharey(first_steps)
            first_acc, first_steps = first_acc or ax_acc, first_steps or ax_steps
            ax_strip = fig.add_subplot(grid[at + 1, col], sharex=ax_acc) if short else None
            lines: dict[str, list[Config]] = {}
            for c in p.configs:
                lines.setdefault(labels[id(c)], []).append(c)
            for label in sorted(lines, key=_label_order):
                cs = sorted(lines[label], key=lambda c: c.key["depth"] or 0)
                color, shift = colors[label], offsets[label]
                acc = [(c.key["depth"] * shift, c.final("test_acc")) for c in cs]
                _errorbar_vs_depth(ax_acc, acc, color)
                _errorbar_vs_depth(
                    ax_steps, [(c.key["depth"] * shift, steps[id(c)]) for c in cs], color
                )
                for c in cs:
                    s = steps[id(c)]
                    if ax_strip is not None and s.n and len(s.values) < s.n:
                        fill = color if s.values else "none"
                        ax_strip.plot(
                            c.key["depth"],
                            order.index(label),
                            "v",
                            color=color,
                            mfc=fill,
                            ms=7,
                            mew=1.5,
                        )
            if ax_strip is not None:
                ax_strip.set_ylim(len(order) - 0.5, -0.5)
                ax_strip.set_yticks(range(len(order)), order if col == 0 else [])
                ax_strip.tick_params(labelbottom=False, length=0)
                ax_strip.set_title(f"never reached {level}", fontsize=8)
                ax_strip.grid(True, axis="x", alpha=0.3)
            for ax in (ax_acc, ax_steps):
                ax.set_xscale("log", base=2)
                ax.set_xticks(depths, [str(d) for d in depths])
                ax.minorticks_off()
                ax.grid(True, alpha=0.3)
                if col > 0:
                    ax.tick_params(labelleft=False)
            ax_steps.set_xlabel("depth (hidden layers)")
            ax_acc.set_title(f"test accuracy: {p.title}")
            ax_steps.set_title(f"steps to {level}: {p.title}")
            if col == 0:
                ax_acc.set_ylabel("test accuracy (mean ± std)")
                ax_steps.set_ylabel(f"steps to {level} val accuracy (mean ± std)")
            if not any(steps[id(c)].values for c in p.configs):
                ax_steps.text(
                    0.5, 0.5, f"no run reached {level}", ha="center", transform=ax_steps.transAxes
                )
        low, high = first_acc.get_ylim()
        first_acc.set_ylim(max(low, 0.0), min(high, 1.02))  # 1.0 itself, not cut in half
        if note:
            _title(fig, note)
        return _save(plt, fig, path)


def plot_propagation(sweep_dir: Path, path: Path) -> Path | None:
    """The propagation study's plot of every propagation.json below ``sweep_dir`` (drawn by
    initlab.propagation.plots.plot_sweep); None when there are none."""
    paths = find_propagation(sweep_dir)
    if not paths:
        return None
    records, skipped = read_propagation(paths)
    for p, why in skipped:
        log.warning("report: skipping unreadable %s (%s)", p, why)
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
    other varying fields (norm down, depth across). None when no run recorded a layer profile."""
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
    with plt.rc_context(STYLE):
        from matplotlib.lines import Line2D
        from matplotlib.ticker import MaxNLocator

        with_params = "init params" in varying_fields(configs)
        profiled = {id(c) for c in configs if any(_profile_ratios(x, "first") for x in c.runs)}
        recorded = [
            c for c in configs if any(isinstance(x.get("layer_profile"), Mapping) for x in c.runs)
        ]
        panels, rows, cols = facets(recorded, exclude=("init",))
        labels = {id(c): _init_label(c, with_params) for c in recorded}
        colors = _colors(labels.values())
        handles = _init_handles(colors, lw=2)
        handles += [
            Line2D([], [], color="black", ls="-", label="step 0"),
            Line2D([], [], color="black", ls="--", label="end of training"),
        ]
        width = 6.5 if cols == 1 else 4.2
        fig, grid = _figure(plt, cols, [0.72 * width] * rows, width, _top(handles))
        _legend(fig, handles)
        notes = _Notes()
        bottom = {col: max(p.row for p in panels if p.col == col) for col in range(cols)}
        for p in panels:
            ax = fig.add_subplot(grid[p.row, p.col])
            for c in sorted(p.configs, key=lambda c: _label_order(labels[id(c)])):
                for at, style in (("first", "-"), ("last", "--")):
                    ys = curves.get(id(c), {}).get(at)
                    if ys is not None:
                        ax.plot(
                            range(1, len(ys) + 1),
                            ys,
                            style,
                            marker="o",
                            ms=2.5,
                            color=colors[labels[id(c)]],
                        )
            missing = [labels[id(c)] for c in p.configs if id(c) not in profiled]
            if missing:
                notes.add(ax, ["no gradient below the top layer: " + ", ".join(missing)])
            ax.set_yscale("log")
            ax.axhline(1.0, color="grey", lw=0.8, ls=":")
            log_ticks(ax.yaxis)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if p.row == bottom[p.col]:
                ax.set_xlabel("hidden layer l (1 = next to the input)")
            if p.col == 0:
                ax.set_ylabel("E[(dL/dh_l)²] / last hidden layer's")
            ax.set_title(p.title)
            ax.grid(True, which="both", alpha=0.3)
        _title(
            fig,
            "Back-propagated gradient across layers (geometric mean over seeds): below 1 toward "
            "the input = vanishing; solid: step 0, dashed: end of training",
        )
        return _save(plt, fig, path, notes)


def _edges(values: Sequence[float], log: bool = False) -> list[float]:
    """Cell edges around sorted ``values``: midpoints between them (geometric when ``log``) and
    half a step beyond the ends."""
    vs = [math.log(v) for v in values] if log else list(values)
    if len(vs) == 1:
        mids, first, last = [], vs[0] - 0.5, vs[0] + 0.5
    else:
        mids = [(a + b) / 2 for a, b in zip(vs, vs[1:], strict=False)]
        first, last = vs[0] - (vs[1] - vs[0]) / 2, vs[-1] + (vs[-1] - vs[-2]) / 2
    edges = [first, *mids, last]
    return [math.exp(e) for e in edges] if log else edges


def plot_phase_diagram(configs: Sequence[Config], path: Path) -> Path | None:
    """The evaluated training accuracy (mean ± sd over seeds, with the cell's verdict) and the
    val accuracy over (sigma_w2, depth), one cell per configuration of the phase-diagram study,
    with the theory's xi_c and 6 xi_c over it and the critical sigma_w2 marked
    (initlab.report.phase). None when the configurations hold no such study."""
    from initlab.report import phase

    found = phase.cells(configs)
    if not found:
        return None
    import numpy as np

    plt = pyplot()
    activation, sigma_b2 = found[0].activation, found[0].sigma_b2
    found = [c for c in found if (c.activation, c.sigma_b2) == (activation, sigma_b2)]
    xs = sorted({c.sigma_w2 for c in found})
    ys = sorted({c.depth for c in found})
    fig, axes = plt.subplots(1, 2, figsize=(13.0, 5.6), layout="constrained", squeeze=False)
    lo, hi = _edges(xs)[0], _edges(xs)[-1]
    sw, xi = phase.curve(activation, sigma_b2, max(lo, 1e-3), hi)
    crit = phase.critical(activation, sigma_b2)
    steps, sizes = phase.budgets(found)
    at = f"step {'/'.join(f'{s:,}' for s in steps)}" if steps else "the end"
    subset = "/".join(f"{n:,}" for n in sizes) or "?"
    titles = (
        f"training accuracy evaluated on {subset} fixed training images at {at}\n"
        f"mean ± sd over seeds; ✓ trained, ✗ untrained, ? unresolved (threshold "
        f"{phase.TRAINED_ACC:g})",
        "final val accuracy (mean over seeds)",
    )
    image = None
    for k, ax in enumerate(axes[0]):
        grid = np.full((len(ys), len(xs)), np.nan)
        for c in found:
            value = c.mean if k == 0 else c.val_acc
            if value is not None:
                grid[ys.index(c.depth), xs.index(c.sigma_w2)] = value
        image = ax.pcolormesh(
            _edges(xs), _edges(ys, log=True), np.ma.masked_invalid(grid), cmap="viridis",
            vmin=0.0, vmax=1.0,
        )  # fmt: skip
        for c in found:
            i, j = ys.index(c.depth), xs.index(c.sigma_w2)
            if math.isnan(grid[i, j]):
                continue
            label = f"{grid[i, j]:.2f}"
            if k == 0:
                spread = f"±{c.sd:.2f} " if c.sd is not None else ""
                label += f"\n{spread}{phase.MARK[c.verdict]}"
            color = text_color(image.cmap(image.norm(grid[i, j])))
            ax.text(c.sigma_w2, c.depth, label, ha="center", va="center", fontsize=7,
                    color=color)  # fmt: skip
        # magenta and black read on viridis' dark blues and yellows alike
        ax.plot(sw, [phase.DEPTH_FACTOR * v for v in xi], color="#e7298a", lw=2.2,
                label=f"{phase.DEPTH_FACTOR} ξ_c (theory: trainable below)")  # fmt: skip
        ax.plot(sw, xi, color="#e7298a", lw=1.4, ls="--", label="ξ_c")
        ax.axvline(crit, color="black", lw=1.2, ls=":", label=f"critical σ_w² = {crit:.2f}")
        ax.set_yscale("log")
        ax.set_ylim(_edges(ys, log=True)[0], _edges(ys, log=True)[-1])
        ax.set_xlim(lo, hi)
        ax.set_yticks(ys, [str(y) for y in ys])
        ax.minorticks_off()
        ax.set_xlabel("σ_w² (weights N(0, σ_w²/fan_in))")
        ax.set_ylabel("depth (hidden layers)")
        ax.set_title(titles[k], fontsize=9)
        ax.set_facecolor("#eeeeee")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8)
    fig.colorbar(image, ax=list(axes[0]), shrink=0.9, label="accuracy")
    seeds = sorted({len(c.acc) for c in found})
    fig.suptitle(
        f"Phase diagram: {activation}, σ_b² = {sigma_b2:g}; "
        f"{'/'.join(map(str, seeds))} seed(s) per cell; lines: mean-field depth scales",
        fontsize=10,
    )
    return _save(plt, fig, path)


def _jacobian(record: Mapping[str, Any], *keys: str) -> float | None:
    value: Any = record.get("jacobian")
    for k in keys:
        value = value.get(k) if isinstance(value, Mapping) else None
    v = number(value)
    return v if v is not None and v > 0 else None


def plot_spectrum(configs: Sequence[Config], path: Path) -> Path | None:
    """The spread of J Jᵀ's eigenvalues at init (Var/mean², ``initlab.propagation.spectrum``)
    against depth, log-log: one colour per init (with its parameters, e.g. the weights), one
    panel per value of the other varying fields (the activation); the measured mean ± std over
    seeds as points, the theory's prediction for the same nets (mean over seeds of each run's
    ``jacobian.predicted.spread``) as a dashed line. None when no run measured a spectrum."""
    configs = [
        c
        for c in configs
        if c.key["depth"] is not None and any(_jacobian(r, "spread") for r in c.runs)
    ]
    if not configs:
        return None
    plt = pyplot()
    with plt.rc_context(STYLE):
        from matplotlib.lines import Line2D

        with_params = "init params" in varying_fields(configs)
        panels, _, _ = facets(configs, exclude=("init", "init params", "depth", "widths"))
        labels = {id(c): _init_label(c, with_params) for c in configs}
        colors = _colors(labels.values())
        handles = _init_handles(colors, marker="o", ms=4)
        handles.append(Line2D([], [], color="grey", ls="--", label="theory (free probability)"))
        if any(sum(_jacobian(r, "spread") is not None for r in c.runs) == 1 for c in configs):
            handles.append(_lone_handle())
        cols = min(len(panels), MAX_COLS)
        blocks = math.ceil(len(panels) / cols)
        fig, grid = _figure(plt, cols, [3.2] * blocks, 6.0 if cols == 1 else 4.6, _top(handles))
        _legend(fig, handles)
        depths = sorted({c.key["depth"] for c in configs})
        for i, p in enumerate(panels):
            b, col = divmod(i, cols)
            ax = fig.add_subplot(grid[b, col])
            lines: dict[str, list[Config]] = {}
            for c in p.configs:
                lines.setdefault(labels[id(c)], []).append(c)
            for label in sorted(lines, key=_label_order):
                cs = sorted(lines[label], key=lambda c: c.key["depth"])
                color = colors[label]
                measured = [
                    (c.key["depth"], Stat([v for r in c.runs if (v := _jacobian(r, "spread"))], 0))
                    for c in cs
                ]
                _errorbar_vs_depth(ax, measured, color)
                theory = [
                    (c.key["depth"], statistics.fmean(vs))
                    for c in cs
                    if (vs := [v for r in c.runs if (v := _jacobian(r, "predicted", "spread"))])
                ]
                if theory:
                    ax.plot(*zip(*theory, strict=True), color=color, ls="--", lw=1)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(depths, [str(d) for d in depths])
            ax.minorticks_off()
            ax.grid(True, alpha=0.3)
            ax.set_xlabel("depth (hidden layers)")
            ax.set_title(f"spectrum of J Jᵀ at init: {p.title}")
            if col == 0:
                ax.set_ylabel("Var(λ) / E[λ]² (mean ± std over seeds)")
        return _save(plt, fig, path)
