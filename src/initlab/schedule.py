"""A run's budget and schedule: how many optimizer steps it trains, where its epochs end, where it
validates, and how its steps are grouped into blocks. One owner for all of it.

``trainer.max_epochs``, ``trainer.max_steps`` and ``trainer.limit_train_batches`` are one budget:
``total_steps``, counted in optimizer steps. Everything else derives from it and from the
validation settings: the epochs the Trainer runs, the steps at which the run validates (step 0,
every ``val_check_interval`` steps, the epoch ends, and always the budget's last step, so that the
record's final accuracy is measured at the end), the block boundaries (a Lightning batch may hold
several optimizer steps, and a block never spans a validation, an epoch end or the budget's end,
so any block size gives the same run), whether a checkpoint may be resumed or extended under a
budget, and the budget the fingerprint compares.

No torch, no Lightning: the preflight checks a schedule before anything loads, and the data
module, the training loop and the record all read the same ``Schedule``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# A Lightning batch costs about 1 ms of loop machinery on CPU, as much as a batch-64 step of the
# tutorial's MLP; training up to this many steps per Lightning batch amortises it.
MAX_STEPS_PER_EXECUTION = 50
MAX_SAMPLES_PER_EXECUTION = 4096  # large batches have little overhead to amortise


def batch_count(n: int, batch_size: int, min_batch_size: int = 1) -> int:
    """Batches in an epoch of ``n`` samples; a last batch smaller than ``min_batch_size`` is
    merged into the one before it (batch norm cannot train on a batch of 1)."""
    count = math.ceil(n / batch_size)
    last = n % batch_size
    return count - 1 if count > 1 and 0 < last < min_batch_size else count


def limited(batches: int, limit: int | float | None) -> int:
    """An epoch's batches under ``trainer.limit_train_batches``: an integer caps the count, a
    fraction keeps that share of it (at least one batch), as Lightning counts it."""
    if limit is None:
        return batches
    if isinstance(limit, float):
        return max(1, int(batches * limit))
    return min(batches, int(limit))


def block_size(steps_per_execution: Any, batch_size: int) -> int:
    """Optimizer steps per Lightning batch: ``steps_per_execution``, or for "auto" as many as
    MAX_STEPS_PER_EXECUTION and MAX_SAMPLES_PER_EXECUTION allow."""
    if steps_per_execution != "auto":
        return int(steps_per_execution)
    return max(1, min(MAX_STEPS_PER_EXECUTION, MAX_SAMPLES_PER_EXECUTION // batch_size))


@dataclass(frozen=True)
class Schedule:
    """The budget and where the run validates; steps are optimizer steps, 1-based once trained.

    ``val_every``: validate every that many steps, counted across epochs (``val_in_epoch``
    False) or within each epoch (True: Lightning's meaning once ``check_val_every_n_epoch`` is
    set, and of a fraction of an epoch); None: at epoch ends only. ``val_epochs``: only every
    k-th epoch validates (its in-epoch points and its end). The budget's last step always
    validates; step 0 when ``val_at_start`` (a full validation before training).
    """

    steps_per_epoch: int
    total_steps: int
    val_every: int | None = None
    val_in_epoch: bool = False
    val_epochs: int = 1
    val_at_start: bool = True
    block: int = 1

    def __post_init__(self) -> None:
        if self.steps_per_epoch < 1 or self.total_steps < 1 or self.block < 1:
            raise ValueError(f"a schedule needs positive counts: {self}")

    @property
    def epochs(self) -> int:
        """Epochs the budget starts (the last one may end early, at ``total_steps``)."""
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def epoch_end(self, step: int) -> int:
        """The step that ends the epoch ``step`` (1-based, trained) belongs to."""
        return math.ceil(step / self.steps_per_epoch) * self.steps_per_epoch

    def validates_at(self, step: int) -> bool:
        """Whether the run validates after optimizer step ``step`` (0: before training)."""
        if step == 0:
            return self.val_at_start
        if step == self.total_steps:
            return True
        if not 0 < step < self.total_steps:
            return False
        epoch, position = divmod(step - 1, self.steps_per_epoch)
        position += 1  # 1..steps_per_epoch within the epoch
        epoch_validates = (epoch + 1) % self.val_epochs == 0
        if self.val_every is not None and not self.val_in_epoch and step % self.val_every == 0:
            return True
        if not epoch_validates:
            return False
        if position == self.steps_per_epoch:
            return True
        return self.val_in_epoch and self.val_every is not None and position % self.val_every == 0

    def validation_steps(self) -> list[int]:
        """Every step at which the run validates, in order."""
        return [s for s in range(self.total_steps + 1) if self.validates_at(s)]

    def block_end(self, step: int) -> int:
        """The last step of the block that starts after ``step``: the next multiple of
        ``block``, cut short by a validation, an epoch end or the budget's end."""
        end = min((step // self.block + 1) * self.block, self.epoch_end(step + 1), self.total_steps)
        end = max(end, step + 1)
        for s in range(step + 1, end):
            if self.validates_at(s):
                return s
        return end

    def describe(self) -> dict[str, int]:
        """What the record states of the budget."""
        return {
            "steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "epochs": self.epochs,
        }


# The Trainer settings the schedule is made of: initlab reads them, and gives Lightning what it
# derives from them instead (``trainer_arguments``).
SCHEDULE_KEYS = (
    "max_epochs",
    "max_steps",
    "limit_train_batches",
    "val_check_interval",
    "check_val_every_n_epoch",
    "num_sanity_val_steps",
)


def schedule_of(cfg: Mapping[str, Any], train_images: int) -> Schedule:
    """The schedule of a composed config when its training split holds ``train_images``."""
    from initlab.config import min_train_batch

    trainer, data = cfg["trainer"], cfg["data"]
    per_epoch = limited(
        batch_count(train_images, data["batch_size"], min_train_batch(cfg["norm"]["name"])),
        trainer.get("limit_train_batches"),
    )
    total = per_epoch * int(trainer["max_epochs"])
    max_steps = trainer.get("max_steps")
    if max_steps not in (None, -1):
        total = min(total, int(max_steps))
    interval = trainer.get("val_check_interval")
    k = trainer.get("check_val_every_n_epoch")
    every: int | None
    if interval is None:
        every, in_epoch = None, False
    elif isinstance(interval, float):
        every, in_epoch = max(1, int(per_epoch * interval)), True
    else:
        every, in_epoch = int(interval), k is not None
    return Schedule(
        steps_per_epoch=per_epoch,
        total_steps=total,
        val_every=every,
        val_in_epoch=in_epoch,
        val_epochs=int(k) if k else 1,
        val_at_start=trainer.get("num_sanity_val_steps", -1) != 0,
        block=block_size(cfg.get("steps_per_execution", "auto"), data["batch_size"]),
    )


def trainer_arguments(cfg: Mapping[str, Any], schedule: Schedule) -> dict[str, Any]:
    """The Trainer's keyword arguments: the config's, with the schedule's keys replaced by what
    the schedule derives (Lightning runs the epochs; initlab decides when to validate and stops
    at the budget's end, mid-epoch if it ends there)."""
    kwargs = {k: v for k, v in cfg["trainer"].items() if k not in SCHEDULE_KEYS}
    kwargs.update(
        max_epochs=schedule.epochs,
        max_steps=-1,
        val_check_interval=1,  # initlab's decision replaces Lightning's (callbacks.py)
        check_val_every_n_epoch=None,
        num_sanity_val_steps=-1 if schedule.val_at_start else 0,
    )
    return kwargs
