"""The LightningModule: cross-entropy, metrics, the optimizer from config.

A sweep is thousands of small steps (batch 64), so per-step work is kept minimal: the step is
written out (manual optimization: no closure machinery), a training batch may be a block of
several batches, trained as that many optimizer steps (Lightning's per-batch machinery then runs
once per block), training sums accumulate in one device buffer (no metric objects, no host
sync), and the only sync (logging the step loss, checking it is finite) happens every
``log_every_n_steps``. Validation and test use torchmetrics.

Metrics go to the loggers at the optimizer step (``global_step``): Lightning's ``self.log`` would
stamp them with its count of batches, which is not the step count once a batch is a block.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from initlab.config import ModelConf
from initlab.dashboard import (
    TEST_ACC,
    TEST_LOSS,
    TRAIN_ACC,
    TRAIN_ACC_EPOCH,
    TRAIN_EVAL_ACC,
    TRAIN_EVAL_LOSS,
    TRAIN_LOSS,
    TRAIN_LOSS_EPOCH,
    VAL_ACC,
    VAL_LOSS,
)
from initlab.data import steps_of
from initlab.schedule import Schedule

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


def _accuracy(num_classes: int) -> MulticlassAccuracy:
    return MulticlassAccuracy(num_classes, average="micro", validate_args=False)


def _mean() -> MeanMetric:
    return MeanMetric(nan_strategy="disable")  # "warn" would sync with the host every update


class Classifier(L.LightningModule):
    """Trains ``net`` with cross-entropy and records what the study needs.

    ``history`` gets one entry per validation, the first at step 0 before training (step, epoch,
    val loss/acc, the mean training loss since the previous validation, the fixed training
    subset's loss/acc when the data module has a second validation dataloader (its
    ``train_eval_size``), seconds since fit start),
    at most one per step; ``diverged_at_step`` is set when the training loss stops being finite
    (the run then stops at its next boundary, ``initlab.callbacks.StopAtBoundary``).
    ``schedule``: the run's budget and validation steps (None: Lightning's ``max_steps``); a
    resumed or extended run keeps the history its schedule would have made.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: torch.optim.Optimizer | OptimizerFactory,
        num_classes: int = ModelConf.num_classes,
        log_every_n_steps: int = 50,  # lightning.Trainer's own default
        fingerprint: dict[str, Any] | None = None,
        schedule: Schedule | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.make_optimizer = optimizer
        self.fingerprint = fingerprint  # saved in every checkpoint: a resume compares it
        self.log_every_n_steps = log_every_n_steps
        self.schedule = schedule
        self.automatic_optimization = False
        # [loss sum, correct, samples] over the epoch, then [loss sum, samples] since the last
        # validation; a buffer, so a mid-epoch checkpoint keeps them and a resume stays exact
        self.register_buffer("train_sums", torch.zeros(5, dtype=torch.float64))
        self.val_loss, self.val_acc = _mean(), _accuracy(num_classes)
        # the data module's second validation dataloader, when it has one (train_eval_size)
        self.train_eval_loss, self.train_eval_acc = _mean(), _accuracy(num_classes)
        self.test_loss, self.test_acc = _mean(), _accuracy(num_classes)
        self.history: list[dict[str, Any]] = []
        self.epoch_train: dict[str, float] = {}
        self.diverged_at_step: int | None = None
        self._fit_t0 = time.perf_counter()
        self._elapsed_before = 0.0  # seconds of fit before a resume
        self._last_window = [0.0, 0.0]  # the training window the last validation closed

    def on_fit_start(self) -> None:
        self._fit_t0 = time.perf_counter() - self._elapsed_before

    # -- checkpoints: what a resumed run needs besides weights and optimizer -----------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["initlab"] = {
            "history": self.history,
            "epoch_train": self.epoch_train,
            "diverged_at_step": self.diverged_at_step,
            "elapsed_s": time.perf_counter() - self._fit_t0,
            "fingerprint": self.fingerprint,
            "last_window": list(self._last_window),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("initlab", {})
        self.history = list(state.get("history", []))
        self.epoch_train = dict(state.get("epoch_train", {}))
        self.diverged_at_step = state.get("diverged_at_step")
        self._elapsed_before = float(state.get("elapsed_s", 0.0))
        self._last_window = list(state.get("last_window", [0.0, 0.0]))
        if self.schedule is None or not self.history:
            return
        # Extended: the old budget's end was a validation this budget does not make. Drop it,
        # and give its training window back (the buffer is loaded after this hook).
        last = self.history[-1]["step"]
        if not self.schedule.validates_at(last) and last != self.diverged_at_step:
            self.history.pop()
            sums = checkpoint["state_dict"]["train_sums"].clone()
            sums[3:] += torch.tensor(self._last_window, dtype=sums.dtype)
            checkpoint["state_dict"]["train_sums"] = sums

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """The optimizer given (built over ``net``'s parameters), or the factory's over ours."""
        if isinstance(self.make_optimizer, torch.optim.Optimizer):
            return self.make_optimizer
        return self.make_optimizer(self.parameters())

    # -- training --------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        """One optimizer step per ``(x, y)`` batch; ``batch`` is one, or a block (list) of them."""
        optimizer = self.optimizers()
        step = self.global_step  # counted here: the property is a chain of lookups
        max_steps = self.schedule.total_steps if self.schedule else self.trainer.max_steps
        losses: list[Tensor] = []
        outputs: list[tuple[Tensor, Tensor]] = []
        for x, y in steps_of(batch):
            if 0 <= max_steps <= step:
                break
            optimizer.zero_grad(set_to_none=True)
            logits = self.net(x)
            loss = F.cross_entropy(logits, y)
            self.manual_backward(loss)
            optimizer.step()
            step += 1
            losses.append(loss.detach())
            outputs.append((logits.detach(), y))
            if step % self.log_every_n_steps == 0:
                with torch.no_grad():
                    acc = (logits.argmax(dim=1) == y).float().mean()
                metrics = {TRAIN_LOSS: losses[-1], TRAIN_ACC: acc}
                self.log_dict(metrics, logger=False)
                self.log_at_step(metrics)
                if not math.isfinite(float(loss.detach())):
                    self._diverged()
                    break
        if losses:
            self._add_to_sums(losses, outputs)
        return losses[-1] if losses else None

    @torch.no_grad()
    def _add_to_sums(self, losses: list[Tensor], outputs: list[tuple[Tensor, Tensor]]) -> None:
        """Add a block's loss and accuracy to ``train_sums``: a few ops per block, not per step."""
        sizes = [len(y) for _, y in outputs]
        n = sum(sizes)
        loss = torch.stack(losses).double()
        if len(set(sizes)) == 1:
            loss_sum = loss.sum() * sizes[0]
        else:  # an epoch's short last batch
            loss_sum = (loss * torch.tensor(sizes, dtype=loss.dtype).to(loss.device)).sum()
        logits = torch.cat([o for o, _ in outputs])
        y = torch.cat([y for _, y in outputs])
        correct = (logits.argmax(dim=1) == y).sum().double()
        total = torch.full_like(loss_sum, n)  # a fill on the device: no host-to-device copy
        self.train_sums += torch.stack([loss_sum, correct, total, loss_sum, total])

    def log_at_step(self, metrics: dict[str, Tensor | float]) -> None:
        """Write scalars to every logger at the current optimizer step (no ``epoch`` scalar: its
        staircase would open the dashboard; the step is the x axis)."""
        if not self.loggers:
            return
        values = {k: float(v) for k, v in metrics.items()}
        for logger in self.loggers:
            logger.log_metrics(values, step=self.global_step)

    def _diverged(self) -> None:
        if self.diverged_at_step is None:
            self.diverged_at_step = int(self.global_step)
        if self.schedule is None:  # without a schedule's boundaries, Lightning stops it
            self.trainer.should_stop = True

    @property
    def last_validated_step(self) -> int | None:
        """The step of the last validation in ``history`` (None: none yet)."""
        return self.history[-1]["step"] if self.history else None

    def epoch_train_metrics(self) -> dict[str, float]:
        """Mean training loss and accuracy over this epoch's batches so far."""
        loss_sum, correct, n = self.train_sums[:3].tolist()
        nan = float("nan")
        return {"train_loss": loss_sum / n if n else nan, "train_acc": correct / n if n else nan}

    def final_train_metrics(self) -> dict[str, float]:
        """The last epoch's mean training loss and accuracy: of the whole epoch when it ended,
        else of its steps so far (a budget that ends mid-epoch)."""
        return self.epoch_train_metrics() if float(self.train_sums[2]) else dict(self.epoch_train)

    def on_train_epoch_end(self) -> None:
        self.epoch_train = self.epoch_train_metrics()
        metrics = {
            TRAIN_LOSS_EPOCH: self.epoch_train["train_loss"],
            TRAIN_ACC_EPOCH: self.epoch_train["train_acc"],
        }
        self.log_dict(metrics, logger=False)
        self.log_at_step(metrics)
        self.train_sums[:3] = 0
        if not math.isfinite(self.epoch_train["train_loss"]):
            self._diverged()

    # -- evaluation ------------------------------------------------------------------------
    def _eval_step(self, batch: tuple[Tensor, Tensor], loss_m: MeanMetric, acc_m) -> None:
        x, y = batch
        logits = self.net(x)
        loss_m.update(F.cross_entropy(logits, y), len(y))
        acc_m.update(logits, y)

    def validation_step(
        self, batch: tuple[Tensor, Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if dataloader_idx == 0:
            self._eval_step(batch, self.val_loss, self.val_acc)
        else:
            self._eval_step(batch, self.train_eval_loss, self.train_eval_acc)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.test_loss, self.test_acc)

    def on_validation_epoch_end(self) -> None:
        val_loss, val_acc = float(self.val_loss.compute()), float(self.val_acc.compute())
        self.val_loss.reset()
        self.val_acc.reset()
        metrics = {VAL_LOSS: val_loss, VAL_ACC: val_acc}
        evaluated: dict[str, float] = {}
        if self.train_eval_acc.update_called:
            evaluated = {
                "train_eval_loss": float(self.train_eval_loss.compute()),
                "train_eval_acc": float(self.train_eval_acc.compute()),
            }
            self.train_eval_loss.reset()
            self.train_eval_acc.reset()
            metrics[TRAIN_EVAL_LOSS] = evaluated["train_eval_loss"]
            metrics[TRAIN_EVAL_ACC] = evaluated["train_eval_acc"]
        self.log_dict(metrics, logger=False)
        if self.trainer.state.fn != TrainerFn.FITTING:
            self.log_at_step(metrics)
            return
        if self.trainer.sanity_checking and self.global_step != 0:
            return  # the validation before training counts only at step 0 (not on a resume)
        if self.last_validated_step == self.global_step:
            return  # a step validates once (a resume may ask again)
        self.log_at_step(metrics)
        window_sum, window_n = self.train_sums[3:].tolist()
        window = window_sum / window_n if window_n else None
        self._last_window = [window_sum, window_n]
        self.train_sums[3:] = 0
        self.history.append(
            {
                "step": int(self.global_step),
                "epoch": int(self.current_epoch),
                "val_loss": val_loss,
                "val_acc": val_acc,
                "train_loss": window,
                **evaluated,
                "wall_s": time.perf_counter() - self._fit_t0,
            }
        )

    def on_test_epoch_end(self) -> None:
        # read by the run, which logs them with the record (a test stopped by a signal is
        # done again, and logs nothing twice)
        metrics = {TEST_LOSS: self.test_loss.compute(), TEST_ACC: self.test_acc.compute()}
        self.log_dict(metrics, logger=False)
