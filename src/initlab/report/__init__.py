"""The report of a sweep: every results.json below a directory, aggregated over seeds.

``write_report(sweep_dir)`` writes into ``sweep_dir``:

- ``summary.csv``: one row per run, every field of its results.json flattened (``final.test_acc``,
  ``config.optimizer.lr``, ...; the per-validation ``history`` is summarised by its length), plus
  one row per unreadable results.json (status ``unreadable``);
- ``summary.md``: the sweep's answer first, read from the tables below it (``headline``), and a
  warning with the command that adds seeds when a configuration rests on one run; a header
  (dataset, network, optimizer, run tally), then one row per
  configuration (everything that defines a run except its seed) with mean ± sample std over
  seeds, best test accuracy first; for the ``tutorial`` study, the tutorial's claim beside what
  was measured; the claims of the study tested seed by seed (holds / contradicted / unresolved);
  then the failed and diverged runs, missing seeds and unreadable files;
- plots: ``val_acc_vs_step.png``, ``test_acc_heatmap.png``, ``depth.png`` (when depth varies),
  ``gradient_profile.png`` (when the runs recorded a layer profile), ``propagation.png`` (when
  ``propagation.json`` files are below the directory).

The modules, by job: ``load`` (reading records), ``aggregate`` (configurations and their
statistics over seeds), ``stats`` (paired t intervals), ``claims`` (what each study claims and
the verdicts), ``phase`` (the phase diagram), ``headline`` (summary.md's answer and one-run
warning), ``tables`` (summary.md, summary.csv), ``plots``, ``files`` (the file names).
Every file is written atomically (temp file in the same directory, fsync, rename), so a crash
never leaves a half file. A results.json that cannot be parsed is listed as unreadable, never
trusted. Standard library + numpy + matplotlib (imported only to plot); no Hydra, no torch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from initlab.atomic import save_figure_atomic
from initlab.propagation import PROPAGATION_FILE
from initlab.report.aggregate import group_configs, sort_key, speed_threshold
from initlab.report.files import (
    DEPTH_PLOT,
    GRADIENT_PLOT,
    HEATMAP_PLOT,
    PHASE_PLOT,
    PROPAGATION_PLOT,
    SPECTRUM_PLOT,
    SUMMARY_CSV,
    SUMMARY_MD,
    VAL_PLOT,
)
from initlab.report.load import load_runs, pct, report_thresholds
from initlab.report.plots import (
    plot_depth,
    plot_gradient_profile,
    plot_heatmap,
    plot_phase_diagram,
    plot_propagation,
    plot_spectrum,
    plot_val_curves,
)
from initlab.report.tables import render_summary, summary_csv
from initlab.results import write_text_atomic

__all__ = [
    "DEPTH_PLOT",
    "GRADIENT_PLOT",
    "HEATMAP_PLOT",
    "PHASE_PLOT",
    "PROPAGATION_FILE",
    "PROPAGATION_PLOT",
    "SUMMARY_CSV",
    "SUMMARY_MD",
    "VAL_PLOT",
    "load_runs",
    "save_figure_atomic",
    "write_report",
]

log = logging.getLogger(__name__)


def write_report(
    sweep_dir: str | Path, plots: bool = True, out_dir: str | Path | None = None
) -> Path:
    """Read every results.json below ``sweep_dir`` and write summary.csv, the plots and
    summary.md into it, or into ``out_dir`` (made if missing) when given (each atomically).
    Returns the path of summary.md.

    A plot that fails is named in summary.md with its error; the tables are written anyway.
    ``plots=False`` writes the tables only.
    Raises FileNotFoundError when ``sweep_dir`` is not a directory, OSError when the report
    cannot be written (a read-only directory), before any plot is drawn.
    """
    root = Path(sweep_dir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{sweep_dir} is not a directory")
    out = root if out_dir is None else Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    runs, unreadable = load_runs(root)
    configs = sorted(group_configs(runs), key=sort_key)
    speed_key = speed_threshold(runs, report_thresholds(runs))
    write_text_atomic(out / SUMMARY_CSV, summary_csv(runs, unreadable, root))

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
            lambda: plot_val_curves(configs, out / VAL_PLOT),
        )
        attempt(
            HEATMAP_PLOT,
            "Mean test accuracy, init x norm",
            lambda: plot_heatmap(configs, out / HEATMAP_PLOT),
        )
        if len({c.key["depth"] for c in configs} - {None}) > 1:
            attempt(
                DEPTH_PLOT,
                f"Test accuracy and steps to {pct(speed_key)}% val accuracy against depth, "
                "per init",
                lambda: plot_depth(configs, out / DEPTH_PLOT, speed_key),
            )
        attempt(
            PHASE_PLOT,
            "Phase diagram: accuracy over (σ_w², depth) with the mean-field depth scales",
            lambda: plot_phase_diagram(configs, out / PHASE_PLOT),
        )
        attempt(
            GRADIENT_PLOT,
            "Back-propagated gradient across layers, at step 0 and at the end, per init",
            lambda: plot_gradient_profile(configs, out / GRADIENT_PLOT),
        )
        attempt(
            SPECTRUM_PLOT,
            "Spread of the input-output Jacobian's spectrum at init against depth, measured "
            "and predicted",
            lambda: plot_spectrum(configs, out / SPECTRUM_PLOT),
        )
    if plots and not (root / PROPAGATION_FILE).exists():  # a propagation run has its own plot
        attempt(
            PROPAGATION_PLOT,
            "Signal propagation at init: q_l per layer, measured and predicted",
            lambda: plot_propagation(root, out / PROPAGATION_PLOT),
        )
    text = render_summary(root, runs, unreadable, configs, drawn, errors)
    return write_text_atomic(out / SUMMARY_MD, text)
