"""Lightning callbacks that shape a run: when to validate, how fast it trained, what it prints;
and ``route_terminal``, what of a run's log reaches the terminal (the rest goes to its log file).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from tqdm import tqdm as _tqdm

from initlab._lightning import check_internals, install_val_decision
from initlab.dashboard import TRAIN_LOSS, VAL_ACC, VAL_LOSS
from initlab.data import steps_of
from initlab.lifecycle import StopGuard
from initlab.schedule import Schedule

log = logging.getLogger(__name__)
epoch_log = logging.getLogger(f"{__name__}.epochs")  # the epoch lines (route_terminal)

# Loggers of dependencies: their records below ERROR are boilerplate on a terminal ("GPU
# available", "💡 Tip", "`Trainer.fit` stopped", LOCAL_RANK), kept in the log file. py.warnings:
# every warnings.warn once logging.captureWarnings is on (deprecations, Lightning's hints);
# initlab's own warnings are logged as well (e.g. the MNIST fallback), so none is lost.
DEPENDENCY_LOGGERS = (
    "lightning",
    "pytorch_lightning",
    "lightning_fabric",
    "torch",
    "torchmetrics",
    "py.warnings",
)
# The loggers to which Lightning adds a stderr handler of its own: "lightning" always, the others
# when imported before logging is configured (preflight imports it before Hydra does).
_LIGHTNING_OWN_HANDLERS = ("lightning", "lightning.pytorch", "lightning.fabric",
                           "pytorch_lightning", "lightning_fabric")  # fmt: skip


def epoch_label(trainer: L.Trainer) -> str:
    """'epoch k/N', 1-based (or 'epoch k' without an epoch budget): the bar's and the lines'."""
    k, n = trainer.current_epoch + 1, trainer.max_epochs
    return f"epoch {k}/{n}" if n is not None and n > 0 else f"epoch {k}"


class TerminalFilter(logging.Filter):
    """What of a run's log a terminal handler shows: errors always; dependencies' records below
    ERROR never; below ``level`` nothing; the epoch lines not while a bar shows them."""

    def __init__(self, level: int = logging.INFO, epoch_lines: bool = True) -> None:
        super().__init__()
        self.level, self.epoch_lines = level, epoch_lines

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        name = record.name
        if any(name == d or name.startswith(d + ".") for d in DEPENDENCY_LOGGERS):
            return False
        if not self.epoch_lines and name == epoch_log.name:
            return False
        return record.levelno >= self.level


def _is_terminal(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and not isinstance(
        handler, logging.FileHandler
    )


def route_terminal(progress_bar: bool = False, sweep_job: bool = False) -> None:
    """Keep the terminal to progress: filter the root logger's terminal handlers (Hydra's
    console) with a ``TerminalFilter``; its file handlers (the run's train.log) still get every
    record. A job of a sweep shows only its warnings and errors (the sweep prints one line per
    job); a run with a progress bar, no epoch lines. Warnings (``warnings.warn``) are logged, so
    they reach the file and not the terminal, and Lightning's own stderr handler, if it added
    one, is removed so that its records reach the file too. Idempotent: call it per job, after
    logging is configured."""
    logging.captureWarnings(True)
    for name in _LIGHTNING_OWN_HANDLERS:
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
            logger.removeHandler(handler)
        logger.propagate = True
    wanted = TerminalFilter(
        logging.WARNING if sweep_job else logging.INFO, epoch_lines=not progress_bar
    )
    for handler in logging.getLogger().handlers:
        if _is_terminal(handler):
            for old in [f for f in handler.filters if isinstance(f, TerminalFilter)]:
                handler.removeFilter(old)
            handler.addFilter(wanted)


class ValidateOnSchedule(Callback):
    """Validate exactly at the schedule's steps (``Schedule.validates_at``): every
    ``val_check_interval`` steps, at the epoch ends, at the budget's end; and once at the step a
    run diverged. A step validates once: a resumed run that Lightning asks again does not.

    Lightning's own decision counts batches, and a training batch may be a block of several
    optimizer steps, so it is replaced (``initlab._lightning.install_val_decision``); the data
    module's blocks end at these steps.
    """

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        check_internals(trainer)  # a Lightning without them fails here, naming the one missing
        schedule = self.schedule

        def should_check_val(data_fetcher: Any, lightning_decides: Any) -> bool:
            step = trainer.global_step
            if getattr(pl_module, "last_validated_step", None) == step:
                return False
            return schedule.validates_at(step) or pl_module.diverged_at_step == step

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
    """One concise log line per epoch (logger ``initlab.callbacks.epochs``): the run's record in
    its log file, and the terminal's view where no progress bar is shown (sweeps, pipes).
    ``timer``: the run's ThroughputTimer (None: the trainer's, if it has one)."""

    def __init__(self, timer: ThroughputTimer | None = None) -> None:
        self.timer = timer

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._line(trainer, pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception) -> None:
        # a budget that ends inside an epoch, or a divergence: the run's last line, as an
        # epoch end's (a signal's stop says its own)
        if isinstance(exception, Boundary) and exception.reason != "signal":
            self._line(trainer, pl_module)

    def _line(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # callbacks run before the module's own epoch-end hook, so ask the module directly
        train = pl_module.epoch_train_metrics()
        m = trainer.callback_metrics
        val = " ".join(
            f"{name} {float(m[tag]):.4f}"
            for name, tag in (("val_loss", VAL_LOSS), ("val_acc", VAL_ACC))
            if tag in m
        )
        line = (
            f"{epoch_label(trainer)} step {trainer.global_step}"
            f" train_loss {train['train_loss']:.4f} train_acc {train['train_acc']:.4f} {val}"
        )
        timer = self.timer or next(
            (c for c in trainer.callbacks if isinstance(c, ThroughputTimer)), None
        )
        if timer is not None and timer.samples_per_s:
            line += f" ({timer.samples_per_s:,.0f} samples/s)"
        epoch_log.info(line)


class Boundary(BaseException):
    """Raised at the start of a block to end the fit there: ``reason`` is "signal", "budget"
    (the schedule's last step is trained) or "diverged"."""

    def __init__(self, reason: str, step: int) -> None:
        super().__init__(reason)
        self.reason, self.step = reason, step


class StopAtBoundary(Callback):
    """End the fit at the start of a block, where the run's state is whole (the last step
    trained, its validation and any epoch end done), and checkpoint exactly that state: when a
    signal arrived (``guard``, initlab.lifecycle.StopGuard), when the budget is spent in the
    middle of an epoch (an epoch-end budget ends Lightning's fit itself), or when the run
    diverged. A resumed run starts there again and stops at once if its fit is done.

    ``saved``: whether that checkpoint was written (a full disk: not, and why is logged)."""

    def __init__(self, path: str | Path, schedule: Schedule, guard: StopGuard) -> None:
        self.path, self.schedule, self.guard = Path(path), schedule, guard
        self.saved = False
        self.error: OSError | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.guard.stopping:
            raise Boundary("signal", step)
        if step >= self.schedule.total_steps:
            raise Boundary("budget", step)
        if getattr(pl_module, "diverged_at_step", None) is not None:
            raise Boundary("diverged", step)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception) -> None:
        if not isinstance(exception, Boundary):
            return
        try:
            trainer.save_checkpoint(self.path)
        except OSError as exc:  # e.g. no space left: the previous checkpoint is intact
            self.error = exc
            log.error("at step %d: %s", exception.step, exc)
        else:
            self.saved = True


class _AboveTheBar:
    """A terminal log handler's stream while the bar is live: each record is written above the
    bar (tqdm's write), which is then drawn again, instead of at the end of the bar's line."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        _tqdm.write(text, file=self.stream, end="")

    def flush(self) -> None:
        self.stream.flush()


class StepProgressBar(TQDMProgressBar):
    """One live bar for the whole run: ``epoch k/N`` (1-based, as the epoch lines), optimizer
    steps, the loss and the last validation accuracy in its postfix; left on the terminal once,
    at the end. No bars for validation, the sanity check or the test (they are short, and their
    results are in the postfix and the run's last line).

    It counts optimizer steps: a training batch may be a block of several steps
    (``steps_per_execution``), whose number per epoch is not fixed. Every epoch has
    ``steps_per_epoch`` steps, so the epoch's position is exact after a resume. The epoch lines
    still go to the log file: written here unless the trainer also has an ``EpochLine``.
    """

    def __init__(self, steps_per_epoch: int) -> None:
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self._epoch_line = EpochLine()
        self._loss: Any = None  # the last train/loss tensor read, and its value
        self._loss_value: float | None = None

    @property
    def total_train_batches(self) -> int:
        return self.steps_per_epoch

    @property
    def train_description(self) -> str:
        return epoch_label(self.trainer)

    def init_train_tqdm(self) -> Tqdm:
        bar = super().init_train_tqdm()
        bar.unit = " steps"
        return bar

    def _no_bar(self) -> Tqdm:
        return Tqdm(disable=True)

    init_sanity_tqdm = init_validation_tqdm = init_test_tqdm = _no_bar

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        # Lightning's, without its "Epoch N" (0-based): the new label shows with the reset
        bar = self.train_progress_bar
        bar.set_description(epoch_label(trainer), refresh=False)
        bar.reset(total=self.total_train_batches)
        bar.initial = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        steps = trainer.global_step - trainer.current_epoch * self.steps_per_epoch
        super().on_train_batch_end(trainer, pl_module, outputs, batch, steps - 1)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if not any(isinstance(c, EpochLine) for c in trainer.callbacks):
            self._epoch_line.on_train_epoch_end(trainer, pl_module)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if self.is_enabled:
            for handler in logging.getLogger().handlers:
                if _is_terminal(handler) and not isinstance(handler.stream, _AboveTheBar):
                    handler.setStream(_AboveTheBar(handler.stream))

    def _restore_streams(self) -> None:
        for handler in logging.getLogger().handlers:
            if _is_terminal(handler) and isinstance(handler.stream, _AboveTheBar):
                handler.setStream(handler.stream.stream)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._restore_streams()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception) -> None:
        # a stop (Ctrl-C) or an error: the bar stays as it was, and what follows starts below it
        from initlab._lightning import train_bar_or_none

        bar = train_bar_or_none(self)
        if bar is not None:
            bar.close()
        self._restore_streams()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        self._restore_streams()

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """The postfix: the last logged training loss and the last validation accuracy."""
        metrics = trainer.callback_metrics
        loss = metrics.get(TRAIN_LOSS)
        if loss is not None and loss is not self._loss:  # a new value: one host sync
            self._loss, self._loss_value = loss, float(loss)
        history = getattr(pl_module, "history", None)
        val_acc = history[-1]["val_acc"] if history else metrics.get(VAL_ACC)
        postfix = {}
        if self._loss_value is not None:
            postfix["loss"] = f"{self._loss_value:.4f}"
        if val_acc is not None:
            postfix["val_acc"] = f"{float(val_acc):.4f}"
        return postfix
