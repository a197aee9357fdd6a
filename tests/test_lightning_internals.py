"""Lightning's private internals that initlab uses: all of them exist, and still do their job.

A Lightning release that moves one fails here with its name (and at the start of every fit,
through ``check_internals``), not deep inside a run; ``pyproject.toml`` pins the versions these
tests passed on.
"""

from __future__ import annotations

import re
from pathlib import Path

import lightning
import lightning as L
import pytest
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from initlab import _lightning
from initlab._lightning import (
    INTERNALS,
    LightningInternalsError,
    can_stop_early,
    check_internals,
    epoch_wants_validation,
    epochs_done,
    install_val_decision,
    is_last_batch,
    request_stop_after_step,
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
    """Make ``name`` vanish from this trainer: from the object and every class that has it."""
    *path, attr = name.split(".")
    owner = trainer
    for part in path:
        owner = getattr(owner, part)
    for holder in (owner, *type(owner).__mro__):
        if attr in vars(holder):
            monkeypatch.delattr(holder, attr)
    assert not hasattr(owner, attr)


@pytest.mark.parametrize("name", INTERNALS)
def test_a_missing_internal_is_named_with_the_lightning_version(name, monkeypatch):
    trainer = _trainer()
    _remove(monkeypatch, trainer, name)
    with pytest.raises(LightningInternalsError) as raised:
        check_internals(trainer)
    message = str(raised.value)
    attr = name.rsplit(".", 1)[1]
    assert f"lightning {lightning.__version__} moved or removed " in message
    assert re.search(rf"\w+\.{re.escape(attr)} \(Trainer\.{re.escape(name)}\)", message), message
    assert "update src/initlab/_lightning.py" in message and "\n" not in message


def test_a_missing_internal_stops_a_run_at_fit_start(monkeypatch, tmp_path):
    from initlab.callbacks import ValidateAtEpochEnd

    trainer = _trainer(max_steps=1, default_root_dir=tmp_path, callbacks=[ValidateAtEpochEnd()])
    _remove(monkeypatch, trainer, "fit_loop._can_stop_early")
    with pytest.raises(LightningInternalsError, match=r"_FitLoop\._can_stop_early"):
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
    its own decision is passed on; the epoch's last batch and its epoch are known."""
    calls = []

    def decide(data_fetcher, lightning_decides) -> bool:
        trainer = probe.trainer
        calls.append((trainer.global_step, is_last_batch(trainer), epoch_wants_validation(trainer)))
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
    assert calls == [(1, False, True), (2, False, True), (3, False, True), (4, True, True)]
    assert validations.at == [2, 3]


def test_request_stop_after_step_stops_after_this_step_as_sigterm_does(tmp_path):
    def stop(trainer, batch_idx) -> None:
        if trainer.global_step == 2:
            request_stop_after_step(trainer)

    trainer = _trainer(max_epochs=3, default_root_dir=tmp_path, callbacks=[_Probe(stop)])
    with pytest.raises(SIGTERMException):
        trainer.fit(Tiny(), _loader(4))
    assert trainer.global_step == 2 and trainer.received_sigterm


def test_epochs_done_and_can_stop_early_follow_the_loop(tmp_path):
    seen = []

    def record(trainer, batch_idx) -> None:
        seen.append((trainer.global_step, epochs_done(trainer), can_stop_early(trainer)))

    trainer = _trainer(max_epochs=2, min_steps=3, default_root_dir=tmp_path)
    trainer.callbacks.append(_Probe(record))
    trainer.fit(Tiny(), _loader(2))
    assert seen == [(1, 0, False), (2, 0, False), (3, 1, True), (4, 1, True)]


# -- the fence: no other module touches them --------------------------------------------------

_PRIVATE = re.compile(
    r"\.fit_loop\b|\.epoch_loop\b|\.batch_progress\b|\.epoch_progress\b|\._signal_connector\b"
    r"|\._should_check_val|\._can_stop_early\b|\btrainer\._\w+"
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
