"""The file names the report writes and reads (one place for each)."""

from __future__ import annotations

SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
VAL_PLOT = "val_acc_vs_step.png"
HEATMAP_PLOT = "test_acc_heatmap.png"
DEPTH_PLOT = "depth.png"
GRADIENT_PLOT = "gradient_profile.png"
PHASE_PLOT = "phase_diagram.png"
PROPAGATION_PLOT = "propagation.png"
SPECTRUM_PLOT = "spectrum_vs_depth.png"
