"""Every use initlab makes of Lightning's private internals, in one place.

initlab needs a few things Lightning has no public API for: to decide itself when the training
loop validates, to keep Lightning's signal handlers out of the way of its own (initlab stops a
run at its phase boundaries), and to know the epoch a resumed loader is in. Each is a small function
here, whose docstring names the internal it touches and why there is no public way; the rest of
initlab calls these functions and never touches a private Lightning attribute itself (a test
checks the source). ``INTERNALS`` lists them all, by their dotted path from the Trainer or, for
the private attribute of a Lightning class initlab subclasses (``TQDMProgressBar``), as
``Class.attribute`` (``ROOTS``: checked on the trainer's instance of that class, or a new one), and
``check_internals(trainer)`` fails fast, naming the one a new Lightning moved.

Checked on lightning 2.6.6 (pyproject.toml pins lightning>=2.6,<2.7). Before widening that pin,
run tests/test_lightning_internals.py, tests/test_train.py and tests/test_resume.py on the new
version, and update this module where the internals moved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import lightning
from lightning.pytorch.callbacks import TQDMProgressBar

CHECKED_ON = "2.6.6"  # the Lightning version these internals were checked on

# Lightning classes whose instances hold a private attribute initlab uses (a subclass's own
# ``self._...`` would otherwise touch it): such an internal is named ``Class.attribute``.
ROOTS: dict[str, type] = {"TQDMProgressBar": TQDMProgressBar}

# Every private internal initlab uses: its dotted path from a Trainer, or ``Class.attribute``
# for a class in ROOTS.
INTERNALS: tuple[str, ...] = (
    "TQDMProgressBar._train_progress_bar",
    "fit_loop.epoch_loop._should_check_val_fx",
    "fit_loop.epoch_progress.current.processed",
    "_signal_connector.register_signal_handlers",
)
_CALLABLE = {"_should_check_val_fx", "register_signal_handlers"}

# (data_fetcher, Lightning's own decision) -> validate now?
ValDecision = Callable[[Any, Callable[[Any], bool]], bool]


class LightningInternalsError(RuntimeError):
    """This Lightning lacks an internal initlab relies on."""


def _missing_message(name: str, owner: Any, attr: str) -> str:
    where = f"{type(owner).__name__}.{attr}" if owner is not None else name
    path = name if name.split(".", 1)[0] in ROOTS else f"Trainer.{name}"
    return (
        f"lightning {lightning.__version__} moved or removed {where} ({path}), which"
        f" initlab relies on (checked on lightning {CHECKED_ON}): update"
        f" src/initlab/_lightning.py, or install lightning>=2.6,<2.7"
    )


def internal_root(trainer: Any, name: str) -> tuple[Any, list[str]]:
    """Where the internal ``name`` is looked up, and its path from there: the trainer, or for
    ``Class.attribute`` (a class in ROOTS) the trainer's callback of that class (a new instance
    when it has none: the class's ``__init__`` sets the attribute)."""
    first, *rest = name.split(".")
    cls = ROOTS.get(first)
    if cls is None:
        return trainer, name.split(".")
    found = [c for c in getattr(trainer, "callbacks", None) or [] if isinstance(c, cls)]
    return (found[0] if found else cls()), rest


def check_internals(trainer: Any, names: Iterable[str] = INTERNALS) -> None:
    """Raise LightningInternalsError naming the first of ``names`` (default: all INTERNALS) this
    trainer lacks, with the Lightning version, so that a Lightning upgrade fails at the start of
    a fit, not mid-run."""
    for name in names:
        obj, path = internal_root(trainer, name)
        for attr in path:
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


def leave_signals_to_initlab(trainer: Any) -> None:
    """Keep Lightning from installing its own signal handlers in this trainer's runs.

    Touches ``trainer._signal_connector.register_signal_handlers``, which every fit, validate
    and test calls: its SIGTERM handler logs from inside the handler (a storm of signals becomes
    thousands of "Logging error" lines), and the flag it sets makes the evaluation loops abort a
    validation or the test mid-way (``SIGTERMException``, a SystemExit with status 0). initlab's
    ``StopGuard`` handles every signal instead, at the run's phase boundaries
    (initlab.lifecycle); there is no public switch for Lightning's.
    """
    trainer._signal_connector.register_signal_handlers = lambda: None


def epochs_done(trainer: Any) -> int:
    """The index of the epoch the training loop is in: the epochs whose training part is done
    (``processed``), which is what Lightning passes to the sampler's ``set_epoch``.

    Touches ``trainer.fit_loop.epoch_progress.current.processed``: when Lightning resumes, it
    creates the epoch's data iterator before it calls ``set_epoch``, so a sampler that must
    continue the interrupted epoch's order reads the epoch from the loop's progress instead.
    """
    return trainer.fit_loop.epoch_progress.current.processed


def train_bar_or_none(progress_bar: Any) -> Any:
    """A ``TQDMProgressBar``'s training bar (a tqdm), or None while it has none.

    Touches ``TQDMProgressBar._train_progress_bar``: the public ``train_progress_bar`` raises
    while the bar is not made yet (a stop or an error before training started), and a callback
    that closes the bar on an exception must not raise itself.
    """
    return progress_bar._train_progress_bar
