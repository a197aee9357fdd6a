"""scripts/bench.py runs end to end in its tiny mode (a smoke test: no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import ROOT


def test_bench_tiny_writes_its_table_and_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--tiny", "3", "--repeat", "1",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["samples_per_s"]) == {"A", "B", "C", "D"}
    for stats in report["samples_per_s"].values():
        assert 0 < stats["min"] <= stats["median"] <= stats["max"]
    assert (
        set(report["ratios"]) == set(report["paired_ratios"]) == {"C/A", "C/B", "B/A", "D/B", "C/D"}
    )
    assert all(len(v) == 1 for v in report["samples_per_s_per_repeat"].values())
    assert report["eval_over_train_time_C"]["median"] > 0
    assert report["gemm_flop_per_s"] > 0 and report["startup_to_first_step_s"] > 0
    assert "samples/s (median)" in proc.stdout and "FLOP bound" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]  # nothing else written
