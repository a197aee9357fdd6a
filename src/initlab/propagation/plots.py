"""Plots and tables of propagation records (the propagation.json dicts). matplotlib; no torch.

Both the mean over seeds (filled markers: what the prediction is for, E[moment]) and the median
(hollow markers) are drawn: products of many layer factors spread log-normally, so deep in a net
the median sits below the mean by design, and a gap between the two is not a failed prediction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from initlab.atomic import save_figure_atomic
from initlab.propagation import PROPAGATION_FILE
from initlab.results import (
    MAX_RESULTS_BYTES,
    Field,
    ListOf,
    Obj,
    RefusedFile,
    check_value,
    find_named,
    read_json,
)

MEAN_LABEL = "mean over seeds (filled)"
MEDIAN_LABEL = "median over seeds (hollow)"
SEED_LABEL = "each seed (faint)"
PREDICTED_LABEL = "predicted (line)"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(record: Mapping[str, Any], key: str) -> dict[str, list]:
    """Layer index, mean, median, predicted and per-seed values of moment ``key``."""
    out: dict[str, list] = {k: [] for k in ("index", "mean", "median", "predicted", "per_seed")}
    for layer in record["layers"]:
        s = layer.get(key)
        if s is None:
            continue
        out["index"].append(layer["index"])
        out["mean"].append(s["measured"])
        out["median"].append(s["median"])
        out["predicted"].append(s["predicted"])
        out["per_seed"].append(s["per_seed"])
    return out


def _plain(value: float) -> str:
    """A tick value as a short number: 0.3, 20; 4e-05 as 4×10^-5 (mathtext)."""
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.4g}"
    exponent = math.floor(math.log10(abs(value)))
    mantissa = f"{value / 10**exponent:.3g}"
    head = "" if mantissa == "1" else rf"{mantissa}\times"
    return rf"${head}10^{{{exponent}}}$"


def _decade(value: float) -> str:
    return rf"$10^{{{round(math.log10(value))}}}$"


def log_ticks(axis: Any, max_labels: int = 12) -> None:
    """Readable ticks on a log axis (``ax.yaxis``), set once its limits are final: matplotlib's
    defaults label only whole decades, so a narrow range gets one label or none. Under 0.3
    decade: evenly spaced numbers; up to 2.5 decades: numbers at 1, 1.5, 2, 3, ... 9, then at 1,
    2, 3, 5, then at 1, 2, 5 times each power of 10 as the range widens (minor ticks at the
    other multiples); wider:
    every decade ticked, labelled while at most ``max_labels`` fit (else every k-th), minor
    ticks up to 8 decades."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

    low, high = sorted(axis.get_view_interval())
    if not (low > 0 and high > low and math.isfinite(high)):
        return
    decades = math.log10(high / low)
    span = int(decades) + 3
    if decades < 0.3:
        axis.set_major_locator(MaxNLocator(nbins=5))
        axis.set_major_formatter(FuncFormatter(lambda v, _: _plain(v)))
        axis.set_minor_locator(NullLocator())
    elif decades <= 2.5:
        # the widest gap between two labels: 0.18, 0.3, 0.4 decade
        subs = (1, 1.5, *range(2, 10)) if decades < 0.8 else (1, 2, 3, 5)
        subs = (1, 2, 5) if decades > 1.5 else subs
        axis.set_major_locator(LogLocator(10, subs=subs, numticks=9 * span))
        axis.set_major_formatter(FuncFormatter(lambda v, _: _plain(v)))
        axis.set_minor_locator(LogLocator(10, subs=tuple(range(1, 10)), numticks=9 * span))
    else:
        step = math.ceil(decades / max_labels)
        axis.set_major_locator(LogLocator(10, subs=(1.0,), numticks=span))
        axis.set_major_formatter(
            FuncFormatter(lambda v, _: _decade(v) if round(math.log10(v)) % step == 0 else "")
        )
        minor = LogLocator(10, subs=tuple(range(2, 10)), numticks=9 * span)
        axis.set_minor_locator(minor if decades <= 8 else NullLocator())
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _positive(xs: Sequence, ys: Sequence) -> tuple[list, list]:
    pairs = [(a, b) for a, b in zip(xs, ys, strict=True) if b is not None and b > 0]
    return [a for a, _ in pairs], [b for _, b in pairs]


def _draw(ax, record: Mapping[str, Any], key: str, color: str) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    s = _series(record, key)
    for i, vals in zip(s["index"], s["per_seed"], strict=True):
        xs, ys = _positive([i] * len(vals), vals)
        ax.scatter(xs, ys, s=6, color=color, alpha=0.25, linewidths=0)
    ax.plot(*_positive(s["index"], s["mean"]), "o", color=color, ms=5)
    ax.plot(*_positive(s["index"], s["median"]), "o", mfc="none", mec=color, ms=8, mew=1.2)
    xs, ys = _positive(s["index"], s["predicted"])
    if xs:
        ax.plot(xs, ys, "-", color=color, lw=1.5)


def _legend(ax, colors: Mapping[str, str]) -> None:
    """One entry per init (its colour), then what each mark means (in grey)."""
    from matplotlib.lines import Line2D

    grey = "0.35"
    handles = [Line2D([], [], color=c, marker="o", lw=1.5, label=n) for n, c in colors.items()]
    handles += [
        Line2D([], [], color=grey, marker="o", ls="none", ms=5, label=MEAN_LABEL),
        Line2D([], [], mec=grey, mfc="none", marker="o", ls="none", ms=8, label=MEDIAN_LABEL),
        Line2D([], [], color=grey, marker="o", ls="none", ms=3, alpha=0.4, label=SEED_LABEL),
        Line2D([], [], color=grey, lw=1.5, label=PREDICTED_LABEL),
    ]
    ax.legend(handles=handles, fontsize=7)


def _title(record: Mapping[str, Any]) -> str:
    widths = "-".join(map(str, record["widths"]))
    if len(record["widths"]) > 6:
        w = record["widths"]
        widths = f"{w[0]}-{w[1]}x{record['depth']}-{w[-1]}"
    return (
        f"{widths}, {record['activation']}, norm={record['norm']}, "
        f"{record['inputs']['dataset']} inputs, {len(record['seeds'])} seeds"
    )


def _save(fig, path: Path) -> Path:
    """Save a figure atomically, and close it whether or not the save succeeds (every plot ends
    here)."""
    try:
        return save_figure_atomic(fig, path)
    finally:
        _pyplot().close(fig)


def plot_run(record: Mapping[str, Any], path: str | Path) -> Path:
    """q_l and E[delta_l^2] against the layer index (log axis): seeds, mean, median, predicted."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for ax, key, ylabel in (
        (axes[0], "q", "q_l = E[h_l^2] (forward)"),
        (axes[1], "grad_q", "E[delta_l^2] = E[(dL/dh_l)^2] (backward)"),
    ):
        _draw(ax, record, key, "C0")
        _legend(ax, {record["init"]: "C0"})
        ax.set_yscale("log")
        log_ticks(ax.yaxis)
        ax.set_xlabel("layer l")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"init={record['init']}: {_title(record)}", fontsize=10)
    return _save(fig, path)


def plot_sweep(records: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """One panel per network (widths, activation, norm, inputs), one colour per init."""
    plt = _pyplot()
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in sorted(records, key=lambda r: (r["depth"], r["widths"], r["init"])):
        groups.setdefault(_title(r), []).append(r)
    inits = sorted({r["init"] for r in records})
    colors = {name: f"C{i % 10}" for i, name in enumerate(inits)}
    cols = min(3, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(5.5 * cols, 4.2 * rows), squeeze=False, layout="constrained"
    )
    for ax, (title, group) in zip(axes.flat, groups.items(), strict=False):
        for r in group:
            _draw(ax, r, "q", colors[r["init"]])
        _legend(ax, {r["init"]: colors[r["init"]] for r in group})
        ax.set_yscale("log")
        log_ticks(ax.yaxis)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("layer l")
        ax.set_ylabel("q_l = E[h_l^2]")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(groups) :]:
        ax.set_visible(False)
    fig.suptitle(
        "q_l at init: mean over seeds (filled), median (hollow), each seed (faint), "
        "predicted (line)",
        fontsize=10,
    )
    return _save(fig, path)


def has_spectrum(record: Mapping[str, Any]) -> bool:
    """Whether a record holds a measured Jacobian spectrum (``propagate.jacobian_inputs`` > 0
    and a net the measurement supports)."""
    j = record.get("jacobian")
    return isinstance(j, Mapping) and bool(j.get("available"))


def _moment_text(j: Mapping[str, Any], key: str) -> str:
    s = j[key]
    if s["measured"] is None:
        return f"{key} -"
    se = f" ± {s['seed_se']:.2g}" if s.get("seed_se") is not None else ""
    return f"{key} {s['measured']:.3g}{se}"


def _init_label(record: Mapping[str, Any]) -> str:
    """The init, with mean_field's weight ensemble (what the spectrum depends on)."""
    weights = record.get("init_params", {}).get("weights")
    return f"{record['init']} ({weights})" if weights else record["init"]


def plot_spectrum(record: Mapping[str, Any], path: str | Path) -> Path | None:
    """The singular values of J = dh_L/dh_1 (``initlab.propagation.spectrum``), every input and
    seed: a histogram of log10 s, with the measured and predicted m1 = E[s^2] and spread =
    Var(s^2)/m1^2 in the legend, and sqrt(m1) marked (solid: measured, dashed: predicted). None
    for a record without a spectrum."""
    if not has_spectrum(record):
        return None
    j = record["jacobian"]
    h = j["histogram"]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    edges, counts = h["log10_edges"], h["counts"]
    if counts:
        total = sum(counts) or 1
        bins = zip(counts, edges[:-1], edges[1:], strict=True)
        density = [c / total / (b - a) if b > a else 0.0 for c, a, b in bins]
        ax.stairs(density, edges, fill=True, alpha=0.45, color="C0")
    measured = ", ".join(_moment_text(j, k) for k in ("m1", "spread"))
    handles: list[Any] = [Patch(color="C0", alpha=0.45, label=f"measured: {measured}")]
    m1 = j["m1"]["measured"]
    if m1 and m1 > 0:
        handles.append(ax.axvline(0.5 * math.log10(m1), color="C0", lw=1.5, label="sqrt(m1)"))
    pred_m1, pred_spread = j["m1"]["predicted"], j["spread"]["predicted"]
    if pred_m1 is not None and pred_m1 > 0:
        text = f"predicted: m1 {pred_m1:.3g}, spread {pred_spread:.3g} (sqrt(m1) dashed)"
        x = 0.5 * math.log10(pred_m1)
        handles.append(ax.axvline(x, color="C3", ls="--", lw=1.5, label=text))
    else:
        note = f"no prediction: {j.get('prediction_note')}"
        handles.append(Line2D([], [], color="none", label=note))
    if h["zero_fraction"]:
        zeros = f"{h['zero_fraction']:.0%} of the values below float64 resolution (not drawn)"
        handles.append(Line2D([], [], color="none", label=zeros))
    ax.legend(handles=handles, fontsize=7, loc="upper left")
    ax.set_xlabel("log10 s (singular values of J = dh_L/dh_1)")
    ax.set_ylabel("density")
    ax.grid(True, alpha=0.3)
    shape = "x".join(map(str, j["shape"]))
    fig.suptitle(
        f"init={_init_label(record)}: {_title(record)}; J {shape}, {j['factors']} factors, "
        f"{j['inputs']} inputs per seed",
        fontsize=9,
    )
    return _save(fig, path)


def plot_spectrum_sweep(records: Sequence[Mapping[str, Any]], path: str | Path) -> Path | None:
    """The spread of the Jacobian's spectrum against depth: one panel per network family (width,
    activation, norm, inputs), one colour per init (and weight ensemble); measured (mean over
    seeds, bars +- one seed standard error) and predicted (dashed line), log-log. None when no
    record holds a spectrum."""
    records = [r for r in records if has_spectrum(r)]
    if not records:
        return None
    plt = _pyplot()
    from matplotlib.ticker import NullLocator

    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        widths = sorted(set(r["hidden_sizes"]))
        key = (
            f"width {'/'.join(map(str, widths))}, {r['activation']}, norm={r['norm']}, "
            f"{r['inputs']['dataset']} inputs"
        )
        groups.setdefault(key, []).append(r)
    labels = sorted({_init_label(r) for r in records})
    colors = {name: f"C{i % 10}" for i, name in enumerate(labels)}
    cols = min(3, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(5.5 * cols, 4.2 * rows), squeeze=False, layout="constrained"
    )
    for ax, (title, group) in zip(axes.flat, sorted(groups.items()), strict=False):
        for label in sorted({_init_label(r) for r in group}):
            rs = sorted((r for r in group if _init_label(r) == label), key=lambda r: r["depth"])
            pts = [(r["depth"], r["jacobian"]["spread"]) for r in rs]
            meas = [(d, s["measured"], s.get("seed_se") or 0.0) for d, s in pts if s["measured"]]
            color = colors[label]
            if meas:
                ds, ms, es = zip(*meas, strict=True)
                kw = {"fmt": "o", "ms": 5, "capsize": 3, "label": f"{label} measured"}
                ax.errorbar(ds, ms, yerr=es, color=color, **kw)
            pred = [(d, s["predicted"]) for d, s in pts if s["predicted"]]
            if pred:
                xs, ys = zip(*pred, strict=True)
                ax.plot(xs, ys, "--", color=color, lw=1.2, label=f"{label} predicted")
        ax.set_xscale("log")
        ax.set_yscale("log")
        depths = sorted({r["depth"] for r in group})
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.xaxis.set_minor_locator(NullLocator())
        log_ticks(ax.yaxis)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("depth (hidden layers)")
        ax.set_ylabel("spread = Var(s²) / E[s²]²")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(groups) :]:
        ax.set_visible(False)
    fig.suptitle(
        "Jacobian spectrum at init (J = dh_L/dh_1): spread against depth,\nmeasured (points, "
        "mean ± seed s.e.) and free-probability prediction (dashed)",
        fontsize=10,
    )
    return _save(fig, path)


def find_propagation(sweep_dir: str | Path) -> list[Path]:
    """Every propagation.json below a run or sweep directory, sorted (a dangling symlink too:
    initlab.results.find_named)."""
    return find_named(sweep_dir, PROPAGATION_FILE)


# What a propagation.json must hold for plot_run / plot_sweep to draw it (the record has more;
# initlab.results' schema types).
_MOMENT = Field(
    Obj(
        {
            "measured": Field("number", nullable=True, required=True),
            "median": Field("number", nullable=True, required=True),
            "predicted": Field("number", nullable=True, required=True),
            "per_seed": Field(ListOf(Field("number", nullable=True)), required=True),
        }
    ),
    nullable=True,
)
DRAWN = Field(
    Obj(
        {
            "init": Field("nonempty str", required=True),
            "activation": Field("str", required=True),
            "norm": Field("str", required=True),
            "depth": Field("int", required=True, low=0),
            "widths": Field(ListOf(Field("int", low=1), nonempty=True), required=True),
            "seeds": Field(ListOf(Field("int")), required=True),
            "inputs": Field(Obj({"dataset": Field("str", required=True)}), required=True),
            "layers": Field(
                ListOf(
                    Field(
                        Obj({"index": Field("int", required=True), "q": _MOMENT, "grad_q": _MOMENT})
                    )
                ),
                required=True,
            ),
        }
    )
)


def propagation_problem(record: Any) -> str | None:
    """Why ``record`` (a parsed propagation.json) is not a record the plots can draw; None when
    it is one. One line."""
    if not isinstance(record, dict):
        return f"not a JSON object ({type(record).__name__})"
    return check_value(record, DRAWN, "")


def read_propagation(paths: Sequence[Path]) -> tuple[list[dict], list[tuple[Path, str]]]:
    """The records at ``paths`` that the plots can draw, and (path, why) for each other one: not
    a regular file (never opened), too large, not strict JSON, or not such a record."""
    records, skipped = [], []
    for path in paths:
        try:
            record = read_json(path, MAX_RESULTS_BYTES, f"a {PROPAGATION_FILE}")
        except RefusedFile as exc:
            why: str | None = str(exc)
        except Exception as exc:  # OSError, not UTF-8, not JSON, nested too deep
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        else:
            why = propagation_problem(record)
        if why is None:
            records.append(record)
        else:
            skipped.append((path, why))
    return records, skipped


def table(record: Mapping[str, Any]) -> str:
    """A markdown table of one record, per layer: the mean over seeds (``measured``), the median
    and the prediction of q and E[delta^2]; post q, dead fraction and gradient norm (means); the
    pair correlation c of the pre-activations, mean and predicted (records that have it)."""

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.3g}"

    def corr(v: float | None) -> str:  # near 1 in deep nets: 3 significant digits hide the gap
        return "-" if v is None else f"{v:.4f}"

    def mean(s: Mapping[str, Any] | None) -> str:
        return fmt(s["measured"]) if s else "-"

    lines = [
        "| layer | fan_in | fan_out | q mean | q median | q predicted | post q | dead "
        "| E[delta^2] mean | E[delta^2] median | E[delta^2] predicted | grad norm "
        "| c mean | c predicted |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for layer in record["layers"]:
        q, g, c = layer["q"], layer["grad_q"], layer.get("c") or {}
        lines.append(
            f"| {layer['index']} | {layer['fan_in']} | {layer['fan_out']} "
            f"| {fmt(q['measured'])} | {fmt(q['median'])} | {fmt(q['predicted'])} "
            f"| {mean(layer['post_q'])} | {mean(layer['dead_fraction'])} "
            f"| {fmt(g['measured'])} | {fmt(g['median'])} | {fmt(g['predicted'])} "
            f"| {mean(layer['weight_grad_norm'])} "
            f"| {corr(c.get('measured'))} | {corr(c.get('predicted'))} |"
        )
    return "\n".join(lines)


# -- residual nets: the stream per block ---------------------------------------------------------
def is_residual(record: Mapping[str, Any]) -> bool:
    """Whether a record is a residual net's (``initlab.propagation.residual``): its layers are the
    stream's points, drawn by ``plot_residual`` / ``plot_residual_sweep``, not per Linear."""
    return bool(record.get("residual"))


def _residual_title(record: Mapping[str, Any]) -> str:
    w = record["widths"]
    m = record["residual"]["branch_layers"]
    return (
        f"{w[0]}-[{w[1]}, {record['depth']} blocks x {m} layers]-{w[-1]}, "
        f"{record['activation']}, norm={record['norm']}, {record['inputs']['dataset']} inputs, "
        f"{len(record['seeds'])} seeds"
    )


def _stream(record: Mapping[str, Any]) -> dict[str, Any]:
    """The stream's points only (index 0 the embedding, then the blocks), without the logits."""
    return {**record, "layers": [la for la in record["layers"] if la["name"] != "out"]}


def _draw_error(ax, record: Mapping[str, Any], color: str) -> None:
    """measured mean / predicted - 1 per block, with +-1 standard error of the mean over seeds."""
    xs, ys, es = [], [], []
    for layer in _stream(record)["layers"]:
        q = layer["q"]
        if q["measured"] is None or not q["predicted"]:
            continue
        sem = (q["seed_std"] or 0.0) / math.sqrt(len(q["per_seed"]))
        xs.append(layer["index"])
        ys.append(q["measured"] / q["predicted"] - 1.0)
        es.append(sem / q["predicted"])
    if xs:
        ax.errorbar(xs, ys, yerr=es, fmt="o-", color=color, ms=4, lw=1, capsize=2)


def plot_residual(record: Mapping[str, Any], path: str | Path) -> Path:
    """A residual net at init: the stream's q_l per block (log axis: seeds, mean, median,
    predicted), and the relative error of the mean against the recursion, +-1 standard error."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    stream = _stream(record)
    _draw(axes[0], stream, "q", "C0")
    _legend(axes[0], {record["init"]: "C0"})
    axes[0].set_yscale("log")
    log_ticks(axes[0].yaxis)
    axes[0].set_ylabel("q_l = E[h_l^2] of the stream")
    _draw_error(axes[1], record, "C0")
    axes[1].axhline(0.0, color="0.5", lw=1)
    axes[1].set_ylabel("measured mean / predicted - 1 (+-1 s.e.)")
    for ax in axes:
        ax.set_xlabel("block l (0: the embedding)")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"init={record['init']}: {_residual_title(record)}", fontsize=10)
    return _save(fig, path)


def plot_residual_sweep(records: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """One panel per residual network (``_residual_title``), one colour per init: the stream's
    q_l per block, measured and predicted."""
    plt = _pyplot()
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in sorted(records, key=lambda r: (r["depth"], r["widths"], r["init"])):
        groups.setdefault(_residual_title(r), []).append(r)
    colors = {name: f"C{i % 10}" for i, name in enumerate(sorted({r["init"] for r in records}))}
    cols = min(3, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(5.5 * cols, 4.2 * rows), squeeze=False, layout="constrained"
    )
    for ax, (title, group) in zip(axes.flat, groups.items(), strict=False):
        for r in group:
            _draw(ax, _stream(r), "q", colors[r["init"]])
        _legend(ax, {r["init"]: colors[r["init"]] for r in group})
        ax.set_yscale("log")
        log_ticks(ax.yaxis)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("block l (0: the embedding)")
        ax.set_ylabel("q_l = E[h_l^2] of the stream")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(groups) :]:
        ax.set_visible(False)
    fig.suptitle("residual stream at init: mean (filled), median (hollow), predicted (line)")
    return _save(fig, path)


def residual_table(record: Mapping[str, Any]) -> str:
    """A markdown table of a residual record, per stream point: the gate, q's mean over seeds,
    median, seed sd, prediction and relative error, and the branch's E[f^2] mean and predicted."""

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.4g}"

    lines = [
        "| block | gate | q mean | q median | q seed sd | q predicted | mean/predicted - 1 "
        "| E[f^2] mean | E[f^2] predicted |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for layer in record["layers"]:
        q, f = layer["q"], layer.get("branch_q") or {}
        err = (
            f"{q['measured'] / q['predicted'] - 1:+.3f}"
            if q["measured"] is not None and q["predicted"]
            else "-"
        )
        label = layer["index"] if layer["name"].startswith("block") else layer["name"]
        lines.append(
            f"| {label} | {fmt(layer.get('gate'))} | {fmt(q['measured'])} | {fmt(q['median'])} "
            f"| {fmt(q['seed_std'])} | {fmt(q['predicted'])} | {err} "
            f"| {fmt(f.get('measured'))} | {fmt(f.get('predicted'))} |"
        )
    return "\n".join(lines)
