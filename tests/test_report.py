"""The sweep report (initlab.report, scripts/report.py): exact numbers on a hand-made sweep."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import initlab.results as results_module
from initlab import report as rep
from initlab.hydra_callbacks import SweepFailed, SweepSummary
from initlab.report import plots as report_plots
from initlab.report import write_report
from initlab.results import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def record(
    init: str,
    norm: str,
    seed: int,
    *,
    status: str = "ok",
    test: float | None = 0.9,
    train: float | None = 0.95,
    steps: tuple = (100, 500, None),
    auc: float | None = 0.8,
    study: str | None = None,
    hidden: tuple = (512, 256),
) -> dict:
    """A results.json record as initlab.run writes it (schema: docs/results.md)."""
    r = {
        "schema_version": 3,
        "status": status,
        "error": None,
        "study": study,
        "init": init,
        "init_params": {"gain": 1.0, "bias": 0.0} if init == "xavier" else {"bias": 0.0},
        "norm": norm,
        "activation": "relu",
        "depth": len(hidden),
        "hidden_sizes": list(hidden),
        "seed": seed,
        "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.5},
        "batch_size": 64,
        "max_epochs": 5,
        "output_dir": "/somewhere",
        "dataset": {"name": "mnist", "train": 55000, "val": 5000, "test": 10000},
        "timing": {"wall_s": 12.5},
        "config": {"model": {"input_size": 784, "num_classes": 10}, "seed": seed},
    }
    if status == "failed":
        r["error"] = "RuntimeError: boom"
        r["dataset"] = None  # failed before loading the data
        return r
    final_val = None if test is None else test + 0.005
    r.update(
        diverged_at_step=250 if status == "diverged" else None,
        final={
            "train_loss": None if train is None else 1 - train,
            "train_acc": train,
            "val_loss": None,
            "val_acc": final_val,
            "test_loss": None,
            "test_acc": test,
        },
        history=[
            {"step": 0, "epoch": 0, "val_loss": 2.3, "val_acc": 0.1, "train_loss": None},
            {"step": 100, "epoch": 0, "val_loss": 0.5, "val_acc": 0.85, "train_loss": 0.6},
            {"step": 200, "epoch": 0, "val_loss": 0.3, "val_acc": final_val, "train_loss": 0.3},
        ]
        if status == "ok"
        else [{"step": 0, "epoch": 0, "val_loss": 2.3, "val_acc": 0.1, "train_loss": None}],
        steps_to_val_acc=dict(zip(("0.90", "0.95", "0.97"), steps, strict=True)),
        auc_val_acc=auc,
    )
    return r


def write(sweep: Path, job: str, rec: dict | str) -> Path:
    path = sweep / job / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(rec if isinstance(rec, str) else json.dumps(rec))
    return path


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """2 inits x 2 norms x seeds 0-2: xavier/batchnorm seed 1 diverged (null metrics), he/none
    seed 2 failed (no final), he/batchnorm seed 2 half-written (unreadable, so missing)."""
    d = tmp_path / "sweep"
    cells = {
        ("xavier", "none"): [
            dict(test=0.90, train=0.91, steps=(300, 1000, None), auc=0.80),
            dict(test=0.92, train=0.93, steps=(500, 1100, None), auc=0.85),
            dict(test=0.94, train=0.95, steps=(None, 1200, None), auc=0.90),
        ],
        ("xavier", "batchnorm"): [
            dict(test=0.95, train=0.96, steps=(200, 600, 2000)),
            dict(status="diverged", test=None, train=None, steps=(None, None, None), auc=None),
            dict(test=0.97, train=0.98, steps=(200, 800, None)),
        ],
        ("he", "none"): [
            dict(test=0.96, steps=(100, 800, None)),
            dict(test=0.98, steps=(100, 1000, None)),
            dict(status="failed"),
        ],
        ("he", "batchnorm"): [
            dict(test=0.99, steps=(100, 400, 900)),
            dict(test=0.97, steps=(100, 600, 1100)),
        ],
    }
    for (init, norm), seeds in cells.items():
        for seed, kw in enumerate(seeds):
            write(d, f"init={init},norm={norm},seed={seed}", record(init, norm, seed, **kw))
    write(d, "init=he,norm=batchnorm,seed=2", '{"status": "ok", "init": "he", "final": {"te')
    return d


def table(md: str) -> list[dict[str, str]]:
    """The first markdown table of summary.md as dicts keyed by its header."""
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = []
    for ln in lines[2:]:
        if ln.startswith("|---"):
            break
        cells = [c.strip() for c in ln.strip("|").split(" | ")]
        if len(cells) != len(header):
            break
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def row(rows: list[dict[str, str]], init: str, norm: str) -> dict[str, str]:
    (found,) = [r for r in rows if r["init"] == init and r["norm"] == norm]
    return found


def pm(values: list[float], digits: int = 3) -> str:
    """mean ± sample std, computed here independently of the report."""
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def test_exact_means_and_sample_stds(sweep: Path):
    md = write_report(sweep, plots=False).read_text()
    rows = table(md)
    xn = row(rows, "xavier", "none")
    assert xn["test acc"] == "0.920 ± 0.020" == pm([0.90, 0.92, 0.94])
    assert xn["train acc"] == "0.930 ± 0.020"
    assert xn["val AUC"] == pm([0.80, 0.85, 0.90]) == "0.850 ± 0.050"
    assert xn["steps to 95%"] == "1100 ± 100 (3/3)"
    assert xn["steps to 90%"] == f"{pm([300, 500], 0)} (2/3)" == "400 ± 141 (2/3)"
    assert xn["steps to 97%"] == "never (0/3)"
    assert xn["n"] == "3" and xn["status"] == "3 ok"
    # the diverged seed has no test acc: 2 of 3 values; steps: one seed reached 97%, alone
    xb = row(rows, "xavier", "batchnorm")
    assert xb["test acc"] == f"{pm([0.95, 0.97])} (2/3)" == "0.960 ± 0.014 (2/3)"
    assert xb["steps to 95%"] == "700 ± 141 (2/3)"
    assert xb["steps to 97%"] == "2000 (1/3)"
    assert xb["status"] == "2 ok, 1 diverged"
    # the failed seed has no validation record: steps are over the 2 runs that have one
    hn = row(rows, "he", "none")
    assert hn["status"] == "2 ok, 1 failed" and hn["n"] == "3"
    assert hn["test acc"] == "0.970 ± 0.014 (2/3)"
    assert hn["steps to 95%"] == "900 ± 141 (2/2)"
    hb = row(rows, "he", "batchnorm")
    assert hb["n"] == "2" and hb["test acc"] == "0.980 ± 0.014"
    assert hb["steps to 97%"] == "1000 ± 141 (2/2)"
    assert "sample standard deviation (ddof=1)" in md


def test_rows_sorted_by_test_acc_and_columns(sweep: Path):
    rows = table(write_report(sweep, plots=False).read_text())
    assert [(r["init"], r["norm"]) for r in rows] == [
        ("he", "batchnorm"),
        ("he", "none"),
        ("xavier", "batchnorm"),
        ("xavier", "none"),
    ]
    # only what varies (plus init and norm); no depth, no tutorial columns
    assert list(rows[0])[:4] == ["init", "norm", "n", "status"]
    assert "depth" not in rows[0] and "tutorial says" not in rows[0]


def test_header_failures_missing_seeds_and_unreadable(sweep: Path):
    md = write_report(sweep, plots=False).read_text()
    assert "**Dataset**: mnist (55,000 train / 5,000 val / 10,000 test images)" in md
    assert "**Network**: MLP 784-512-256-10, relu" in md
    assert "**Optimizer**: SGD lr 0.01 momentum 0.5, batch 64, 5 epochs" in md
    # every category named, in the end-of-sweep tally's words (test_tally.py)
    assert "**Runs**: 9 ok, 1 diverged, 1 failed, 1 unreadable (12 results.json; " in md
    failed = md.split("## Failed and diverged runs")[1].split("##")[0]
    assert "| init=he,norm=none,seed=2 | failed | 2 | RuntimeError: boom |" in failed
    assert "| init=xavier,norm=batchnorm,seed=1 | diverged | 1 | loss not finite at step 250 |" in (
        failed
    )
    missing = md.split("## Missing seeds")[1].split("##")[0]
    assert "init=he, norm=batchnorm: seeds 2 missing" in missing
    assert "init=xavier" not in missing
    bad = md.split("## Unreadable results.json")[1].split("##")[0]
    assert "init=he,norm=batchnorm,seed=2/results.json" in bad and "JSONDecodeError" in bad


def test_summary_csv_one_row_per_run(sweep: Path):
    write_report(sweep)
    with open(sweep / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12  # 11 runs + 1 unreadable
    by_run = {r["run"]: r for r in rows}
    assert by_run["init=xavier,norm=none,seed=0"]["final.test_acc"] == "0.9"
    assert by_run["init=xavier,norm=none,seed=0"]["steps_to_val_acc.0.95"] == "1000"
    assert by_run["init=xavier,norm=none,seed=0"]["optimizer.lr"] == "0.01"
    assert by_run["init=xavier,norm=none,seed=0"]["config.model.input_size"] == "784"
    assert by_run["init=xavier,norm=none,seed=0"]["history.n"] == "3"
    assert by_run["init=xavier,norm=batchnorm,seed=1"]["status"] == "diverged"
    assert by_run["init=xavier,norm=batchnorm,seed=1"]["final.test_acc"] == ""
    assert by_run["init=he,norm=none,seed=2"]["error"] == "RuntimeError: boom"
    assert by_run["init=he,norm=batchnorm,seed=2"]["status"] == "unreadable"
    assert [r["run"] for r in rows][:2] == ["init=he,norm=batchnorm,seed=0"] + [
        "init=he,norm=batchnorm,seed=1"
    ]
    tests = [float(r["final.test_acc"]) for r in rows if r["run"].startswith("init=xavier,norm=n")]
    assert statistics.stdev(tests) == pytest.approx(0.02)


def test_plots_written_no_temp_files_and_idempotent(sweep: Path):
    first = write_report(sweep)
    files = {p.name for p in sweep.iterdir() if p.is_file()}
    assert files == {"summary.md", "summary.csv", "val_acc_vs_step.png", "test_acc_heatmap.png"}
    for name in ("val_acc_vs_step.png", "test_acc_heatmap.png"):
        data = (sweep / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000
    md, table_csv = first.read_text(), (sweep / "summary.csv").read_text()
    assert "![" in md and "(val_acc_vs_step.png)" in md
    assert write_report(sweep) == first
    assert first.read_text() == md and (sweep / "summary.csv").read_text() == table_csv
    assert {p.name for p in sweep.iterdir() if p.is_file()} == files
    assert not [p for p in sweep.rglob("*") if p.name.endswith(".tmp")]
    # what the report wrote is not mistaken for results on the next run
    assert len(rep.load_runs(sweep)[0]) == 11


T_975 = {1: 12.7062, 2: 4.3027, 15: 2.1314, 16: 2.1199}  # Student t quantiles from a table


def claims_table(md: str) -> list[dict[str, str]]:
    """The table under "## Claims" as dicts keyed by its header."""
    return table(md.split("## Claims", 1)[1])


def test_tutorial_claims_column(tmp_path: Path):
    """Paired verdicts over 3 seeds. he - xavier on test accuracy: -0.015, -0.004, +0.004, whose
    95% interval contains 0 (unresolved), though he's mean is below; xavier - small_normal:
    +0.025, +0.023, +0.025, whose interval excludes 0 (holds)."""
    d = tmp_path / "tutorial"
    accs = {
        "zero": (0.1135, 0.1135, 0.1135),
        "small_normal": (0.950, 0.953, 0.949),
        "xavier": (0.975, 0.976, 0.974),
        "he": (0.960, 0.972, 0.978),
        "default": (0.972, 0.971, 0.973),
    }
    speed = {
        "zero": (None, None, None),
        "small_normal": (2000, 2100, 1900),
        "xavier": (900, 1000, 800),
        "he": (700, 600, 750),
        "default": (1000, 1000, 1000),
    }
    for init, values in accs.items():
        for seed, acc in enumerate(values):
            steps = (100, speed[init][seed], None)
            write(
                d,
                f"init={init},seed={seed}",
                record(init, "none", seed, test=acc, steps=steps, study="tutorial"),
            )
    md = write_report(d, plots=False).read_text()
    rows = table(md)
    assert [r["init"] for r in rows] == ["xavier", "default", "he", "small_normal", "zero"]
    by = {r["init"]: r for r in rows}
    assert by["zero"]["tutorial says"] == "low"
    assert by["small_normal"]["tutorial says"] == "medium, slow"
    assert by["xavier"]["tutorial says"] == "high, fast"
    assert by["he"]["tutorial says"] == "very high, fastest"
    assert by["default"]["tutorial says"] == "(not in the tutorial)"
    assert by["he"]["measured"] == "acc #3/5, speed #1/5"
    assert by["zero"]["measured"] == "acc #5/5, never 95%"
    assert by["he"]["claim holds?"] == (
        "acc: unresolved vs small_normal, xavier (3 seeds); speed: unresolved vs xavier (3 seeds)"
    )
    assert by["xavier"]["claim holds?"] == (
        "acc: unresolved vs he (3 seeds); speed: unresolved vs he (3 seeds)"
    )
    assert by["small_normal"]["claim holds?"] == "acc: unresolved vs he (3 seeds); speed: holds"
    assert by["zero"]["claim holds?"] == "acc: holds"
    assert by["default"]["claim holds?"] == "-"
    claims = {(c["better"], c["worse"], c["metric"]): c for c in claims_table(md)}
    assert len(claims) == 6 + 3  # acc: the 6 pairs of the 4 levels; speed: 3 pairs
    # he - xavier, by hand: mean ± t(0.975, 2) sd / sqrt(3)
    diffs = [h - x for h, x in zip(accs["he"], accs["xavier"], strict=True)]
    mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
    half = T_975[2] * sd / math.sqrt(3)
    he_x = claims[("he", "xavier", "test accuracy")]
    assert he_x["paired difference [95% CI]"] == (
        f"{mean:+.4f} [{mean - half:+.4f}, {mean + half:+.4f}]"
    )
    assert (
        he_x["better mean"] == "0.9700" and he_x["worse mean"] == "0.9750" and he_x["seeds"] == "3"
    )
    # the seeds that would resolve it: the first m with t(0.975, m-1) sd / sqrt(m) < |mean|
    m = int(he_x["verdict"].split("~")[1].split()[0])
    assert m == 17
    assert T_975[16] * sd / math.sqrt(17) < abs(mean) <= T_975[15] * sd / math.sqrt(16)
    assert claims[("xavier", "small_normal", "test accuracy")]["verdict"] == "**holds**"
    assert claims[("he", "small_normal", "steps to 95% val accuracy")]["verdict"] == "**holds**"
    assert "9 claims tested: 6 holds, 0 contradicted, 3 unresolved." in md


def test_steps_never_reached_are_censored_at_the_run_length(tmp_path: Path):
    """A run that never reached 95% counts as its run's length (200 steps here) in its pair: he
    reaches it in 100-120 steps, xavier never (one seed) or at 150: holds; both never: 0."""
    d = tmp_path / "tutorial"
    steps = {"he": (100, 120, None), "xavier": (None, 150, None)}
    for init, values in steps.items():
        for seed, s in enumerate(values):
            r = record(init, "none", seed, steps=(50, s, None), study="tutorial")
            write(d, f"init={init},seed={seed}", r)
    md = write_report(d, plots=False).read_text()
    (row,) = [c for c in claims_table(md) if c["metric"] == "steps to 95% val accuracy"]
    assert row["seeds"] == "3 (2 censored)"
    diffs = [100 - 200, 120 - 150, 0]  # he - xavier; the censored xavier run: 200 steps
    mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
    half = T_975[2] * sd / math.sqrt(3)
    assert (
        row["paired difference [95% CI]"] == f"{mean:+.0f} [{mean - half:+.0f}, {mean + half:+.0f}]"
    )
    assert row["better mean"] == "110 (2/3 reached)"  # he
    assert (
        "xavier: 2 of 3 runs never reached 95%; their val accuracy went from 0.100 at step 0 to "
        "0.905 (best 0.905) at step 200: it learns, later than this budget."
    ) in md
    verdict = "holds" if mean + half < 0 else "unresolved"
    assert row["verdict"].startswith(f"**{verdict}")


def test_depth_columns_and_plot(tmp_path: Path):
    d = tmp_path / "depth"
    for init in ("xavier", "he"):
        for hidden in ((256, 256), (256,) * 4):
            steps = (100, 500 * len(hidden) if init == "he" else None, None)
            job = f"init={init},model.depth={len(hidden)}"
            write(d, job, record(init, "none", 0, hidden=hidden, steps=steps, study="depth"))
    rows = table(write_report(d).read_text())
    assert list(rows[0])[:3] == ["init", "norm", "depth"]
    assert {r["depth"] for r in rows} == {"2", "4"}
    assert "**Network**: MLP 784-(hidden widths vary; depth varies (2, 4))-10, relu" in (
        (d / "summary.md").read_text()
    )
    assert (d / "depth.png").read_bytes().startswith(PNG)


def test_only_failed_runs(tmp_path: Path):
    d = tmp_path / "all_failed"
    write(d, "a", record("zero", "weightnorm", 0, status="failed"))
    write(d, "b", record("zero", "weightnorm", 1, status="failed"))
    md = write_report(d).read_text()
    (r,) = table(md)
    assert r["status"] == "2 failed" and r["test acc"] == "- (0/2)" and r["steps to 95%"] == "-"
    assert (d / "test_acc_heatmap.png").exists()


def test_write_text_atomic_never_leaves_half_a_file(tmp_path: Path, monkeypatch):
    path = tmp_path / "summary.md"
    write_text_atomic(path, "old\n")
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(results_module.os, "replace", crash)
    with pytest.raises(OSError):
        write_text_atomic(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.md"]


def test_figure_that_fails_to_save_leaves_nothing(tmp_path: Path):
    class Broken:
        def savefig(self, f, **kw):
            f.write(b"\x89PNG half")
            raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError):
        rep.save_figure_atomic(Broken(), tmp_path / "plot.png")
    assert list(tmp_path.iterdir()) == []


def test_propagation_plot_when_present(tmp_path: Path):
    torch = pytest.importorskip("torch")
    propagation = pytest.importorskip("initlab.propagation.measure")
    d = tmp_path / "prop"
    x, y = torch.randn(64, 20, dtype=torch.float64), torch.randint(0, 10, (64,))
    for init in ("he", "xavier"):
        rec = propagation.propagate({"name": init, "bias": 0.0}, [16, 16], x, y, seeds=[0, 1])
        rec["inputs"] = {"kind": "gaussian", "dataset": "gaussian", "n": 64}
        out = d / f"init={init}" / "propagation.json"
        out.parent.mkdir(parents=True)
        out.write_text(json.dumps(rec, default=str))
    md = write_report(d).read_text()
    assert (d / "propagation.png").read_bytes().startswith(PNG)
    assert "No readable results.json" in md and "(propagation.png)" in md


def test_cli(sweep: Path, tmp_path: Path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "scripts" / "report.py")]
    ok = subprocess.run([*cmd, str(sweep)], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == str((sweep / "summary.md").resolve())
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = subprocess.run([*cmd, str(empty)], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "nothing to report" in bad.stderr
    assert not (empty / "summary.md").exists()


def test_sweep_end_writes_the_report(sweep: Path, caplog):
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    with (
        caplog.at_level(logging.INFO, logger="initlab.hydra_callbacks"),
        pytest.raises(SweepFailed),  # exit status 1: a run failed, one is unreadable
    ):
        SweepSummary().on_multirun_end(cfg)
    (line,) = [r.getMessage() for r in caplog.records if "sweep finished" in r.getMessage()]
    # the half-written results.json is unreadable, as in summary.md (it was counted as failed)
    assert line.startswith("sweep finished: 9 ok, 1 diverged, 1 failed, 1 unreadable.")
    assert (
        "**Runs**: 9 ok, 1 diverged, 1 failed, 1 unreadable" in (sweep / "summary.md").read_text()
    )
    assert f"report: {sweep.resolve() / 'summary.md'}" in line
    assert (sweep / "summary.md").exists()


def test_a_broken_report_does_not_break_the_sweep_end(sweep: Path, caplog, monkeypatch):
    def broken(sweep_dir):
        raise ValueError("bad plot")

    monkeypatch.setattr(rep, "write_report", broken)
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    with (
        caplog.at_level(logging.INFO, logger="initlab.hydra_callbacks"),
        pytest.raises(SweepFailed),  # the sweep's own failed run, not the report
    ):
        SweepSummary().on_multirun_end(cfg)
    messages = [r.getMessage() for r in caplog.records]
    assert any("the report of" in m and "failed" in m for m in messages)
    assert any("report: failed (error above)" in m for m in messages)


def curve_record(init: str, seed: int, points: list[tuple[int, float]], **kw) -> dict:
    """record() with its history replaced by ``points`` (step, val acc) and no recorded steps."""
    r = record(init, "none", seed, **kw)
    r["history"] = [
        {"step": s, "epoch": 0, "val_loss": 1.0, "val_acc": a, "train_loss": None}
        for s, a in points
    ]
    del r["steps_to_val_acc"]
    return r


def csv_rows(sweep: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    with open(sweep / "summary.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    return list(reader.fieldnames or []), {r["run"]: r for r in rows}


def test_thresholds_come_from_the_records(tmp_path: Path):
    """thresholds=[0.8]: the step at which each run reached 80% is shown; no 90/95/97% columns
    (before: no 80% column, and "never" at 90/95/97% for runs that reached 99%)."""
    d = tmp_path / "t80"
    for seed, step in enumerate((1200, 1400)):
        points = [(0, 0.1), (step - 600, 0.5), (step, 0.85), (step + 600, 0.99)]
        r = curve_record("he", seed, points, test=0.99)
        r["steps_to_val_acc"] = {"0.80": step}
        write(d, f"seed={seed}", r)
    md = write_report(d, plots=False).read_text()
    (r,) = table(md)
    assert r["steps to 80%"] == "1300 ± 141 (2/2)"
    assert [c for c in r if c.startswith("steps to")] == ["steps to 80%"]
    assert "never" not in r["steps to 80%"] and "95%" not in md and "90%" not in md
    assert "*steps to 80%* is the first optimizer step" in md
    columns, rows = csv_rows(d)
    assert [c for c in columns if c.startswith("steps_to_val_acc")] == ["steps_to_val_acc.0.80"]
    assert rows["seed=0"]["steps_to_val_acc.0.80"] == "1200"


def test_mixed_thresholds_are_the_union(tmp_path: Path):
    """Runs written with different thresholds, one written before steps_to_val_acc existed, one
    failed: one column per threshold any run recorded (0.97 and 0.975 apart), sorted by value;
    a run's recorded step wins, a threshold it did not record comes from its history."""
    d = tmp_path / "mixed"
    a = curve_record("he", 0, [(0, 0.1), (100, 0.85), (200, 0.96), (300, 0.99)])
    a["steps_to_val_acc"] = {"0.80": 100}  # thresholds=[0.8]
    b = curve_record("he", 1, [(0, 0.1), (100, 0.7), (200, 0.92), (300, 0.955)])
    b["steps_to_val_acc"] = {"0.90": 200, "0.95": 300, "0.97": None}  # the default
    c = curve_record("he", 2, [(0, 0.1), (100, 0.82), (200, 0.91), (300, 0.975)])  # old record
    e = curve_record("he", 4, [(0, 0.1), (300, 0.972)])
    e["steps_to_val_acc"] = {"0.97": 300, "0.975": None}  # thresholds=[0.97,0.975]
    for job, r in {"a": a, "b": b, "c": c, "e": e}.items():
        write(d, job, r)
    write(d, "failed", record("he", "none", 3, status="failed"))
    md = write_report(d, plots=False).read_text()
    (r,) = table(md)
    steps = [k for k in r if k.startswith("steps to")]
    assert steps == ["steps to 80%", "steps to 90%", "steps to 95%", "steps to 97%"] + [
        "steps to 97.5%"
    ]
    # per threshold, runs a, b, c, e (the failed run has no validation record: not in n)
    assert r["steps to 80%"] == f"{pm([100, 200, 100, 300], 0)} (4/4)"
    assert r["steps to 90%"] == f"{pm([200, 200, 200, 300], 0)} (4/4)"
    assert r["steps to 95%"] == f"{pm([200, 300, 300, 300], 0)} (4/4)"
    assert r["steps to 97%"] == "300 ± 0 (3/4)"  # b recorded never
    assert r["steps to 97.5%"] == "300 ± 0 (2/4)"  # b (history) and e (recorded) never
    assert r["status"] == "4 ok, 1 failed"
    columns, rows = csv_rows(d)
    keys = ["0.80", "0.90", "0.95", "0.97", "0.975"]
    assert [c for c in columns if c.startswith("steps_to_val_acc")] == [
        f"steps_to_val_acc.{k}" for k in keys
    ]
    assert [rows["c"][f"steps_to_val_acc.{k}"] for k in keys] == ["100", "200", "300"] + [
        "300",
        "300",
    ]
    assert [rows["e"][f"steps_to_val_acc.{k}"] for k in keys] == ["300", "300", "300", "300", ""]
    assert [rows["failed"][f"steps_to_val_acc.{k}"] for k in keys] == [""] * 5


def test_old_records_use_the_default_thresholds(tmp_path: Path):
    d = tmp_path / "old"
    write(d, "a", curve_record("he", 0, [(0, 0.1), (100, 0.91), (200, 0.96)]))
    (r,) = table(write_report(d, plots=False).read_text())
    assert (r["steps to 90%"], r["steps to 95%"], r["steps to 97%"]) == (
        "100 (1/1)",
        "200 (1/1)",
        "never (0/1)",
    )


def test_tutorial_speed_without_a_95_threshold(tmp_path: Path):
    """thresholds=[0.8,0.99], no run reaching 99%: speed is judged at 80%, and summary.md says
    so (before: every init "never 95%", and the speed claims could not be judged)."""
    d = tmp_path / "tutorial80"
    speed = {"zero": None, "xavier": 500, "he": 300}
    accs = {"zero": 0.11, "xavier": 0.96, "he": 0.97}
    for init, step in speed.items():
        for seed in (0, 1):
            r = record(init, "none", seed, test=accs[init] + 0.001 * seed, study="tutorial")
            r["steps_to_val_acc"] = {"0.80": step, "0.99": None}
            write(d, f"init={init},seed={seed}", r)
    md = write_report(d, plots=False).read_text()
    by = {r["init"]: r for r in table(md)}
    assert by["he"]["measured"] == "acc #1/3, speed #1/3"
    assert by["xavier"]["measured"] == "acc #2/3, speed #2/3"
    assert by["zero"]["measured"] == "acc #3/3, never 80%"
    assert by["he"]["claim holds?"] == "acc: holds; speed: holds"
    assert "95% val" not in md and "never 95%" not in md
    assert (
        "speed to 80% val accuracy (more seeds reaching it, then fewer steps) among the rows "
        "that differ only in their init; 95% is not among these runs' thresholds (80%, 99%): "
        "speed is judged at 80% (the highest threshold some run reached)."
    ) in md


def test_depth_plot_uses_the_recorded_threshold(tmp_path: Path, monkeypatch):
    """thresholds=[0.8]: the depth plot's steps are to 80%, and its labels say so."""
    d = tmp_path / "depth80"
    for init in ("xavier", "he"):
        for hidden in ((256, 256), (256,) * 4):
            r = record(init, "none", 0, hidden=hidden, study="depth")
            r["steps_to_val_acc"] = {"0.80": 100 * len(hidden) if init == "he" else None}
            write(d, f"init={init},model.depth={len(hidden)}", r)
    texts: list[str] = []
    save = report_plots.save_figure_atomic

    def capture(fig, path, **kw):
        if Path(path).name == rep.DEPTH_PLOT:
            if fig._suptitle is not None:
                texts.append(fig._suptitle.get_text())
            for ax in fig.axes:
                texts.extend([ax.get_title(), ax.get_ylabel(), *(t.get_text() for t in ax.texts)])
        return save(fig, path, **kw)

    monkeypatch.setattr(report_plots, "save_figure_atomic", capture)
    md = write_report(d).read_text()
    assert (d / "depth.png").read_bytes().startswith(PNG)
    assert "steps to 80% val accuracy (mean ± std)" in texts
    assert "never reached 80%" in texts  # the strip of runs that did not reach it
    note = "95% is not among these runs' thresholds (80%): speed is judged at 80% (the highest "
    assert texts[0].replace("\n", " ") == note + "threshold some run reached)"  # the title
    assert not [t for t in texts[1:] if "95%" in t]
    assert "**Test accuracy and steps to 80% val accuracy against depth, per init**" in md


def test_paper_claims_read_the_layer_profile(tmp_path: Path):
    """glorot2010: the gradient claims compare log10 E[delta^2] fc1 / fc5 of each seed's
    layer_profile; the test accuracy claim is contradicted when standard ends above."""
    d = tmp_path / "glorot"
    fc1 = {"standard": (0.007, 0.008, 0.006), "xavier": (0.15, 0.16, 0.14)}
    for init, ratios in fc1.items():
        for seed, ratio in enumerate(ratios):
            r = record(
                init,
                "none",
                seed,
                test=0.96 + 0.001 * seed + (init == "standard") * 0.01,
                study="glorot2010",
                hidden=(256,) * 5,
            )
            grads = [ratio * 1e-3, 2e-4, 3e-4, 5e-4, 1e-3]
            r["layer_profile"] = {
                "first": {
                    "step": 0,
                    "layers": [f"fc{i}" for i in range(1, 6)],
                    "preact_q": [1.0] * 5,
                    "grad_preact_q": grads,
                },
                "last": {
                    "step": 199,
                    "layers": [f"fc{i}" for i in range(1, 6)],
                    "preact_q": [1.0] * 5,
                    "grad_preact_q": grads[::-1],
                },
            }
            write(d, f"init={init},seed={seed}", r)
    md = write_report(d).read_text()
    rows = {c["metric"]: c for c in claims_table(md)}
    at_init = rows["log10 E[δ²] first / last hidden layer, at init"]
    diffs = [
        math.log10(x) - math.log10(s) for x, s in zip(fc1["xavier"], fc1["standard"], strict=True)
    ]
    mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
    half = T_975[2] * sd / math.sqrt(3)
    assert (
        at_init["paired difference [95% CI]"]
        == f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}]"
    )
    assert (
        at_init["verdict"] == "**holds**" and at_init["source"] == "Glorot & Bengio (2010), Fig. 7"
    )
    # after training the profile is reversed (fc1 largest): ratio fc1/fc5 = 1 / ratio at init
    assert (
        rows["log10 E[δ²] first / last hidden layer, after training"]["verdict"]
        == "**contradicted**"
    )
    assert rows["test accuracy"]["verdict"] == "**contradicted**"  # standard ends 0.01 above
    assert "*glorot2010*: The *standard* init is U[-1/√n, 1/√n]" in md
    assert (d / "gradient_profile.png").read_bytes().startswith(PNG)
    assert "(gradient_profile.png)" in md


def test_no_gradient_plot_without_a_layer_profile(tmp_path: Path):
    d = tmp_path / "plain"
    for seed in (0, 1):
        write(d, f"seed={seed}", record("he", "none", seed))
    md = write_report(d).read_text()
    assert not (d / "gradient_profile.png").exists() and "gradient_profile" not in md
    assert "## Claims" not in md  # a plain run tests no claim


def _phase_record(sw: float, depth: int, seed: int, end: float, midway: float) -> dict:
    """A phase-diagram run: tanh, sigma_b2 0.05, 860 steps, 5,000 training images evaluated at
    step 0, midway (430) and the end (``midway`` and ``end``)."""
    r = record("mean_field", "none", seed, train=0.3, study="phase_diagram", hidden=(256,) * depth)
    r["activation"] = "tanh"
    r["init_params"] = {"sigma_w2": sw, "sigma_b2": 0.05, "bias": None}
    r["budget"] = {"steps": 860, "steps_per_epoch": 860, "epochs": 1}
    r["dataset"]["train_eval"] = 5000
    r["final"]["train_eval_acc"] = end
    r["history"] = [
        {"step": s, "epoch": 0, "val_acc": 0.5, "train_eval_acc": a}
        for s, a in ((0, 0.1), (430, midway), (860, end))
    ]
    return r


def test_phase_diagram_judges_cells_on_the_evaluated_accuracy_over_seeds(tmp_path: Path):
    """tanh, sigma_b2 0.05: xi_c is 3.63 at sigma_w2 1.0 (6 xi_c = 21.8) and 25.2 at 2.0. Depth 40
    at 1.0 is beyond 6 xi_c; depth 20 at 2.0 is within xi_c; depth 10 at 1.0 is between.
    A cell is trained / untrained only when the t interval of its seeds' mean clears 0.5 (the
    running-mean final.train_acc, 0.3 in every record here, is not what is judged)."""
    from initlab.propagation.theory import depth_scales

    assert 6 * depth_scales("tanh", 1.0, 0.05)[1] < 40 and depth_scales("tanh", 2.0, 0.05)[1] > 20
    cells = {  # (sigma_w2, depth): per seed (midway, end)
        (1.0, 10): [(0.8, 0.9), (0.8, 0.91), (0.8, 0.89)],  # between: trained
        (1.0, 40): [(0.09, 0.11), (0.3, 0.8), (0.5, 0.7)],  # deep, straddles 0.5: unresolved
        (2.0, 20): [(0.8, 0.95), (0.85, 0.94), (0.83, 0.96)],  # shallow: trained
        (2.0, 70): [(0.10, 0.20), (0.11, 0.25), (0.12, 0.22)],  # between, untrained, rising
    }
    d = tmp_path / "phase"
    for (sw, depth), seeds in cells.items():
        for seed, (mid, end) in enumerate(seeds):
            r = _phase_record(sw, depth, seed, end, mid)
            write(d, f"init.sigma_w2={sw},model.depth={depth},seed={seed}", r)
    md = write_report(d).read_text()
    assert "## Phase diagram" in md and "critical σ_w² is 1.761" in md
    assert "on a fixed subset of 5,000 training images" in md and "(860 steps)" in md
    assert "| 40 | 0.54 ± 0.37 ? |" in md  # the cell table: mean ± sd, verdict mark
    assert "| 10 | 0.90 ± 0.01 ✓ |" in md
    assert "0.96 ± 0.01 ✓" not in md and "0.95 ± 0.01 ✓" in md
    assert (
        "Deeper than 6ξ_c (the theory: untrainable): 1 cell: 0 trained, 0 untrained, "
        "1 unresolved ((σ_w² 1, depth 40))" in md
    )
    assert "Within ξ_c (the theory: trainable): 1 cell: 1 trained, 0 untrained." in md
    assert "**unresolved with 3 seeds** at (σ_w² 1, depth 40)" in md
    # not trained, mean gain over the second half 0.24 and 0.11, above sqrt(2 / 5000) = 0.020
    assert "**More steps could change**: (σ_w² 1, depth 40) 0.30 → 0.54, (σ_w² 2, depth 70) " in md
    assert "0.11 → 0.22" in md and "noise, 0.020" in md and "a deep cell that trains" in md
    assert (d / "phase_diagram.png").read_bytes().startswith(PNG)

    # one more seed at (1.0, 40) that trains puts its interval above 0.5: the bound is
    # contradicted there
    for seed, end in ((0, 0.86), (3, 0.85), (4, 0.87)):
        job = d / f"init.sigma_w2=1.0,model.depth=40,seed={seed}"
        job.mkdir(exist_ok=True)
        (job / "results.json").write_text(json.dumps(_phase_record(1.0, 40, seed, end, 0.5)))
    md = write_report(d, plots=False).read_text()
    assert "**contradicted** at (σ_w² 1, depth 40)" in md

    # and a deep cell that stays at chance in every seed, with shallow ones that train: holds
    e = tmp_path / "holds"
    for seed in range(3):
        write(e, f"a{seed}", _phase_record(1.0, 40, seed, 0.11 + seed / 1000, 0.11))
        write(e, f"b{seed}", _phase_record(2.0, 20, seed, 0.95 + seed / 1000, 0.9))
    md = write_report(e, plots=False).read_text()
    assert "**holds** on these runs (2 cells decide it)" in md
    assert "no cell short of trained was still rising" in md  # the deep cell gained 0.001
    # a mean gain of 0.015, within the noise of 5,000 images (0.020), is not a rise; 0.025 is
    for seed, end in ((0, 0.124), (1, 0.125), (2, 0.126)):
        (e / f"a{seed}" / "results.json").write_text(
            json.dumps(_phase_record(1.0, 40, seed, end, 0.11))
        )
    assert "no cell short of trained" in write_report(e, plots=False).read_text()
    for seed, end in ((0, 0.134), (1, 0.135), (2, 0.136)):
        (e / f"a{seed}" / "results.json").write_text(
            json.dumps(_phase_record(1.0, 40, seed, end, 0.11))
        )
    assert (
        "could change**: (σ_w² 1, depth 40) 0.11 → 0.14" in write_report(e, plots=False).read_text()
    )


def test_one_seed_decides_no_cell(tmp_path: Path):
    """One seed gives no interval: the cell is unresolved however far from 0.5 it lies."""
    write(tmp_path, "a", _phase_record(2.0, 20, 0, 0.97, 0.9))
    md = write_report(tmp_path, plots=False).read_text()
    assert "0.97 ?" in md and "**unresolved with 1 seed** at (σ_w² 2, depth 20)" in md


def test_records_without_an_evaluated_accuracy_are_not_judged(tmp_path: Path):
    r = _phase_record(2.0, 20, 0, 0.97, 0.9)
    del r["final"]["train_eval_acc"]
    write(tmp_path, "a", r)
    md = write_report(tmp_path, plots=False).read_text()
    assert "Not judged: (σ_w² 2, depth 20)" in md and "data.train_eval_size" in md
    assert "cannot be judged here" in md


def test_the_report_says_when_runs_mix_thread_counts(tmp_path: Path):
    runtime = {"device": "cpu", "torch_threads": 1, "deterministic_algorithms": True,
               "cudnn_deterministic": False, "cudnn_benchmark": False,
               "float32_matmul_precision": "highest", "torch_version": "2.14.1"}  # fmt: skip
    for seed in range(3):
        r = record("he", "none", seed)
        r["runtime"] = dict(runtime, torch_threads=2 if seed == 2 else 1)
        write(tmp_path, f"s{seed}", r)
    md = write_report(tmp_path).read_text()
    assert (
        "**Warning: the runs mix how they computed**: torch_threads: 1 (2 runs), 2 (1 runs)" in md
    )
    assert "device cpu" in md
    r["runtime"]["torch_threads"] = 1
    (tmp_path / "s2" / "results.json").write_text(json.dumps(r))
    md = write_report(tmp_path, plots=False).read_text()
    assert "mix how they computed" not in md and "torch_threads 1" in md


def _isometry_record(activation: str, weights: str, depth: int, seed: int, **kw) -> dict:
    r = record("mean_field", "none", seed, study="isometry", hidden=(256,) * depth, **kw)
    r["activation"] = activation
    r["init_params"] = {"sigma_w2": None, "sigma_b2": 0.001, "weights": weights, "bias": None}
    return r


def test_isometry_claims_compare_arms_trends_and_gaps(tmp_path: Path):
    """Arms pick configurations by init parameters and fields (tanh orthogonal against tanh
    Gaussian, never a ReLU net); a Trend compares an arm's deepest against its shallowest depth
    seed by seed; a GapTrend the advantage at the deepest against the shallowest. Numbers by
    hand from the records."""
    d = tmp_path / "iso"
    # steps to 80%: orthogonal tanh 100 at both depths; Gaussian 150 at depth 10, never at 200
    # (censored at the longer run of its pair: the run's length, 200)
    steps80 = {("orthogonal", 10): 100, ("orthogonal", 200): 100, ("gaussian", 10): 150}
    spread = {"orthogonal": {10: 0.4, 200: 8.0}, "gaussian": {10: 9.0, 200: 200.0}}
    for activation in ("tanh", "relu"):
        for weights in ("gaussian", "orthogonal"):
            for depth in (10, 200):
                for seed in range(3):
                    r = _isometry_record(activation, weights, depth, seed)
                    s = steps80.get((weights, depth)) if activation == "tanh" else 120
                    r["steps_to_val_acc"] = {"0.80": s}
                    base = spread[weights][depth] * (1 if activation == "tanh" else 3)
                    r["jacobian"] = {"spread": base * (1 + 0.01 * seed), "m1": 1.0}
                    write(d, f"a={activation},w={weights},depth={depth},seed={seed}", r)
    md = write_report(d).read_text()
    rows = claims_table(md)
    speed = [
        c for c in rows if c["metric"] == "steps to 80% val accuracy" and "faster" in c["claim"]
    ]
    assert {c["runs"] for c in speed} == {"norm=none, depth=10", "norm=none, depth=200"}  # tanh
    deep = next(c for c in speed if c["runs"].endswith("depth=200"))
    assert deep["better"] == "mean_field (weights=orthogonal, activation=tanh)"
    assert deep["paired difference [95% CI]"].startswith("-100")  # 100 - 200, every seed
    assert deep["verdict"] == "**holds**"
    (gap,) = [c for c in rows if "lead grows" in c["claim"]]
    assert gap["better mean"] == "+100" and gap["worse mean"] == "+50"
    assert gap["verdict"] == "**holds**"  # +50 at every seed: no spread, the interval is a point
    relu = [c for c in rows if "ReLU" in c["claim"] or "no weights" in c["claim"]]
    assert len(relu) == 2
    for c in relu:
        assert "depth 200" in c["better"] and "depth 10" in c["worse"]
        assert c["verdict"] == "**holds**"
    narrow = [c for c in rows if "narrow" in c["claim"]]
    assert {c["verdict"] for c in narrow} == {"**holds**"} and len(narrow) == 2


def test_a_trend_that_falls_is_contradicted(tmp_path: Path):
    """A ReLU spread that shrinks with depth contradicts the claim that it spreads."""
    d = tmp_path / "iso"
    for weights in ("gaussian", "orthogonal"):
        for depth, spread in ((10, 30.0), (50, 20.0)):
            for seed in range(3):
                r = _isometry_record("relu", weights, depth, seed)
                r["jacobian"] = {"spread": spread + seed}
                write(d, f"w={weights},depth={depth},seed={seed}", r)
    rows = claims_table(write_report(d).read_text())
    trends = [c for c in rows if "depth 50" in c["better"]]
    assert len(trends) == 2
    assert {c["verdict"] for c in trends} == {"**contradicted**"}
