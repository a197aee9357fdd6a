"""The report's figures at the scale of a study (initlab.report.plots, initlab.propagation.plots):
what can be checked without eyes. Each figure is caught as it is saved (save_figure_atomic
monkeypatched) and measured: its size in pixels, its legend, its colour scale, its log ticks, and
where its notes lie once drawn."""

from __future__ import annotations

import inspect
import math
import struct
from pathlib import Path

import pytest

from initlab.propagation import plots as propagation_plots
from initlab.report import plots as report_plots
from initlab.report.aggregate import group_configs, sort_key

from .test_report import record

INITS = ("xavier", "he", "tutorial_he", "default", "lsuv")  # experiment=depth
NORMS = ("none", "batchnorm", "layernorm")
DEPTHS = (2, 4, 8, 16, 32)
DPI = inspect.signature(report_plots.save_figure_atomic).parameters["dpi"].default


def depth_record(init: str, norm: str, depth: int, seed: int) -> dict:
    """A run of the depth study: worse with depth; ``default`` never reaches 95%, ``he`` only
    some seeds at depth 32; layernorm's runs all stay below 0.9 (long zoom notes), and one
    batchnorm run diverged."""
    i = INITS.index(init)
    test = max(0.1, 0.99 - 0.02 * i - 0.01 * DEPTHS.index(depth) - 0.001 * seed)
    reached = init != "default" and not (init == "he" and depth == 32 and seed > 0)
    status = "diverged" if (init, norm, depth, seed) == ("xavier", "batchnorm", 8, 1) else "ok"
    r = record(
        init,
        norm,
        seed,
        status=status,
        test=None if status == "diverged" else test,
        steps=(100, 200 * depth if reached and status == "ok" else None, None),
        study="depth",
        hidden=(256,) * depth,
    )
    if norm == "layernorm" and status == "ok":
        for h in r["history"]:
            h["val_acc"] = min(h["val_acc"], 0.5)
    grads = [10.0 ** (-(i + 1) * (depth - layer) / 4) for layer in range(1, depth + 1)]
    profile = {"layers": [f"fc{n}" for n in range(1, depth + 1)], "preact_q": [1.0] * depth}
    r["layer_profile"] = {
        "first": {"step": 0, **profile, "grad_preact_q": grads},
        "last": {"step": 200, **profile, "grad_preact_q": grads[::-1]},
    }
    return r


@pytest.fixture(scope="module")
def study() -> list:
    """The configurations of the depth study: 5 inits x 3 norms x 5 depths x 3 seeds."""
    runs = [
        depth_record(init, norm, depth, seed)
        for init in INITS
        for norm in NORMS
        for depth in DEPTHS
        for seed in range(3)
    ]
    assert len(runs) == 225
    return sorted(group_configs(runs), key=sort_key)


@pytest.fixture
def one_run() -> list:
    return group_configs([record("he", "none", 0)])


def catch(monkeypatch: pytest.MonkeyPatch) -> dict:
    """name -> (figure, (width, height) in px of the PNG written) of every figure saved."""
    caught: dict = {}
    save = report_plots.save_figure_atomic

    def capture(fig, path, **kw):
        out = save(fig, path, **kw)
        caught[Path(path).name] = (fig, png_size(Path(out)))
        return out

    monkeypatch.setattr(report_plots, "save_figure_atomic", capture)
    return caught


@pytest.fixture
def figures(monkeypatch) -> dict:
    return catch(monkeypatch)


@pytest.fixture(scope="module")
def study_figures(study, tmp_path_factory) -> dict:
    """The four figures of the study, drawn once for the tests that only look at them."""
    with pytest.MonkeyPatch.context() as mp:
        caught = catch(mp)
        draw_all(study, tmp_path_factory.mktemp("study"))
    return caught


def render(fig):
    """The renderer of a figure laid out as saved (pyplot.close left it a bare canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    return fig.canvas.get_renderer()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def draw_all(configs: list, directory: Path) -> None:
    report_plots.plot_val_curves(configs, directory / "val.png")
    report_plots.plot_heatmap(configs, directory / "heatmap.png")
    report_plots.plot_depth(configs, directory / "depth.png")
    report_plots.plot_gradient_profile(configs, directory / "gradient.png")


def panels(fig) -> list:
    """The figure's plotting axes (the heatmap's colour bar left out)."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def legend_texts(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


# -- size ------------------------------------------------------------------------------------
def test_figures_of_the_study_are_capped_and_their_panels_readable(study_figures):
    figures = study_figures
    assert set(figures) == {"val.png", "heatmap.png", "depth.png", "gradient.png"}
    cap = ((report_plots.MAX_WIDTH_IN + 0.5) * DPI, (report_plots.MAX_HEIGHT_IN + 0.5) * DPI)
    for name, (fig, (width, height)) in figures.items():
        assert width <= cap[0] and height <= cap[1], (name, width, height)
        renderer = render(fig)
        for ax in panels(fig):  # no panel shrunk to a stamp (inches at the figure's dpi)
            box = ax.get_window_extent(renderer)
            assert box.width / fig.dpi >= 2.0, (name, ax.get_title(), box.width / fig.dpi)
    val, _ = figures["val.png"]
    assert len(panels(val)) == 2 * len(NORMS) * len(DEPTHS)  # each panel and its zoom
    gradient, _ = figures["gradient.png"]
    assert len(panels(gradient)) == len(NORMS) * len(DEPTHS)


def test_facets_put_depth_across_and_norm_down(study):
    grid, rows, cols = report_plots.facets(study, exclude=("init",))
    assert (rows, cols) == (len(NORMS), len(DEPTHS))
    for p in grid:
        assert p.title == f"norm={NORMS[p.row]}, depth={DEPTHS[p.col]}"
        assert {(c.key["norm"], c.key["depth"]) for c in p.configs} == {
            (NORMS[p.row], DEPTHS[p.col])
        }
        assert len(p.configs) == len(INITS)
    # one field with more values than a row holds: the panels wrap, rows as even as can be
    only_depth = [c for c in study if c.key["norm"] == "none"]
    grid, rows, cols = report_plots.facets(only_depth, exclude=("init",), max_cols=3)
    assert (rows, cols) == (2, 3)
    assert [(p.row, p.col) for p in grid] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]


def test_one_run_draws_one_panel_and_a_small_figure(one_run, figures, tmp_path):
    report_plots.plot_val_curves(one_run, tmp_path / "val.png")
    report_plots.plot_heatmap(one_run, tmp_path / "heatmap.png")
    val, (width, height) = figures["val.png"]
    assert len(panels(val)) == 2 and width <= 800 and height <= 1000  # the curve, its zoom
    heatmap, _ = figures["heatmap.png"]
    (image,) = panels(heatmap)[0].images
    mean = one_run[0].final("test_acc").mean
    assert image.norm.vmin < mean < image.norm.vmax  # a single value still has a colour


# -- legends ---------------------------------------------------------------------------------
def test_every_init_is_in_the_legend_of_each_figure(study_figures):
    figures = study_figures
    for name in ("val.png", "depth.png", "gradient.png"):
        fig, _ = figures[name]
        texts = legend_texts(fig)
        assert [t for t in texts if t in INITS] == list(INITS), name
    # default reached 95% nowhere: listed anyway, and its markers explained
    depth, _ = figures["depth.png"]
    assert {"no seed reached 95%", "some seeds did not reach 95%"} <= set(legend_texts(depth))


def test_never_reached_markers_do_not_overlap(study_figures):
    fig, _ = study_figures["depth.png"]
    strips = [ax for ax in fig.axes if ax.get_title() == "never reached 95%"]
    assert len(strips) == len(NORMS)
    for ax, norm in zip(strips, NORMS, strict=True):
        marks = [(ln.get_xdata()[0], ln.get_ydata()[0], ln.get_mfc()) for ln in ax.lines]
        points = [(x, y) for x, y, _ in marks]
        assert len(points) == len(set(points))  # no marker on another
        # default at every depth (no seed: hollow), he at 32 (some seeds: filled)
        expected = {(d, INITS.index("default")) for d in DEPTHS} | {(32, INITS.index("he"))}
        if norm == "batchnorm":
            expected.add((8, INITS.index("xavier")))  # its diverged seed never got there
        assert set(points) == expected
        assert {mfc for x, y, mfc in marks if y == INITS.index("default")} == {"none"}
        assert "none" not in {mfc for x, y, mfc in marks if y == INITS.index("he")}


def test_points_at_one_depth_are_set_side_by_side(study_figures):
    fig, _ = study_figures["depth.png"]
    acc = next(ax for ax in fig.axes if ax.get_title() == "test accuracy: norm=none")
    xs = [x for ln in acc.lines for x in ln.get_xdata() if ln.get_linestyle() != "None"]
    at_two = sorted(x for x in xs if 1.5 < x < 3)
    assert len(at_two) == len(INITS) and len(set(at_two)) == len(INITS)
    assert at_two[0] > 2 / 2 ** (1 / 3) and at_two[-1] < 2 * 2 ** (1 / 3)  # closer than 4


# -- colour ----------------------------------------------------------------------------------
def test_heatmap_colours_span_the_data_and_text_reads_on_its_cell(study, study_figures):
    fig, _ = study_figures["heatmap.png"]
    means = [c.final("test_acc").mean for c in study]
    images = [ax.images[0] for ax in panels(fig)]
    assert len(images) == len(DEPTHS)
    for image in images:
        assert image.norm.vmin == min(means) and image.norm.vmax == max(means)
    colours = set()
    for ax, image in zip(panels(fig), images, strict=True):
        values = image.get_array()
        for text in ax.texts:
            j, i = (round(v) for v in text.get_position())
            value = values[i, j]
            assert text.get_text().startswith(f"{value:.3f}")  # the value printed in its cell
            cell = image.cmap(image.norm(value))
            expected = report_plots.text_color(cell)
            assert text.get_color() == expected
            colours.add(expected)
    assert colours == {"black", "white"}
    assert report_plots.text_color((0.267, 0.005, 0.329, 1.0)) == "white"  # viridis' low end
    assert report_plots.text_color((0.993, 0.906, 0.144, 1.0)) == "black"  # its high end


# -- log axes --------------------------------------------------------------------------------
def labelled(ax) -> list[tuple[float, str]]:
    """(value, text) of the labelled major ticks inside the y axis' view."""
    render(ax.figure)
    low, high = sorted(ax.get_ylim())
    return [
        (t.get_position()[1], t.get_text())
        for t in ax.get_yticklabels()
        if t.get_text() and low <= t.get_position()[1] <= high
    ]


@pytest.mark.parametrize(
    ("low", "high", "fewest"),
    [(8e-6, 1.3, 6), (0.4, 1.0, 4), (0.98, 1.02, 3), (0.01, 0.12, 4), (2.0, 40.0, 4)],
)
def test_log_ticks_label_every_decade_or_numbers_when_narrow(low, high, fewest):
    plt = report_plots.pyplot()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 2], [low, high])
    ax.set_yscale("log")
    ax.set_ylim(low, high)
    propagation_plots.log_ticks(ax.yaxis)
    ticks = labelled(ax)
    plt.close(fig)
    assert len(ticks) >= fewest, ticks
    decades = range(math.ceil(math.log10(low) - 1e-9), math.floor(math.log10(high) + 1e-9) + 1)
    values = [v for v, _ in ticks]
    for k in decades:
        assert any(math.isclose(v, 10.0**k) for v in values), (k, ticks)


def test_log_ticks_on_many_decades_tick_each_and_label_a_dozen():
    plt = report_plots.pyplot()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 2], [1e-24, 1.0])
    ax.set_yscale("log")
    ax.set_ylim(1e-24, 1.0)
    propagation_plots.log_ticks(ax.yaxis)
    ticks = labelled(ax)
    majors = [v for v in ax.yaxis.get_majorticklocs() if 1e-24 <= v <= 1.0]
    plt.close(fig)
    assert len(majors) == 25  # every decade ticked
    assert 6 <= len(ticks) <= 13 and any(math.isclose(v, 1.0) for v, _ in ticks)


def propagation_record(init: str, depth: int, factor: float) -> dict:
    """A propagation.json by hand: q flat near 2 (a narrow range), E[delta^2] over 4 decades."""
    layers = []
    for index in range(1, depth + 2):
        q = 2.0 * (1 + 0.05 * math.sin(index))
        g = 1e-5 * factor ** (index - 1)
        layers.append(
            {
                "index": index,
                "q": {"measured": q, "median": q * 0.98, "predicted": 2.0, "per_seed": [q] * 3},
                "grad_q": {"measured": g, "median": g * 0.9, "predicted": g, "per_seed": [g] * 3},
            }
        )
    return {
        "init": init,
        "widths": [784, *[64] * depth, 10],
        "depth": depth,
        "activation": "relu",
        "norm": "none",
        "inputs": {"dataset": "gaussian"},
        "seeds": [0, 1, 2],
        "layers": layers,
    }


def test_propagation_log_axes_are_labelled(tmp_path, monkeypatch):
    figures = []
    save = propagation_plots._save
    monkeypatch.setattr(
        propagation_plots, "_save", lambda fig, path: figures.append(fig) or save(fig, path)
    )
    record = propagation_record("he", 4, 10.0)
    propagation_plots.plot_run(record, tmp_path / "run.png")
    propagation_plots.plot_sweep(
        [record, propagation_record("xavier", 4, 8.0)], tmp_path / "sweep.png"
    )
    (run, sweep) = figures
    q_axis, grad_axis = run.axes
    assert len(labelled(q_axis)) >= 3  # q within a few % of 2: numbers, not one decade mark
    decades = {round(math.log10(v)) for v, _ in labelled(grad_axis)}
    assert set(range(-5, 0)) <= decades  # 1e-5 .. 1e-1: each decade labelled
    assert len(labelled(sweep.axes[0])) >= 3


# -- notes -----------------------------------------------------------------------------------
def test_notes_are_inside_their_panel(study_figures):
    figures = study_figures
    seen = 0
    for name in ("val.png", "gradient.png"):
        fig, _ = figures[name]
        renderer = render(fig)
        for ax in fig.axes:
            box = ax.get_window_extent(renderer)
            for text in ax.texts:
                if text.get_color() != report_plots.NOTE_COLOR:
                    continue
                seen += 1
                extent = text.get_window_extent(renderer)
                assert text.get_text().strip()
                assert box.x0 <= extent.x0 and extent.x1 <= box.x1, (name, text.get_text())
                assert box.y0 <= extent.y0 and extent.y1 <= box.y1, (name, text.get_text())
    val, _ = figures["val.png"]
    notes = [t.get_text() for ax in val.axes for t in ax.texts]
    assert any("xavier: 1 diverged" in n for n in notes)
    # layernorm's zoom panels: every init below 0.9, the long note still fits (wrapped)
    below = [n for n in notes if n.startswith("below 0.9")]
    assert len(below) >= len(DEPTHS) and any("\n" in n for n in below)
    assert all(init in "".join(below) for init in INITS)
    assert seen >= len(below)


def test_notes_that_cannot_fit_are_cut_and_say_so(tmp_path):
    plt = report_plots.pyplot()
    fig, ax = plt.subplots(figsize=(2.5, 1.5), layout="constrained")
    notes = report_plots._Notes()
    notes.add(ax, [f"init{i}: 1 failed, 2 of 3 seeds" for i in range(40)])
    notes.fit(fig)
    renderer = render(fig)
    (text,) = ax.texts
    extent, box = text.get_window_extent(renderer), ax.get_window_extent(renderer)
    plt.close(fig)
    assert text.get_text().endswith(" …")
    assert box.y0 <= extent.y0 and extent.y1 <= box.y1
    assert box.x0 <= extent.x0 and extent.x1 <= box.x1
