"""Lightning callbacks that shape a run: when to validate, how fast it trained, what it prints."""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)


class ValidateAtEpochEnd(Callback):
    """Validate at the end of every epoch as well as every ``val_check_interval`` steps.

    Lightning does one or the other: an integer ``val_check_interval`` counts steps (globally with
    ``check_val_every_n_epoch=None``) but skips the epoch's last batch unless the epoch length is a
    multiple of it. The study wants convergence in steps *and* a validation at each epoch end, so
    the epoch loop's decision is widened to include the last batch.
    """

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loop = trainer.fit_loop.epoch_loop
        decide = getattr(loop, "_should_check_val_fx", None)
        if decide is None or getattr(decide, "_initlab", False):
            if decide is None:
                raise RuntimeError(
                    "this Lightning version has no TrainingEpochLoop._should_check_val_fx; "
                    "ValidateAtEpochEnd needs updating"
                )
            return

        def should_check_val(data_fetcher: Any) -> bool:
            if decide(data_fetcher):
                return True
            return loop._should_check_val_epoch() and loop.batch_progress.is_last_batch

        should_check_val._initlab = True  # type: ignore[attr-defined]
        loop._should_check_val_fx = should_check_val


class ThroughputTimer(Callback):
    """Training samples per second of training-loop time (validation time excluded)."""

    def __init__(self) -> None:
        self.samples = 0
        self.train_s = 0.0
        self.val_s = 0.0
        self._t_train: float | None = None
        self._t_val: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t_train = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.samples += len(batch[1])

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t_val = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._t_val is not None:
            self.val_s += time.perf_counter() - self._t_val
            self._t_val = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._t_train is not None:
            self.train_s += time.perf_counter() - self._t_train - self.val_s
            self._t_train = None

    @property
    def samples_per_s(self) -> float | None:
        return self.samples / self.train_s if self.train_s > 0 else None


class EpochLine(Callback):
    """One concise log line per epoch: the quiet alternative to a progress bar (sweeps, logs)."""

    def __init__(self, timer: ThroughputTimer | None = None) -> None:
        self.timer = timer

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # callbacks run before the module's own epoch-end hook, so ask the module directly
        train = pl_module.epoch_train_metrics()
        m = trainer.callback_metrics
        val = " ".join(
            f"{k} {float(m[f'val/{k[4:]}']):.4f}"
            for k in ("val_loss", "val_acc")
            if f"val/{k[4:]}" in m
        )
        line = (
            f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} step {trainer.global_step}"
            f" train_loss {train['train_loss']:.4f} train_acc {train['train_acc']:.4f} {val}"
        )
        if self.timer is not None and self.timer._t_train is not None:
            elapsed = time.perf_counter() - self.timer._t_train - self.timer.val_s
            if elapsed > 0:
                line += f" ({self.timer.samples / elapsed:,.0f} samples/s)"
        log.info(line)
