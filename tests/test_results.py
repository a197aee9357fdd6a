"""results.json is written atomically and stays strict JSON."""

from __future__ import annotations

import json

import pytest

from initlab.results import (
    area_under_val_acc,
    first_reaching,
    threshold_key,
    write_json_atomic,
)


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "results.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2, "loss": float("nan"), "h": [float("inf"), 1.5]})
    assert json.loads(path.read_text()) == {"a": 2, "loss": None, "h": [None, 1.5]}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "results.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_first_reaching_steps_and_seconds():
    history = [
        {"step": 100, "wall_s": 1.0, "val_acc": 0.85},
        {"step": 200, "wall_s": 2.5, "val_acc": 0.93},
        {"step": 300, "wall_s": 3.0, "val_acc": None},
        {"step": 400, "wall_s": 4.0, "val_acc": 0.96},
    ]
    assert first_reaching(history, [0.9, 0.95, 0.97]) == {"0.90": 200, "0.95": 400, "0.97": None}
    assert first_reaching(history, [0.9], key="wall_s") == {"0.90": 2.5}


def test_area_under_val_acc_is_the_step_weighted_mean():
    # 0 -> 100: ramp 0.1 -> 0.9 (mean 0.5); 100 -> 300: flat 0.9; mean = (50 + 180) / 300
    history = [
        {"step": 0, "val_acc": 0.1},
        {"step": 100, "val_acc": 0.9},
        {"step": 300, "val_acc": 0.9},
    ]
    assert area_under_val_acc(history) == pytest.approx(230 / 300)
    assert area_under_val_acc(history[:1]) is None
    flat = [{"step": s, "val_acc": 0.7} for s in (0, 10, 20)]
    assert area_under_val_acc(flat) == pytest.approx(0.7)


def test_threshold_key_keeps_two_decimals_and_never_collides():
    assert [threshold_key(t) for t in (0.9, 0.95, 0.97, 0.8, 0.5)] == [
        "0.90",
        "0.95",
        "0.97",
        "0.80",
        "0.50",
    ]
    assert threshold_key(0.975) == "0.975" != threshold_key(0.97)
    assert threshold_key(0.999) == "0.999" and threshold_key(0.9001) == "0.9001"
    assert threshold_key("0.9") == threshold_key("0.90") == "0.90"  # a key maps to itself
    for t in (0.9, 0.975, 0.12345, 1 / 3):
        assert float(threshold_key(t)) == t


def test_first_reaching_keeps_close_thresholds_apart():
    history = [{"step": 100, "val_acc": 0.972}, {"step": 200, "val_acc": 0.98}]
    assert first_reaching(history, [0.97, 0.975]) == {"0.97": 100, "0.975": 200}
