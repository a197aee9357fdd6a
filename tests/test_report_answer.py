"""The answer at the top of summary.md and the one-run warning (initlab.report.headline).

The property tests draw sweeps of any inits, norms, depths, seeds and statuses (some unreadable
files, some with a study's claims) and check the answer against the table below it, parsed from
summary.md, and against an oracle computed here from the drawn runs: the answer names the row
that ranks first with its very cell, ties at the table's rounding are said, every number it
quotes is a cell of the table, and the warning appears exactly when a configuration rests on one
run. The example tests pin the text for each kind of sweep.
"""

from __future__ import annotations

import re
import shlex
import statistics
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from initlab.hydra_callbacks import top_rows
from initlab.report import plots as report_plots
from initlab.report import write_report
from initlab.report.headline import MAX_NAMED

from .conftest import run_train
from .test_report import _phase_record, record, table, write

INITS = ("zero", "xavier", "he")
NORMS = ("none", "batchnorm")
# close values, so that configurations tie at the table's rounding (3 decimals) or nearly do
ACCS = (0.1135, 0.95, 0.9504, 0.9496, 0.951, 0.97, 0.98)
WARNING = "**Warning: one run per configuration.**"
CELL = re.compile(r" — ((?:-|\d\.\d{3})(?: ± \d\.\d{3})?(?: \(\d+/\d+\))?)")


def answer(md: str) -> list[str]:
    """The answer's lines: "**Answer.** ..." and its bullets, up to the first blank line."""
    lines = md.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("**Answer.** "))
    end = lines.index("", start)
    return lines[start:end]


def label(row: dict[str, str], leave_out: tuple[str, ...] = ()) -> str:
    """A table row's configuration as the report names it: its columns before "n"."""
    fields = list(row)[: list(row).index("n")]
    return ", ".join(f"{f}={row[f]}" for f in fields if f not in leave_out)


def warning_line(md: str) -> str:
    """The line of summary.md that holds the one-run warning (there must be one)."""
    return next(ln for ln in md.splitlines() if WARNING in ln)


def mean_text(cell: str) -> str:
    return cell.split(" ")[0]


@st.composite
def sweeps(draw: st.DrawFn) -> tuple[str | None, list[dict], int]:
    """(study, runs, unreadable files): 1-5 configurations of init x norm x depth, each with 1-3
    of seeds 0-3, each run ok, diverged (with or without a test accuracy) or failed."""
    study = draw(st.sampled_from([None, None, "tutorial"]))
    depths = draw(st.sampled_from([(2,), (2, 4)]))
    cells = draw(
        st.lists(
            st.tuples(st.sampled_from(INITS), st.sampled_from(NORMS), st.sampled_from(depths)),
            min_size=1,
            max_size=5,
            unique=True,
        )
    )
    runs = []
    for init, norm, depth in cells:
        for seed in draw(st.lists(st.integers(0, 3), min_size=1, max_size=3, unique=True)):
            status = draw(st.sampled_from(["ok", "ok", "ok", "diverged", "failed"]))
            test = None
            if status == "ok":
                test = draw(st.sampled_from(ACCS))
            elif status == "diverged":
                test = draw(st.sampled_from((None, *ACCS)))
            reached = draw(st.booleans()) and status != "failed"
            runs.append(
                {
                    "init": init,
                    "norm": norm,
                    "depth": depth,
                    "seed": seed,
                    "status": status,
                    "test": test,
                    "steps": (300 if reached else None, None, None),
                }  # fmt: skip
            )
    return study, runs, draw(st.integers(0, 2))


def write_sweep(root: Path, study: str | None, runs: list[dict], unreadable: int) -> str:
    for i, r in enumerate(runs):
        rec = record(
            r["init"],
            r["norm"],
            r["seed"],
            status=r["status"],
            test=r["test"],
            train=None if r["test"] is None else 0.9,
            steps=r["steps"],
            study=study,
            hidden=(256,) * r["depth"],
        )
        write(root, f"job{i}", rec)
    for i in range(unreadable):
        write(root, f"bad{i}", '{"status": "ok", "init": "he", "fin')
    return write_report(root, plots=False).read_text()


def sweep_md(sweep: tuple[str | None, list[dict], int]) -> str:
    """summary.md of a drawn sweep (``sweeps``), written in a directory removed after."""
    with tempfile.TemporaryDirectory() as tmp:
        return write_sweep(Path(tmp), *sweep)


def groups(runs: list[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in runs:
        out.setdefault((r["init"], r["norm"], r["depth"]), []).append(r)
    return out


PROPERTY = settings(
    max_examples=80,
    deadline=None,
    database=None,
    derandomize=True,  # a fixed seed: the same sweeps on every run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY
@given(sweeps())
def test_the_answer_names_the_first_row_of_the_table_with_its_cell(sweep):
    _, runs, _ = sweep
    md = sweep_md(sweep)
    lines = answer(md)
    text = "\n".join(lines)
    rows = table(md)
    valued = [r for r in rows if not r["test acc"].startswith("-")]
    # the oracle: the best mean test accuracy over the drawn runs, per configuration
    means = [
        statistics.fmean(accs)
        for rs in groups(runs).values()
        if (accs := [r["test"] for r in rs if r["test"] is not None])
    ]
    ranking = [ln for ln in lines if "y mean test accuracy:" in ln or "One run," in ln]
    ranking += [ln for ln in lines if "One configuration," in ln or "No run has a test" in ln]
    (line,) = ranking
    if not valued:
        assert not means and "No run has a test accuracy" in line
    else:
        top = valued[0]
        assert rows[0] is top  # the rows with a value come first
        assert mean_text(top["test acc"]) == f"{max(means):.3f}"
        assert f"{label(top)} — {top['test acc']}" in line
        tied = [r for r in valued if mean_text(r["test acc"]) == mean_text(top["test acc"])]
        assert valued[: len(tied)] == tied  # a tie is the first rows
        if len(rows) > 1:
            assert ("a tie at the table's rounding" in line) == (len(tied) > 1)
            for r in tied[:MAX_NAMED]:
                assert f"{label(r)} — {r['test acc']}" in line
            if len(valued) > len(tied):
                nxt = valued[len(tied)]
                assert f"; next: {label(nxt)} — {nxt['test acc']}" in line
            else:
                assert "next:" not in line
    # every cell the answer quotes is a cell of the table's test accuracy column
    cells = {r["test acc"] for r in rows}
    quoted = CELL.findall(text)
    assert quoted or not valued
    assert set(quoted) <= cells, (quoted, cells)
    # a study's claims: their count, the Claims section's own sentence, comes first
    if "## Claims" in md:
        (count,) = re.findall(r"^\d+ claims tested: [^.]*\.", md.split("## Claims")[1], re.M)
        assert lines[0] == f"**Answer.** {count[:-1]} (*Claims* below)."
    else:
        assert "claims tested" not in text


@PROPERTY
@given(sweeps())
def test_the_one_run_warning_appears_iff_a_configuration_rests_on_one_run(sweep):
    _, runs, _ = sweep
    md = sweep_md(sweep)
    lone = [
        key
        for key, rs in groups(runs).items()
        if len(rs) == 1 or sum(r["test"] is not None for r in rs) == 1
    ]
    assert (WARNING in md) == bool(lone)
    head = md.split("- **Study**")[0]
    assert (WARNING in head) == bool(lone)  # near the top: above the header
    if lone:
        assert "`seed" in head  # how to add seeds, by the config's key
        names = [f"init={i}, norm={n}" for i, n, _ in lone]
        if len(lone) < len(groups(runs)) and len(lone) <= 8:
            warning = warning_line(md)
            assert all(name in warning for name in names)
    # a cell of one value never shows a spread: no "± 0" for one run
    for row in table(md):
        if row["n"] == "1":
            assert not [c for c in row.values() if "±" in c], row
    for row in table(md):  # nor for a configuration of which one run has a value
        for cell in (row["test acc"], row["train acc"], row["val AUC"]):
            assert not re.search(r"± .*\(1/\d+\)", cell), cell


@PROPERTY
@given(sweeps())
def test_the_answer_names_the_best_of_each_depth_and_the_rows_that_never_learned(sweep):
    _, runs, unreadable = sweep
    md = sweep_md(sweep)
    text = "\n".join(answer(md))
    rows = table(md)
    if "depth" in rows[0]:
        (line,) = [ln for ln in answer(md) if ln.startswith("- Best at each depth")]
        for depth in sorted({r["depth"] for r in rows}, key=int):
            mine = [r for r in rows if r["depth"] == depth and not r["test acc"].startswith("-")]
            if mine:
                first = mine[0]
                name = label(first, ("depth",))
                assert f"depth {depth}: {name} — {first['test acc']}" in line
            else:
                assert f"depth {depth}: no test accuracy" in line
    else:
        assert "Best at each depth" not in text
    never = [r for r in rows if r["steps to 90%"].startswith("never")]
    if never and len(never) == len(rows):
        assert "No configuration reached 90% val accuracy in any run." in text
    elif never:
        (line,) = [ln for ln in answer(md) if ln.startswith("- Never reached 90%")]
        for r in never[:MAX_NAMED]:
            assert f"{label(r)} — {r['test acc']}" in line
        assert ("more." in line) == (len(never) > MAX_NAMED)
    else:
        assert "reached 90%" not in text
    failed = sum(r["status"] == "failed" for r in runs)
    lost = sum(r["status"] == "diverged" and r["test"] is None for r in runs)
    if failed or lost or unreadable:
        (line,) = [ln for ln in answer(md) if ln.startswith("- Not in the means: ")]
        assert (f"{failed} failed run" in line) == bool(failed)
        assert (f"{lost} diverged run" in line) == bool(lost)
        assert (f"{unreadable} unreadable results.json" in line) == bool(unreadable)
    else:
        assert "Not in the means" not in text


# -- each kind of sweep ----------------------------------------------------------------------------
def test_a_plain_sweep_answers_with_the_best_and_the_next(tmp_path: Path):
    accs = {
        ("zero", "none"): (0.1135,) * 3,
        ("xavier", "none"): (0.970, 0.972, 0.975),
        ("he", "batchnorm"): (0.981, 0.980, 0.983),
        ("he", "none"): (0.972, 0.974, 0.973),
    }
    for (init, norm), values in accs.items():
        for seed, acc in enumerate(values):
            steps = (None, None, None) if init == "zero" else (300, 900, None)
            write(
                tmp_path, f"{init}-{norm}-{seed}", record(init, norm, seed, test=acc, steps=steps)
            )
    md = write_report(tmp_path, plots=False).read_text()
    assert answer(md) == [
        "**Answer.** Best by mean test accuracy: init=he, norm=batchnorm — 0.981 ± 0.002 (n=3);"
        " next: init=he, norm=none — 0.973 ± 0.001 (n=3).",
        "- Never reached 90% val accuracy in any run: init=zero, norm=none — 0.114 ± 0.000.",
    ]
    assert md.index("**Answer.**") < md.index("- **Study**") < md.index("| init |")
    assert WARNING not in md
    # the end of a sweep still shows the table's top rows, not the answer
    assert top_rows(tmp_path / "summary.md")[0].split()[:3] == ["init", "norm", "n"]


def test_a_tie_at_the_tables_rounding_is_said(tmp_path: Path):
    """0.9721 and 0.9724 both print 0.972: the answer does not call one of them best."""
    for seed in range(2):
        write(tmp_path, f"x{seed}", record("xavier", "none", seed, test=0.9721 + 0.001 * seed))
        write(tmp_path, f"h{seed}", record("he", "none", seed, test=0.9724 + 0.001 * seed))
        write(tmp_path, f"z{seed}", record("zero", "none", seed, test=0.1135))
    (line, *_) = answer(write_report(tmp_path, plots=False).read_text())
    assert line == (
        "**Answer.** Best by mean test accuracy: a tie at the table's rounding (0.973) between "
        "init=he, norm=none — 0.973 ± 0.001 (n=2) and init=xavier, norm=none — 0.973 ± 0.001 "
        "(n=2); next: init=zero, norm=none — 0.114 ± 0.000 (n=2)."
    )


def test_a_depth_study_answers_per_depth(tmp_path: Path):
    """Xavier is best at depth 2, He at depth 8: the answer says both, each with its cell."""
    accs = {("xavier", 2): 0.975, ("he", 2): 0.970, ("xavier", 8): 0.90, ("he", 8): 0.95}
    for (init, depth), acc in accs.items():
        for seed in range(2):
            r = record(init, "none", seed, test=acc + 0.002 * seed, hidden=(256,) * depth)
            write(tmp_path, f"{init}-{depth}-{seed}", r)
    lines = answer(write_report(tmp_path, plots=False).read_text())
    assert lines[:2] == [
        "**Answer.** Best by mean test accuracy: init=xavier, norm=none, depth=2 — 0.976 ± 0.001 "
        "(n=2); next: init=he, norm=none, depth=2 — 0.971 ± 0.001 (n=2).",
        "- Best at each depth (by mean test accuracy): depth 2: init=xavier, norm=none — "
        "0.976 ± 0.001; depth 8: init=he, norm=none — 0.951 ± 0.001.",
    ]


def test_a_study_with_claims_answers_with_their_count_first(tmp_path: Path):
    """he2015's three claims on runs where Xavier ends higher: the test accuracy claim is
    contradicted, and the answer names it."""
    for init, bonus in (("he", 0.0), ("xavier", 0.01)):
        for seed in range(3):
            r = record(init, "none", seed, test=0.95 + 0.001 * seed + bonus, study="he2015",
                       hidden=(256,) * 30, steps=(100, 500, None))  # fmt: skip
            write(tmp_path, f"{init}{seed}", r)
    md = write_report(tmp_path, plots=False).read_text()
    assert answer(md) == [
        "**Answer.** 3 claims tested: 0 holds, 1 contradicted, 2 unresolved (*Claims* below).",
        "- Contradicted: he vs xavier, test accuracy.",
        "- Best by mean test accuracy: init=xavier, norm=none — 0.961 ± 0.001 (n=3); next: "
        "init=he, norm=none — 0.951 ± 0.001 (n=3).",
    ]
    assert "3 claims tested: 0 holds, 1 contradicted, 2 unresolved." in md.split("## Claims")[1]


def test_a_phase_diagram_answers_with_its_boundarys_verdict(tmp_path: Path):
    for seed in range(3):
        write(tmp_path, f"a{seed}", _phase_record(1.0, 40, seed, 0.11 + seed / 1000, 0.11))
        write(tmp_path, f"b{seed}", _phase_record(2.0, 20, seed, 0.95 + seed / 1000, 0.9))
    md = write_report(tmp_path, plots=False).read_text()
    verdict = "the boundary depth ≈ 6ξ_c: **holds** on these runs (2 cells decide it)."
    assert answer(md)[0] == f"**Answer.** Phase diagram (tanh, σ_b² = 0.05): {verdict}"
    assert f"- The boundary depth ≈ 6ξ_c: {verdict.split(': ', 1)[1]}" in md  # the section's


def test_sweeps_where_nothing_ranks(tmp_path: Path):
    diverged, failed, both = tmp_path / "diverged", tmp_path / "failed", tmp_path / "with_acc"
    for init in ("he", "xavier"):
        for seed in range(2):
            kw = dict(status="diverged", train=None, steps=(None, None, None))
            write(diverged, f"{init}{seed}", record(init, "none", seed, test=None, **kw))
            write(both, f"{init}{seed}", record(init, "none", seed, test=0.098, **kw))
            write(failed, f"{init}{seed}", record(init, "none", seed, status="failed"))
    assert answer(write_report(diverged, plots=False).read_text()) == [
        "**Answer.** No run has a test accuracy (4 diverged): nothing to rank; what happened to "
        "each run is listed under *Failed and diverged runs*.",
        "- No configuration reached 90% val accuracy in any run.",
        "- Not in the means: 4 diverged runs without a test accuracy (listed below).",
    ]
    assert answer(write_report(failed, plots=False).read_text()) == [
        "**Answer.** No run has a test accuracy (4 failed): nothing to rank; what happened to "
        "each run is listed under *Failed and diverged runs*.",
        "- Not in the means: 4 failed runs (listed below).",
    ]
    assert answer(write_report(both, plots=False).read_text()) == [
        "**Answer.** Best by mean test accuracy: a tie at the table's rounding (0.098) between "
        "init=xavier, norm=none — 0.098 ± 0.000 (n=2: 2 diverged) and init=he, norm=none — "
        "0.098 ± 0.000 (n=2: 2 diverged).",
        "- No configuration reached 90% val accuracy in any run.",
        "- 4 diverged runs in the means: each counts with the test accuracy it ended at.",
    ]


def test_unreadable_results_and_an_empty_directory(tmp_path: Path):
    write(tmp_path / "bad", "a", '{"status": "ok"')
    write(tmp_path / "bad", "b", "[]")
    (tmp_path / "empty").mkdir()
    assert answer(write_report(tmp_path / "bad", plots=False).read_text()) == [
        "**Answer.** No readable results.json below this directory. 2 unreadable ones are "
        "listed below, never aggregated."
    ]
    assert answer(write_report(tmp_path / "empty", plots=False).read_text()) == [
        "**Answer.** No readable results.json below this directory."
    ]


def test_a_single_run_is_answered_and_warned(tmp_path: Path):
    write(tmp_path, "run", record("he", "none", 0, test=0.958))
    md = write_report(tmp_path).read_text()
    assert answer(md) == [
        "**Answer.** One run, init=he, norm=none — 0.958 (n=1): nothing to rank it against."
    ]
    warning = warning_line(md)
    assert "Every configuration (1) rests on one run." in warning
    assert "every run here has seed 0" in warning
    assert "`seed=1,2` and `hydra.sweep.dir=`" in warning  # no multirun.yaml: said in words
    (row,) = table(md)
    assert row["test acc"] == "0.958" and "±" not in "".join(row.values())


def test_one_configuration_of_one_seed_among_others_is_named(tmp_path: Path):
    for seed in range(3):
        write(tmp_path, f"x{seed}", record("xavier", "none", seed, test=0.97 + 0.001 * seed))
    write(tmp_path, "h0", record("he", "none", 0, test=0.975))
    write(tmp_path, "z0", record("zero", "none", 0, test=0.11))
    write(tmp_path, "z1", record("zero", "none", 1, status="failed"))
    warning = warning_line(write_report(tmp_path).read_text())
    assert "2 of 3 configurations rest on one run: init=he, norm=none; init=zero, norm=none " in (
        warning
    )
    assert "(1 of 2 runs has a test accuracy)" in warning
    assert "the runs here have seeds 0, 1, 2" in warning and "`seed=0,1,2`" in warning


def _sweep_yaml(task: list[str], hydra: list[str]) -> str:
    lines = ["hydra:", "  overrides:", "    hydra:", *(f"    - {o}" for o in hydra), "    task:"]
    return "\n".join([*lines, *(f"    - '{o}'" for o in task), ""])


def test_the_warnings_command_is_the_sweeps_own_with_seeds_and_its_dir(tmp_path: Path):
    """A sweep dir whose name Hydra reads as a list unless quoted (',' and '='), with a space:
    the command's words parse back to the sweep's overrides, the seeds and the dir."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweep = tmp_path / "my sweeps" / "10-00-00_experiment=x,debug=smoke"
    for init in ("zero", "he"):
        write(sweep, f"init={init}", record(init, "none", 0))
    task = ["init=zero,he", "model.hidden_sizes=[64,32]", "seed=0"]
    hydra = ["hydra.mode=MULTIRUN", "hydra/launcher=local", f"hydra.sweep.dir={sweep}"]
    (sweep / "multirun.yaml").write_text(_sweep_yaml(task, hydra))
    md = write_report(sweep, plots=False).read_text()
    (command,) = re.findall(r"^> `(python train\.py .*)`$", md, re.M)
    words = shlex.split(command)
    assert words[:3] == ["python", "train.py", "-m"]
    parsed = {o.key_or_group: o for o in OverridesParser.create().parse_overrides(words[3:])}
    assert list(parsed) == [
        "init",
        "model.hidden_sizes",
        "hydra/launcher",
        "seed",
        "hydra.sweep.dir",
    ]
    assert parsed["seed"].sweep_string_iterator is not None
    assert list(parsed["seed"].sweep_string_iterator()) == ["1", "2"]  # the seeds not yet run
    assert parsed["hydra.sweep.dir"].value() == str(sweep.resolve())
    assert not parsed["hydra.sweep.dir"].is_sweep_override()


@pytest.mark.slow  # two sweeps through train.py: 15-60 s on 2 cores
def test_the_warnings_command_adds_the_seeds_beside_the_runs(tmp_path: Path):
    """The user's way out, run as printed: a sweep of one seed, then the warning's command: the
    report has 3 seeds per configuration, and no warning."""
    sweep = tmp_path / "sweep"
    args = ["-m", "init=zero,he", "debug=smoke", "progress_bar=false", "diagnostics=off"]
    first = run_train([*args, "logger=none", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    md = (sweep / "summary.md").read_text()
    assert WARNING in md
    (command,) = re.findall(r"^> `python train\.py (.*)`$", md, re.M)
    again = run_train(shlex.split(command), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    md = (sweep / "summary.md").read_text()
    assert WARNING not in md
    assert [r["n"] for r in table(md)] == ["3", "3"]


def _plotted(root: Path, monkeypatch) -> dict[str, Any]:
    """write_report(root) with its plots: the figures it saved, by file name."""
    caught = {}
    save = report_plots.save_figure_atomic

    def catch(fig, path, **kw):
        caught[Path(path).name] = fig
        return save(fig, path, **kw)

    monkeypatch.setattr(report_plots, "save_figure_atomic", catch)
    write_report(root)
    return caught


def test_plots_draw_no_spread_for_one_run(tmp_path: Path, monkeypatch):
    """A depth plot's point of one run has no error bar (a bar of 0 reads as ± 0): a hollow
    marker, explained in the legend; the heatmap and the val curves say one run, no spread."""
    for init in ("xavier", "he"):
        for depth in (2, 4):
            r = record(init, "none", 0, hidden=(256,) * depth, study="depth")
            write(tmp_path, f"{init}-{depth}", r)
    caught = _plotted(tmp_path, monkeypatch)
    depth = caught["depth.png"]
    assert all(not ax.containers for ax in depth.axes)  # no error bars at all
    hollow = [ln for ax in depth.axes for ln in ax.lines if ln.get_mfc() == "white"]
    assert hollow
    legend = [t.get_text() for lg in depth.legends for t in lg.get_texts()]
    assert "one run: no spread" in legend
    heat = caught["test_acc_heatmap.png"]
    assert "one run (seed) of each cell: no spread" in heat._suptitle.get_text()
    assert not [t for ax in heat.axes for t in ax.texts if "±" in t.get_text()]
    val = caught["val_acc_vs_step.png"]
    assert "one run per line (one seed: no band)" in val._suptitle.get_text().replace("\n", " ")
    assert "min-max over seeds" not in [t.get_text() for lg in val.legends for t in lg.get_texts()]


@pytest.mark.parametrize("seeds", [(0, 1), (0, 1, 2)])
def test_plots_keep_their_bars_with_seeds(tmp_path: Path, monkeypatch, seeds):
    for init in ("xavier", "he"):
        for depth in (2, 4):
            for seed in seeds:
                r = record(init, "none", seed, test=0.9 + 0.01 * seed, hidden=(256,) * depth)
                write(tmp_path, f"{init}-{depth}-{seed}", r)
    depth = _plotted(tmp_path, monkeypatch)["depth.png"]
    assert any(ax.containers for ax in depth.axes)
    assert not [ln for ax in depth.axes for ln in ax.lines if ln.get_mfc() == "white"]
    assert "one run: no spread" not in [
        t.get_text() for lg in depth.legends for t in lg.get_texts()
    ]


def test_the_warning_says_what_one_seed_leaves_unresolved(tmp_path: Path):
    """A tutorial of one seed: every claim row has one pair; a phase diagram of one seed: every
    cell has one seed. Both stay unresolved, and the warning counts them."""
    tutorial, phase = tmp_path / "tutorial", tmp_path / "phase"
    for init, acc in {"zero": 0.1135, "small_normal": 0.95, "xavier": 0.975, "he": 0.972}.items():
        write(tutorial, init, record(init, "none", 0, test=acc, study="tutorial"))
    write(phase, "a", _phase_record(2.0, 20, 0, 0.97, 0.9))
    write(phase, "b", _phase_record(1.0, 40, 0, 0.11, 0.1))
    md = write_report(tutorial, plots=False).read_text()
    assert answer(md)[0] == (
        "**Answer.** 9 claims tested: 0 holds, 0 contradicted, 9 unresolved (*Claims* below)."
    )
    assert "9 claim rows have fewer than two seed pairs: unresolved." in md
    md = write_report(phase, plots=False).read_text()
    assert answer(md)[0].endswith(
        "**unresolved with 1 seed** at (σ_w² 1, depth 40), (σ_w² 2, depth 20)."
    )
    assert "2 phase cells have one seed: unresolved." in md
