"""The file names the report writes and reads (one place for each), and the atomic figure writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from initlab.results import write_atomic

SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
VAL_PLOT = "val_acc_vs_step.png"
HEATMAP_PLOT = "test_acc_heatmap.png"
DEPTH_PLOT = "depth.png"
GRADIENT_PLOT = "gradient_profile.png"
PHASE_PLOT = "phase_diagram.png"
PROPAGATION_PLOT = "propagation.png"
SPECTRUM_PLOT = "spectrum_vs_depth.png"


def save_figure_atomic(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """``fig.savefig`` as PNG into a temp file in the same directory, then rename."""
    return write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight"))
