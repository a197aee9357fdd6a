"""One classification of a results.json (initlab.results.classify), shared by the end-of-sweep
tally (initlab.hydra_callbacks) and the report (initlab.report): both count the same files the
same way, whatever the files hold."""

from __future__ import annotations

import csv
import json
import logging
import re
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from initlab.hydra_callbacks import SweepFailed, SweepSummary, tally
from initlab.report import load_runs
from initlab.results import CATEGORIES, STATUSES, UNREADABLE, classify, count_results

from .test_report import record

OK = record("he", "none", 0, test=0.97)


def without(rec: dict, *path: str) -> dict:
    """A copy of ``rec`` without the field at ``path``."""
    rec = json.loads(json.dumps(rec))
    parent = rec
    for k in path[:-1]:
        parent = parent[k]
    del parent[path[-1]]
    return rec


# (job name, file content, category, a fragment of the reason)
FILES: list[tuple[str, str | bytes, str, str | None]] = [
    ("ok0", json.dumps(OK), "ok", None),
    ("ok1", json.dumps(record("xavier", "none", 1, test=0.95)), "ok", None),
    ("ok2", json.dumps(record("zero", "none", 2, test=0.11)), "ok", None),
    (
        "diverged",
        json.dumps(record("he", "none", 3, status="diverged", test=None)),
        "diverged",
        None,
    ),
    ("failed", json.dumps(record("he", "none", 4, status="failed")), "failed", None),
    ("list", "[1, 2, 3]", UNREADABLE, "not a JSON object (list)"),
    ("null", "null", UNREADABLE, "not a JSON object (NoneType)"),
    ("truncated", '{"status": "ok", "init": "he", "final": {"te', UNREADABLE, "JSONDecodeError"),
    ("empty", "", UNREADABLE, "JSONDecodeError"),
    ("latin1", b'{"status": "ok", "init": "h\xe9"}', UNREADABLE, "UnicodeDecodeError"),
    ("nested", "[" * 100_000, UNREADABLE, "RecursionError"),
    ("running", json.dumps({**OK, "status": "running"}), UNREADABLE, "status 'running'"),
    ("no_status", json.dumps(without(OK, "status")), UNREADABLE, "status None"),
    ("no_init", json.dumps(without(OK, "init")), UNREADABLE, "no init name"),
    ("ok_no_final", json.dumps(without(OK, "final")), UNREADABLE, "'ok' but no final object"),
    (
        "diverged_final_list",
        json.dumps({**record("he", "none", 5, status="diverged", test=None), "final": []}),
        UNREADABLE,
        "'diverged' but no final object",
    ),
    (
        "ok_no_test_acc",
        json.dumps(without(OK, "final", "test_acc")),
        UNREADABLE,
        "final has no test_acc",
    ),
    (
        "ok_test_acc_null",
        json.dumps({**OK, "final": {**OK["final"], "test_acc": None}}),
        UNREADABLE,
        "final.test_acc is null",
    ),
    (
        "ok_test_acc_text",
        json.dumps({**OK, "final": {**OK["final"], "test_acc": "0.97"}}),
        UNREADABLE,
        "is not a number",
    ),
    (  # the optional fields of schema 4 are checked when present
        "train_eval_size_negative",
        json.dumps({**OK, "dataset": {**OK["dataset"], "train_eval": -1}}),
        UNREADABLE,
        "dataset.train_eval -1 is not",
    ),
    (
        "train_eval_acc_above_1",
        json.dumps({**OK, "final": {**OK["final"], "train_eval_acc": 1.5}}),
        UNREADABLE,
        "final.train_eval_acc 1.5 is not",
    ),
    (
        "runtime_threads_text",
        json.dumps({**OK, "runtime": {"torch_threads": "2"}}),
        UNREADABLE,
        "runtime.torch_threads '2' is not",
    ),
]


def put(sweep: Path, job: str, content: str | bytes) -> Path:
    path = sweep / job / "results.json"
    path.parent.mkdir(parents=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize(("job", "content", "category", "reason"), FILES, ids=[f[0] for f in FILES])
def test_classify(tmp_path: Path, job: str, content: str | bytes, category: str, reason):
    path = put(tmp_path, job, content)
    got, rec, why = classify(path)
    assert got == category
    if category == UNREADABLE:
        assert rec is None and reason in why
    else:
        assert why is None and rec["status"] == category and rec == json.loads(content)


def test_classify_absent_file(tmp_path: Path):
    category, rec, why = classify(tmp_path / "results.json")
    assert (category, rec) == (UNREADABLE, None) and why.startswith("FileNotFoundError")


def test_categories():
    assert CATEGORIES == (*STATUSES, "unreadable") == ("ok", "diverged", "failed", "unreadable")


def sweep_end(sweep: Path, caplog) -> str:
    """Run the end-of-sweep callback on ``sweep``; its tally, as the last line writes it."""
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="initlab.hydra_callbacks"):
        try:
            SweepSummary().on_multirun_end(cfg)
            exit_status = 0
        except SweepFailed as exc:  # after the tally and the report
            exit_status = exc.code
    (line,) = [r.getMessage() for r in caplog.records if "sweep finished" in r.getMessage()]
    match = re.match(r"sweep finished: (.*?)\. report: ", line)
    assert match, line
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (\w+)", match.group(1))}
    assert exit_status == (1 if counts["failed"] or counts["unreadable"] else 0), line
    return match.group(1)


def summary_tally(sweep: Path) -> str:
    """The tally in summary.md's header: "- **Runs**: <tally> (N results.json...)"."""
    md = (sweep / "summary.md").read_text()
    (line,) = [ln for ln in md.splitlines() if ln.startswith("- **Runs**: ")]
    return line.removeprefix("- **Runs**: ").split(" (")[0]


def csv_tally(sweep: Path) -> Counter:
    with open(sweep / "summary.csv", newline="") as f:
        return Counter(r["status"] for r in csv.DictReader(f))


def test_tally_and_summary_agree_on_every_file(tmp_path: Path, caplog):
    """Good runs of each status and every kind of bad file: the sweep's last line, summary.md's
    header, summary.csv and tally() all give the same four numbers, and the callback does not
    raise (before, a results.json holding a list made tally() raise AttributeError: no tally,
    no report)."""
    sweep = tmp_path / "sweep"
    for job, content, _, _ in FILES:
        put(sweep, job, content)
    expected = Counter(category for _, _, category, _ in FILES)
    assert expected == {"ok": 3, "diverged": 1, "failed": 1, "unreadable": 17}
    words = "3 ok, 1 diverged, 1 failed, 17 unreadable"
    assert tally(sweep) == expected == count_results(sweep)
    assert sweep_end(sweep, caplog) == words == summary_tally(sweep)
    assert csv_tally(sweep) == expected
    runs, unreadable = load_runs(sweep)
    assert len(runs) == 5 and len(unreadable) == 17
    # every unreadable file is listed in summary.md with its reason, and in summary.csv
    md = (sweep / "summary.md").read_text()
    section = md.split("## Unreadable results.json")[1].split("\n## ")[0]
    for job, _, category, reason in FILES:
        if category == UNREADABLE:
            (row,) = [ln for ln in section.splitlines() if ln.startswith(f"| {job}/results.json |")]
            assert reason in row.replace("\\|", "|"), (job, row)
    with open(sweep / "summary.csv", newline="") as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    assert rows["ok_no_final"]["status"] == "unreadable"
    assert "'ok' but no final object" in rows["ok_no_final"]["error"]
    assert rows["list"]["error"] == "not a JSON object (list)"


@pytest.mark.parametrize(
    "jobs",
    [
        ["ok0"],
        ["ok0", "list"],
        ["list"],
        ["truncated", "ok_no_final"],
        ["failed", "ok_no_final", "running"],
        ["ok0", "ok1", "diverged", "failed"],
        ["diverged", "nested", "latin1", "no_init"],
    ],
    ids=lambda jobs: "+".join(jobs),
)
def test_tally_and_summary_agree_on_subsets(tmp_path: Path, caplog, jobs: list[str]):
    sweep = tmp_path / "sweep"
    by_job = {job: (content, category) for job, content, category, _ in FILES}
    for job in jobs:
        put(sweep, job, by_job[job][0])
    expected = Counter({c: 0 for c in CATEGORIES}) + Counter(by_job[j][1] for j in jobs)
    words = ", ".join(f"{expected[c]} {c}" for c in CATEGORIES)
    assert tally(sweep) == expected
    assert sweep_end(sweep, caplog) == words == summary_tally(sweep)
    assert csv_tally(sweep) == +expected


def test_callback_survives_a_list_results_json(tmp_path: Path, caplog):
    """The bug report's case: a results.json holding a JSON list."""
    sweep = tmp_path / "sweep"
    put(sweep, "good", json.dumps(OK))
    put(sweep, "bad", "[]")
    assert sweep_end(sweep, caplog) == "1 ok, 0 diverged, 0 failed, 1 unreadable"
    assert (sweep / "summary.md").exists()
    assert tally(sweep)["unreadable"] == 1


def test_zero_unreadable_is_still_said(tmp_path: Path, caplog):
    sweep = tmp_path / "sweep"
    put(sweep, "good", json.dumps(OK))
    assert tally(sweep) == {"ok": 1, "diverged": 0, "failed": 0, "unreadable": 0}
    assert sweep_end(sweep, caplog) == "1 ok, 0 diverged, 0 failed, 0 unreadable"
    assert summary_tally(sweep) == "1 ok, 0 diverged, 0 failed, 0 unreadable"


def test_only_unreadable_files(tmp_path: Path, caplog):
    sweep = tmp_path / "sweep"
    put(sweep, "a", "[]")
    put(sweep, "b", '{"status": "ok"')
    assert sweep_end(sweep, caplog) == "0 ok, 0 diverged, 0 failed, 2 unreadable"
    assert summary_tally(sweep) == "0 ok, 0 diverged, 0 failed, 2 unreadable"
    md = (sweep / "summary.md").read_text()
    assert "No readable results.json below this directory." in md
    assert "| a/results.json | not a JSON object (list) |" in md


def test_a_failing_tally_does_not_stop_the_report(tmp_path: Path, caplog, monkeypatch):
    import initlab.hydra_callbacks as hc

    def broken(sweep_dir):
        raise PermissionError("cannot list the sweep")

    sweep = tmp_path / "sweep"
    put(sweep, "good", json.dumps(OK))
    monkeypatch.setattr(hc, "count_results", broken)
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    with (
        caplog.at_level(logging.INFO, logger="initlab.hydra_callbacks"),
        pytest.raises(SweepFailed),  # a tally that cannot be made is no proof of success
    ):
        SweepSummary().on_multirun_end(cfg)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("sweep finished: tally failed (error above)") for m in messages)
    assert (sweep / "summary.md").exists()
