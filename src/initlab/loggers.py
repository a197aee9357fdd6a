"""The run's logger (``logger.type``): TensorBoard event files, or metrics.csv and hparams.yaml,
written into its run dir (or ``logger.subdir``) through its owner, ``initlab.rundir.RunDir``.

Both continue across a resume or an extension: the owner first drops what a killed attempt logged
after the step the run resumes from (``RunDir.truncate_logs``), then the logger appends.
Lightning's own CSVLogger would delete metrics.csv instead ("previous log files will be
deleted"), so the csv logger is initlab's.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from initlab.atomic import write_atomic
from initlab.rundir import HPARAMS_YAML, METRICS_CSV, RunDir


class CSVMetrics(Logger):
    """metrics.csv (a ``step`` column, then one per metric, sorted) and hparams.yaml, appended
    to: rows are buffered and written at each ``save`` (a new metric rewrites the file with the
    wider header, atomically)."""

    def __init__(self, log_dir: str | Path) -> None:
        super().__init__()
        self._dir = Path(log_dir)
        self._rows: list[dict[str, Any]] = []

    @property
    def name(self) -> str:
        return ""

    @property
    def version(self) -> str:
        return ""

    @property
    def log_dir(self) -> str:
        return str(self._dir)

    @property
    def save_dir(self) -> str:
        return str(self._dir)

    @property
    def metrics_file(self) -> Path:
        return self._dir / METRICS_CSV

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        values = dict(params) if isinstance(params, Mapping) else vars(params)
        text = yaml.safe_dump(values, sort_keys=False)
        write_atomic(self._dir / HPARAMS_YAML, lambda f: f.write(text.encode("utf-8")))

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._rows.append({"step": step, **{k: float(v) for k, v in metrics.items()}})

    @rank_zero_only
    def save(self) -> None:
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        path = self.metrics_file
        old: list[dict[str, Any]] = []
        header: list[str] = []
        if path.is_file():
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                header = list(reader.fieldnames or [])
                old = list(reader) if set().union(*rows) - set(header) else []
        keys = set(header).union(*rows) - {"step"}
        fields = ["step", *sorted(keys)]
        if header == fields:
            with open(path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=fields).writerows(rows)
            return
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=fields)
        writer.writeheader()
        writer.writerows([*old, *rows])
        write_atomic(path, lambda f: f.write(text.getvalue().encode("utf-8")))

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()


def make_logger(spec: Mapping[str, Any], rundir: RunDir) -> Logger | None:
    """The run's logger, writing into the run dir itself (or ``logger.subdir``): one run per
    job dir, named as the job (its overrides), so no version_N."""
    if spec["type"] == "none":
        return None
    log_dir = rundir.log_dir(spec["subdir"])
    if spec["type"] == "csv":
        return CSVMetrics(log_dir)
    return TensorBoardLogger(
        save_dir=str(log_dir), name="", version="", default_hp_metric=False, log_graph=False
    )
