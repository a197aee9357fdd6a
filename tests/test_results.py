"""results.json is written atomically and stays strict JSON."""

from __future__ import annotations

import json

import pytest

from initlab.results import steps_to_threshold, write_json_atomic


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


def test_steps_to_threshold():
    history = [
        {"step": 100, "val_acc": 0.85},
        {"step": 200, "val_acc": 0.93},
        {"step": 300, "val_acc": None},
        {"step": 400, "val_acc": 0.96},
    ]
    assert steps_to_threshold(history, [0.9, 0.95, 0.97]) == {
        "0.90": 200,
        "0.95": 400,
        "0.97": None,
    }
