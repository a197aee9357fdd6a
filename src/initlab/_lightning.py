"""Every use initlab makes of Lightning's private internals, in one place.

initlab needs a few things Lightning has no public API for: to decide itself when the training
loop validates, to know whether a batch is the epoch's last, to stop cleanly after the current
step when a signal arrives, and to know the epoch a resumed loader is in. Each is a small function
here, whose docstring names the internal it touches and why there is no public way; the rest of
initlab calls these functions and never touches a private Lightning attribute itself (a test
checks the source). ``INTERNALS`` lists them all by their dotted path from the Trainer, and
``check_internals(trainer)`` fails fast, naming the one a new Lightning moved.

Checked on lightning 2.6.6 (pyproject.toml pins lightning>=2.6,<2.7). Before widening that pin,
run tests/test_lightning_internals.py, tests/test_train.py and tests/test_resume.py on the new
version, and update this module where the internals moved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import lightning

CHECKED_ON = "2.6.6"  # the Lightning version these internals were checked on

# Every private internal initlab uses, as its dotted path from a Trainer.
INTERNALS: tuple[str, ...] = (
    "fit_loop.epoch_loop._should_check_val_fx",
    "fit_loop.epoch_loop._should_check_val_epoch",
    "fit_loop.epoch_loop.batch_progress.is_last_batch",
    "fit_loop._can_stop_early",
    "fit_loop.epoch_progress.current.processed",
    "_signal_connector.received_sigterm",
)
_CALLABLE = {"_should_check_val_fx", "_should_check_val_epoch"}

# (data_fetcher, Lightning's own decision) -> validate now?
ValDecision = Callable[[Any, Callable[[Any], bool]], bool]


class LightningInternalsError(RuntimeError):
    """This Lightning lacks an internal initlab relies on."""


def _missing_message(name: str, owner: Any, attr: str) -> str:
    where = f"{type(owner).__name__}.{attr}" if owner is not None else name
    return (
        f"lightning {lightning.__version__} moved or removed {where} (Trainer.{name}), which"
        f" initlab relies on (checked on lightning {CHECKED_ON}): update"
        f" src/initlab/_lightning.py, or install lightning>=2.6,<2.7"
    )


def check_internals(trainer: Any, names: Iterable[str] = INTERNALS) -> None:
    """Raise LightningInternalsError naming the first of ``names`` (default: all INTERNALS) this
    trainer lacks, with the Lightning version, so that a Lightning upgrade fails at the start of
    a fit, not mid-run."""
    for name in names:
        obj: Any = trainer
        for attr in name.split("."):
            owner = obj
            try:
                obj = getattr(owner, attr)
            except AttributeError:
                raise LightningInternalsError(_missing_message(name, owner, attr)) from None
        if attr in _CALLABLE and not callable(obj):
            raise LightningInternalsError(_missing_message(name, owner, attr))


def install_val_decision(trainer: Any, decide: ValDecision) -> None:
    """Make ``decide(data_fetcher, lightning_decides)`` the training loop's decision whether to
    validate after the current batch (``lightning_decides`` is Lightning's own decision).

    Touches ``_TrainingEpochLoop._should_check_val_fx``, which the loop calls after every batch
    (and on restart): Lightning lets ``val_check_interval`` count batches, not optimizer steps
    across epochs plus every epoch end, and has no hook to decide it. Installing again (a
    second fit) replaces the previous decision; Lightning's own is always the one passed on.
    """
    loop = trainer.fit_loop.epoch_loop
    current = loop._should_check_val_fx
    lightning_decides = getattr(current, "_initlab_lightning_decides", current)

    def should_check_val(data_fetcher: Any) -> bool:
        return decide(data_fetcher, lightning_decides)

    should_check_val._initlab_lightning_decides = lightning_decides  # type: ignore[attr-defined]
    loop._should_check_val_fx = should_check_val


def epoch_wants_validation(trainer: Any) -> bool:
    """Whether this epoch validates at all (``check_val_every_n_epoch``, validation enabled).

    Touches ``_TrainingEpochLoop._should_check_val_epoch()``: the rule Lightning applies itself,
    with no public equivalent; a replaced decision must keep it.
    """
    return trainer.fit_loop.epoch_loop._should_check_val_epoch()


def is_last_batch(trainer: Any) -> bool:
    """Whether the current training batch is the epoch's last (set once it has been fetched).

    Touches ``trainer.fit_loop.epoch_loop.batch_progress.is_last_batch``: Lightning's data
    fetcher looks one batch ahead to know it; the public hooks get only the batch index, and
    initlab's batches are blocks of several steps, so their number per epoch is not fixed.
    """
    return trainer.fit_loop.epoch_loop.batch_progress.is_last_batch


def can_stop_early(trainer: Any) -> bool:
    """Whether a requested stop (``trainer.should_stop``) may end training now (min_epochs and
    min_steps are met); Lightning validates before such a stop.

    Touches ``_FitLoop._can_stop_early``: the replaced validation decision must apply the same
    rule as Lightning's, which is only available as this private property.
    """
    return trainer.fit_loop._can_stop_early


def request_stop_after_step(trainer: Any) -> None:
    """Make the training loop stop after the current step as it does on SIGTERM: it raises
    ``SIGTERMException`` there, and callbacks' ``on_exception`` can save a checkpoint.

    Touches ``trainer._signal_connector.received_sigterm`` (``trainer.received_sigterm`` is a
    read-only property): the only way to get Lightning's consistent mid-epoch stop for a signal
    other than SIGTERM (e.g. SIGUSR2, submitit's timeout warning). ``trainer.should_stop`` is
    not the same: it waits for the epoch's end, or for min_steps.
    """
    trainer._signal_connector.received_sigterm = True


def epochs_done(trainer: Any) -> int:
    """The index of the epoch the training loop is in: the epochs whose training part is done
    (``processed``), which is what Lightning passes to the sampler's ``set_epoch``.

    Touches ``trainer.fit_loop.epoch_progress.current.processed``: when Lightning resumes, it
    creates the epoch's data iterator before it calls ``set_epoch``, so a sampler that must
    continue the interrupted epoch's order reads the epoch from the loop's progress instead.
    """
    return trainer.fit_loop.epoch_progress.current.processed
