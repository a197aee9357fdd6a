"""Lightning callbacks that shape a run: when to validate, how fast it trained, what it prints;
and ``route_terminal``, what of a run's log reaches the terminal (the rest goes to its log file).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from lightning.pytorch.utilities.exceptions import SIGTERMException
from tqdm import tqdm as _tqdm

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
    """One concise log line per epoch (logger ``initlab.callbacks.epochs``): the run's record in
    its log file, and the terminal's view where no progress bar is shown (sweeps, pipes).
    ``timer``: the run's ThroughputTimer (None: the trainer's, if it has one)."""

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
            f"{epoch_label(trainer)} step {trainer.global_step}"
            f" train_loss {train['train_loss']:.4f} train_acc {train['train_acc']:.4f} {val}"
        )
        timer = self.timer or next(
            (c for c in trainer.callbacks if isinstance(c, ThroughputTimer)), None
        )
        if timer is not None and timer.samples_per_s:
            line += f" ({timer.samples_per_s:,.0f} samples/s)"
        epoch_log.info(line)


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
        if self._train_progress_bar is not None:
            self._train_progress_bar.close()
        self._restore_streams()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        self._restore_streams()

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """The postfix: the last logged training loss and the last validation accuracy."""
        metrics = trainer.callback_metrics
        loss = metrics.get("train/loss")
        if loss is not None and loss is not self._loss:  # a new value: one host sync
            self._loss, self._loss_value = loss, float(loss)
        history = getattr(pl_module, "history", None)
        val_acc = history[-1]["val_acc"] if history else metrics.get("val/acc")
        postfix = {}
        if self._loss_value is not None:
            postfix["loss"] = f"{self._loss_value:.4f}"
        if val_acc is not None:
            postfix["val_acc"] = f"{float(val_acc):.4f}"
        return postfix
