"""One budget: epochs, max_steps and limit_train_batches are one number of optimizer steps, from
which the validation points, the block boundaries, skip / resume / extend and the record derive.

``initlab.schedule`` owns the arithmetic; these tests hold the runs to it: any block size gives
the same record, and an extended run the record of a run that had the larger budget from the
start, whatever made the budget.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from initlab.results import read_results
from initlab.run import run
from initlab.schedule import Schedule, batch_count, limited, schedule_of

from .conftest import compose_train

# What differs between two records of the same run: how long things took, where it is, and the
# config that asked for it (another block size, or the budget said another way)
_TIMING = {"timing", "seconds_to_val_acc", "output_dir", "config"}


def _cfg(*overrides: str) -> dict[str, Any]:
    cfg = OmegaConf.to_container(
        compose_train(
            [
                "data=synthetic",
                "data.synthetic_train=420",
                "data.synthetic_test=60",
                "data.val_size=100",
                "data.batch_size=32",  # 10 steps per epoch
                "model.width=32",
                "progress_bar=false",
                "trainer.val_check_interval=4",
                "trainer.log_every_n_steps=2",
                "diagnostics.every_n_steps=3",
                *overrides,
            ]
        ),
        resolve=True,
    )
    assert isinstance(cfg, dict)
    return cfg


def _run(out: Path, *overrides: str) -> dict[str, Any]:
    return run(_cfg(*overrides), out, partial(torch.optim.SGD, lr=0.05, momentum=0.5))


def _same(a: Path, b: Path) -> None:
    ra, rb = (
        {k: v for k, v in read_results(p / "results.json").items() if k not in _TIMING}
        for p in (a, b)
    )
    for r in (ra, rb):
        r["history"] = [{k: v for k, v in h.items() if k != "wall_s"} for h in r["history"]]
    assert ra == rb
    wa, wb = (torch.load(p / "checkpoints" / "last.ckpt", weights_only=False) for p in (a, b))
    for key in wa["state_dict"]:
        assert torch.equal(wa["state_dict"][key], wb["state_dict"][key]), key


# -- the arithmetic ----------------------------------------------------------------------------
@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    n=st.integers(1, 500),
    batch=st.integers(1, 64),
    min_batch=st.sampled_from([1, 2]),
    limit=st.one_of(st.none(), st.integers(1, 30), st.floats(0.05, 1.0)),
    epochs=st.integers(1, 4),
    max_steps=st.one_of(st.none(), st.integers(1, 60)),
    every=st.one_of(st.none(), st.integers(1, 12)),
    in_epoch=st.booleans(),
    val_epochs=st.integers(1, 3),
    block=st.integers(1, 9),
)
def test_blocks_never_span_a_validation_an_epoch_end_or_the_budget_end(
    n, batch, min_batch, limit, epochs, max_steps, every, in_epoch, val_epochs, block
):
    if min_batch > batch:
        return
    per_epoch = limited(batch_count(n, batch, min_batch), limit)
    total = per_epoch * epochs if max_steps is None else min(per_epoch * epochs, max_steps)
    s = Schedule(per_epoch, total, every, in_epoch and every is not None, val_epochs, True, block)
    assert s.epochs == -(-total // per_epoch)
    assert s.validates_at(0) and s.validates_at(total) and not s.validates_at(total + 1)
    step, ends = 0, []
    while step < total:
        end = s.block_end(step)
        assert step < end <= min(total, step + block)
        assert not any(s.validates_at(x) for x in range(step + 1, end))  # only at its end
        assert not any(x % per_epoch == 0 for x in range(step + 1, end))  # no epoch end inside
        ends.append(end)
        step = end
    assert set(s.validation_steps()) - {0} <= set(ends)


def test_the_budget_is_one_number_whatever_makes_it():
    base = _cfg()
    assert schedule_of(base, 320).total_steps == 10 * 5  # 320 images / 32, 5 epochs
    cfg = _cfg("trainer.max_epochs=3", "+trainer.max_steps=25")
    assert schedule_of(cfg, 320).total_steps == 25
    cfg = _cfg("trainer.max_epochs=3", "+trainer.limit_train_batches=4")
    assert schedule_of(cfg, 320).total_steps == 12
    cfg = _cfg("trainer.max_epochs=3", "+trainer.limit_train_batches=0.5")
    assert schedule_of(cfg, 320).describe() == {"steps": 15, "steps_per_epoch": 5, "epochs": 3}


# -- the runs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("block", [1, 3, "auto"])
def test_any_block_size_gives_the_same_record_when_the_budget_ends_mid_epoch(tmp_path, block):
    """max_steps=13 under steps_per_execution=1 recorded val_acc 0.10, no thresholds and no AUC
    (the run never validated at its end), and under auto a validation at step 13."""
    _run(tmp_path / "one", "trainer.max_epochs=2", "+trainer.max_steps=13", "steps_per_execution=2")
    _run(
        tmp_path / "b",
        "trainer.max_epochs=2",
        "+trainer.max_steps=13",
        f"steps_per_execution={block}",
    )
    _same(tmp_path / "one", tmp_path / "b")
    record = read_results(tmp_path / "b" / "results.json")
    assert [h["step"] for h in record["history"]] == [0, 4, 8, 10, 12, 13]
    assert record["budget"] == {"steps": 13, "steps_per_epoch": 10, "epochs": 2}
    assert record["auc_val_acc"] is not None


@pytest.mark.parametrize(
    ("first", "then"),
    [
        # a mid-epoch budget extended by max_steps: said "extending", trained nothing, diverged
        (["+trainer.max_steps=6"], ["trainer.max_epochs=2", "+trainer.max_steps=17"]),
        # ... and by epochs alone: recorded ok with the 6-step weights as a 10-step run
        (["+trainer.max_steps=6"], ["trainer.max_epochs=1"]),
        (["trainer.max_epochs=1"], ["trainer.max_epochs=2"]),
        (
            ["+trainer.limit_train_batches=3", "trainer.max_epochs=2"],
            ["+trainer.limit_train_batches=3", "trainer.max_epochs=3"],
        ),  # fmt: skip
    ],
)
def test_an_extended_run_equals_the_run_that_had_the_larger_budget(tmp_path, first, then):
    _run(tmp_path / "extended", *first)
    record = _run(tmp_path / "extended", *then)
    assert record["budget"]["steps"] > 6
    _run(tmp_path / "fresh", *then)
    _same(tmp_path / "extended", tmp_path / "fresh")


def test_the_same_budget_made_another_way_is_the_same_run(tmp_path):
    _run(tmp_path / "run", "trainer.max_epochs=1")
    record = _run(tmp_path / "run", "trainer.max_epochs=3", "+trainer.max_steps=10")
    assert record["budget"]["steps"] == 10  # skipped: the finished record, as it was
    assert read_results(tmp_path / "run" / "results.json")["config"]["trainer"]["max_epochs"] == 1


def test_a_smaller_budget_than_was_trained_is_refused(tmp_path):
    from initlab.errors import RunMismatch

    _run(tmp_path / "run", "trainer.max_epochs=2")
    with pytest.raises(RunMismatch, match=r"budget\.steps 20 in the run, 10 now"):
        _run(tmp_path / "run", "trainer.max_epochs=1")


@settings(
    max_examples=6,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    first=st.tuples(st.integers(1, 2), st.one_of(st.none(), st.integers(1, 19))),
    more=st.integers(1, 14),
    block=st.sampled_from([1, 4, "auto"]),
)
def test_any_extension_equals_the_larger_budget_from_the_start(tmp_path, first, more, block):
    epochs, steps = first
    budget = epochs * 10 if steps is None else min(epochs * 10, steps)
    n = len(list(tmp_path.iterdir()))
    a, b = tmp_path / f"extended-{n}", tmp_path / f"fresh-{n}"
    start = [f"trainer.max_epochs={epochs}", f"steps_per_execution={block}"]
    if steps is not None:
        start.append(f"+trainer.max_steps={steps}")
    _run(a, *start)
    then = ["trainer.max_epochs=4", f"+trainer.max_steps={budget + more}"]
    _run(a, *then, f"steps_per_execution={block}")
    _run(b, *then)
    _same(a, b)
