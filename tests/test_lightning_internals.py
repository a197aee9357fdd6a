"""Lightning's private internals that initlab uses: all of them exist, and still do their job.

A Lightning release that moves one fails here with its name (and at the start of every fit,
through ``check_internals``), not deep inside a run; ``pyproject.toml`` pins the versions these
tests passed on.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import re
from pathlib import Path

import lightning
import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from initlab import _lightning
from initlab._lightning import (
    INTERNALS,
    LightningInternalsError,
    check_internals,
    epochs_done,
    install_val_decision,
    leave_signals_to_initlab,
)

from .conftest import bare_trainer

pytestmark = pytest.mark.filterwarnings("ignore:You defined a `validation_step`:UserWarning")

ROOT = Path(__file__).resolve().parents[1]


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx) -> None:
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _loader(batches: int) -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(2 * batches, 2)), batch_size=2)


def _trainer(**kwargs) -> L.Trainer:
    return bare_trainer(num_sanity_val_steps=0, **kwargs)


class _Probe(L.Callback):
    """Calls a function at every training batch's end, inside a real fit."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.fn(trainer, batch_idx)


@pytest.mark.parametrize("name", INTERNALS)
def test_each_internal_exists(name, tmp_path):
    """Fails with e.g. "lightning 2.7.0 moved or removed _TrainingEpochLoop._should_check_val_fx
    (Trainer.fit_loop.epoch_loop._should_check_val_fx) ...: update src/initlab/_lightning.py"."""
    trainer = _trainer(max_steps=1, default_root_dir=tmp_path)
    seen = []

    def check(trainer, batch_idx):
        check_internals(trainer, [name])
        seen.append(batch_idx)

    for when in ("before fit", "during fit"):
        try:
            if when == "before fit":
                check_internals(trainer, [name])
            else:
                trainer.callbacks.append(_Probe(check))
                trainer.fit(Tiny(), _loader(2))
        except LightningInternalsError as exc:
            pytest.fail(f"{when}: {exc}")
    assert seen == [0]


def _remove(monkeypatch, trainer, name: str) -> None:
    """Make ``name`` vanish from this trainer: from the object and every class that has it (an
    internal of a class in ROOTS: from the trainer's instance of it)."""
    owner, (*path, attr) = _lightning.internal_root(trainer, name)
    for part in path:
        owner = getattr(owner, part)
    for holder in (owner, *type(owner).__mro__):
        if attr in vars(holder):
            monkeypatch.delattr(holder, attr)
    assert not hasattr(owner, attr)


@pytest.mark.parametrize("name", INTERNALS)
def test_a_missing_internal_is_named_with_the_lightning_version(name, monkeypatch):
    trainer = _trainer(enable_progress_bar=True, callbacks=[TQDMProgressBar()])
    _remove(monkeypatch, trainer, name)
    with pytest.raises(LightningInternalsError) as raised:
        check_internals(trainer)
    message = str(raised.value)
    attr = name.rsplit(".", 1)[1]
    assert f"lightning {lightning.__version__} moved or removed " in message
    path = name if name.split(".")[0] in _lightning.ROOTS else f"Trainer.{name}"
    assert re.search(rf"\w+\.{re.escape(attr)} \({re.escape(path)}\)", message), message
    assert "update src/initlab/_lightning.py" in message and "\n" not in message


def test_a_missing_internal_stops_a_run_at_fit_start(monkeypatch, tmp_path):
    from initlab.callbacks import ValidateOnSchedule
    from initlab.schedule import Schedule

    check = ValidateOnSchedule(Schedule(steps_per_epoch=2, total_steps=1))
    trainer = _trainer(max_steps=1, default_root_dir=tmp_path, callbacks=[check])
    _remove(monkeypatch, trainer, "fit_loop.epoch_progress.current.processed")
    with pytest.raises(LightningInternalsError, match=r"_ProcessedTracker\.processed"):
        trainer.fit(Tiny(), _loader(2))


def test_a_decision_that_is_not_callable_is_reported(monkeypatch):
    trainer = _trainer()
    monkeypatch.setattr(trainer.fit_loop.epoch_loop, "_should_check_val_fx", None)
    with pytest.raises(LightningInternalsError, match="_should_check_val_fx"):
        check_internals(trainer)


# -- the internals still do what initlab relies on ------------------------------------------


class _CountValidations(L.Callback):
    def __init__(self) -> None:
        self.at: list[int] = []

    def on_validation_start(self, trainer, pl_module) -> None:
        self.at.append(trainer.global_step)


def test_the_installed_decision_is_what_the_loop_asks(tmp_path):
    """Lightning asks ``_should_check_val_fx`` after every batch, and validates when it says so;
    its own decision is passed on."""
    calls = []

    def decide(data_fetcher, lightning_decides) -> bool:
        trainer = probe.trainer
        calls.append(trainer.global_step)
        assert isinstance(lightning_decides(data_fetcher), bool)
        return trainer.global_step in (2, 3)

    class _Install(L.Callback):
        def on_fit_start(self, trainer, pl_module) -> None:
            self.trainer = trainer
            install_val_decision(trainer, decide)
            install_val_decision(trainer, decide)  # again: still one decision, not nested

    probe, validations = _Install(), _CountValidations()
    trainer = _trainer(max_epochs=1, default_root_dir=tmp_path, callbacks=[probe, validations])
    trainer.fit(Tiny(), _loader(4), _loader(1))
    assert calls == [1, 2, 3, 4]
    assert validations.at == [2, 3]


def test_lightning_installs_no_signal_handler_once_initlab_handles_them(tmp_path):
    """A fit, validate or test installs Lightning's SIGTERM handler (which logs from inside the
    handler, and makes an evaluation loop abort mid-way); with initlab's guard it installs none,
    and leaves the one in place alone."""
    import signal

    seen = []

    def record(trainer, batch_idx) -> None:
        seen.append(signal.getsignal(signal.SIGTERM))

    def mine(signum, frame) -> None:
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        trainer = _trainer(max_steps=2, default_root_dir=tmp_path, callbacks=[_Probe(record)])
        trainer.fit(Tiny(), _loader(2))
        assert seen and all(h is not mine for h in seen)  # Lightning's own, while it fits
        seen.clear()
        trainer = _trainer(max_steps=2, default_root_dir=tmp_path, callbacks=[_Probe(record)])
        leave_signals_to_initlab(trainer)
        trainer.fit(Tiny(), _loader(2))
        assert seen == [mine, mine] and not trainer.received_sigterm
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_epochs_done_follows_the_loop(tmp_path):
    seen = []

    def record(trainer, batch_idx) -> None:
        seen.append((trainer.global_step, epochs_done(trainer)))

    trainer = _trainer(max_epochs=2, default_root_dir=tmp_path)
    trainer.callbacks.append(_Probe(record))
    trainer.fit(Tiny(), _loader(2))
    assert seen == [(1, 0), (2, 0), (3, 1), (4, 1)]


# -- the fence: no other module touches them --------------------------------------------------

_PRIVATE = re.compile(
    r"\.fit_loop\b|\.epoch_loop\b|\.batch_progress\b|\.epoch_progress\b|\._signal_connector\b"
    r"|\._should_check_val|\._can_stop_early\b|\btrainer\._\w+"
    r"|\._(?:train|val|test|predict)_progress_bar\b"
    r"|\bfrom lightning[\w.]* import [^\n]*\b_\w+|\blightning(?:\.\w+)*\._\w+"
)


def test_only_initlab_lightning_touches_lightning_internals():
    sources = [*sorted((ROOT / "src").rglob("*.py")), *sorted((ROOT / "scripts").rglob("*.py"))]
    sources.append(ROOT / "train.py")
    found = []
    for path in sources:
        if path == Path(_lightning.__file__).resolve():
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if _PRIVATE.search(line.split("#", 1)[0]):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, (
        "Lightning internals used outside src/initlab/_lightning.py (add a function there and"
        " call it):\n" + "\n".join(found)
    )


def _lightning_private_names(cls: type) -> set[str]:
    """The private attributes that the Lightning classes among ``cls``'s bases define, or set
    on ``self``."""
    names: set[str] = set()
    for base in cls.__mro__:
        if not base.__module__.startswith(("lightning", "pytorch_lightning")):
            continue
        names |= {n for n in vars(base) if n.startswith("_") and not n.startswith("__")}
        with contextlib.suppress(OSError, TypeError):
            names |= set(re.findall(r"\bself\.(_[A-Za-z]\w*)", inspect.getsource(base)))
    return names


def test_no_subclass_of_a_lightning_class_touches_its_private_attributes():
    """A callback or module that subclasses a Lightning class and reads ``self._x``, where
    Lightning's class defines ``_x`` (``StepProgressBar``: ``self._train_progress_bar``), uses
    an internal: it goes through initlab._lightning (``ROOTS``) instead."""
    found = []
    for path in sorted((ROOT / "src" / "initlab").rglob("*.py")):
        if path == Path(_lightning.__file__).resolve() or "lightning" not in path.read_text():
            continue
        parts = path.relative_to(ROOT / "src").with_suffix("").parts
        module = importlib.import_module(".".join(p for p in parts if p != "__init__"))
        for cls in vars(module).values():
            if not (isinstance(cls, type) and cls.__module__ == module.__name__):
                continue
            private = _lightning_private_names(cls)
            if not private:
                continue
            source, start = inspect.getsourcelines(cls)
            for number, line in enumerate(source, start):
                code = line.split("#", 1)[0]
                used = set(re.findall(r"\bself\.(_[A-Za-z]\w*)", code)) & private
                if used:
                    found.append(f"{path.relative_to(ROOT)}:{number}: {', '.join(sorted(used))}")
    assert not found, (
        "private attributes of Lightning's classes used by their subclasses (add a function to"
        " src/initlab/_lightning.py, its class to ROOTS):\n" + "\n".join(found)
    )
