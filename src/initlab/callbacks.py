"""Lightning callbacks that shape a run: when to validate, how fast it trained, what it prints."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException

from initlab._lightning import (
    can_stop_early,
    check_internals,
    epoch_wants_validation,
    install_val_decision,
    is_last_batch,
    request_stop_after_step,
)
from initlab.data import steps_of

log = logging.getLogger(__name__)


class ValidateAtEpochEnd(Callback):
    """Validate every ``val_check_interval`` optimizer steps and at the end of every epoch.

    Lightning does one or the other: an integer ``val_check_interval`` counts batches (globally
    with ``check_val_every_n_epoch=None``) but skips the epoch's last batch unless the epoch
    length is a multiple of it. The study wants convergence in steps *and* a validation at each
    epoch end; and a training batch may be a block of several steps (``steps_per_execution``),
    whose ends fall on the step multiples. So the epoch loop's decision is replaced: an integer
    interval with ``check_val_every_n_epoch=None`` counts ``global_step``; other settings (a
    fraction of the epoch, a time) keep Lightning's decision; both add the epoch's last batch.
    """

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        check_internals(trainer)  # a Lightning without them fails here, naming the one missing
        interval = trainer.val_check_interval
        every = (
            interval
            if isinstance(interval, int)
            and not isinstance(interval, bool)
            and trainer.check_val_every_n_epoch is None
            else None
        )

        def should_check_val(data_fetcher: Any, lightning_decides: Any) -> bool:
            if not epoch_wants_validation(trainer):
                return False
            if is_last_batch(trainer):
                return True
            if every is None:
                return lightning_decides(data_fetcher)
            if trainer.should_stop and can_stop_early(trainer):
                return True  # as Lightning: validate before an early stop
            return trainer.global_step % every == 0

        install_val_decision(trainer, should_check_val)


class ThroughputTimer(Callback):
    """Training samples per second of training-loop time: a clock that pauses for validation.

    Its counts are part of the checkpoint, so a resumed run reports the whole run's throughput.
    """

    def __init__(self) -> None:
        self.samples = 0
        self.train_s = 0.0
        self.val_s = 0.0
        self._training = False
        self._since: float | None = None  # the train clock runs since then
        self._t_val: float | None = None
        self._step = 0

    def train_seconds(self) -> float:
        """Training time so far, the running stretch included."""
        running = time.perf_counter() - self._since if self._since is not None else 0.0
        return self.train_s + running

    def _pause(self) -> None:
        self.train_s = self.train_seconds()
        self._since = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._training, self._since = True, time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        trained = trainer.global_step - self._step  # a block may stop early (max_steps, NaN)
        self.samples += sum(len(y) for _, y in steps_of(batch)[:trained])

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause()
        self._t_val = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._t_val is not None:
            self.val_s += time.perf_counter() - self._t_val
            self._t_val = None
        if self._training:
            self._since = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause()
        self._training = False

    def state_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "train_s": self.train_seconds(), "val_s": self.val_s}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.samples = state_dict["samples"]
        self.train_s = state_dict["train_s"]
        self.val_s = state_dict["val_s"]

    @property
    def samples_per_s(self) -> float | None:
        seconds = self.train_seconds()
        return self.samples / seconds if seconds > 0 else None


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
        if self.timer is not None and self.timer.samples_per_s:
            line += f" ({self.timer.samples_per_s:,.0f} samples/s)"
        log.info(line)


class CheckpointOnSignal(Callback):
    """Save a checkpoint when the run is told to stop, so re-running the command resumes it.

    SIGTERM (a kill, SLURM's preemption), SIGINT (Ctrl-C) and each of ``signals`` (e.g.
    SIGUSR2, submitit's timeout warning) make Lightning stop after the current step, consistently
    (it raises its SIGTERMException there); this callback then saves ``path`` and hands a signal
    of ``signals`` on to the handler that was installed before (submitit's requeue). A second
    Ctrl-C stops at once (KeyboardInterrupt), without a new checkpoint. ``received`` is the signal
    that stopped the run; ``saved`` whether its checkpoint was written (a full disk: not).
    """

    def __init__(self, path: str | Path, signals: tuple[str, ...] = ("SIGUSR2",)) -> None:
        self.path = Path(path)
        self.signals = [getattr(signal, name) for name in signals]
        self._previous: dict[int, Any] = {}
        self.received: int | None = None
        self.saved = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        def handler(signum: int, frame: Any) -> None:
            if signum == signal.SIGINT and self.received is not None:
                raise KeyboardInterrupt  # the second Ctrl-C: stop now
            self.received = signum
            request_stop_after_step(trainer)

        if threading.current_thread() is not threading.main_thread():
            return  # Python lets only the main thread install signal handlers
        for signum in (*self.signals, signal.SIGINT):
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, handler)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        name = signal.Signals(self.received or signal.SIGTERM).name
        try:
            trainer.save_checkpoint(self.path)
        except OSError as exc:  # e.g. no space left: the previous checkpoint is intact
            log.error("stopped by %s at step %d; %s", name, trainer.global_step, exc)
        else:
            self.saved = True
            log.warning(
                "stopped by %s at step %d; checkpoint %s: run the same command again to resume",
                name,
                trainer.global_step,
                self.path,
            )
        if self.received in self.signals:
            previous = self._previous.get(self.received)
            if callable(previous):
                previous(self.received, None)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()


class StepProgressBar(TQDMProgressBar):
    """Lightning's progress bar, counting optimizer steps: a training batch may be a block of
    several steps (``steps_per_execution``), whose number per epoch is not fixed.

    Every epoch has ``steps_per_epoch`` steps, so the epoch's position is exact after a resume.
    """

    def __init__(self, steps_per_epoch: int) -> None:
        super().__init__()
        self.steps_per_epoch = steps_per_epoch

    @property
    def total_train_batches(self) -> int:
        return self.steps_per_epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        steps = trainer.global_step - trainer.current_epoch * self.steps_per_epoch
        super().on_train_batch_end(trainer, pl_module, outputs, batch, steps - 1)
