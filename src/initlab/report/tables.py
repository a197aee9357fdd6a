"""summary.md and summary.csv: the text of the report."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from initlab.report.aggregate import (
    SPEED_THRESHOLD,
    TEST_ACC_COLUMN,
    Config,
    config_label,
    fmt_num,
    fmt_stat,
    fmt_status,
    fmt_steps,
    missing_seeds,
    speed_note,
    speed_threshold,
    test_acc_cell,
    varying_fields,
)
from initlab.report.claims import (
    STUDY_NOTES,
    TUTORIAL_STUDY,
    Comparison,
    comparisons,
    late_learning,
    tally,
    tutorial_columns,
)
from initlab.report.files import SUMMARY_CSV
from initlab.report.headline import answer_items, answer_lines, one_run_warning
from initlab.report.load import (
    Unreadable,
    auc,
    category_counts,
    get,
    optimizer_setting,
    pct,
    report_thresholds,
    steps_to,
)
from initlab.report.phase import cells, verdict_lines
from initlab.results import CATEGORIES, RUNTIME_DECIDING, UNREADABLE, format_counts

EVALUATED = "train acc (evaluated)"  # final.train_eval_acc's column


def how_to_read(keys: Sequence[str], example: str | None = None) -> str:
    """The paragraph under the header, for the thresholds ``keys`` (report_thresholds); its
    example column is ``example`` (default: 95% when it is one of them, else the highest)."""
    if example is None:
        example = SPEED_THRESHOLD if SPEED_THRESHOLD in keys else keys[-1]
    listed = ", ".join(f"{pct(k)}%" for k in keys)
    return (
        "One row per configuration (the runs that differ only in their seed), best mean test "
        "accuracy first. Each cell is mean ± sample standard deviation (ddof=1) over the seeds "
        "that have a value; a single value is written alone, and (k/n) says when only k of the n "
        f"runs have one. *steps to {pct(example)}%* is the first optimizer step at which "
        f"validation accuracy reached {pct(example)}%, averaged over the seeds that reached it, "
        "with (k/n) how many did; *never* means none did (one column per threshold in the runs' "
        f"results.json: {listed}). *train acc* is the mean batch accuracy over the last epoch, "
        "each batch's as the net was then (so it lags the net's end state); *train acc "
        "(evaluated)*, when the runs have it, is the net at the end, in eval mode, on a fixed "
        "subset of the training images (`data.train_eval_size`). *val AUC* is the mean "
        "validation accuracy over training (area "
        "under the val-accuracy curve per step): higher means it learned faster and better. A "
        "diverged run (its loss became NaN) or a failed one (an error) is counted in *status* "
        "and listed below the table, never dropped."
    )


def md_cell(value: Any) -> str:
    text = "-" if value is None else fmt_num(value)
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_cell(v) for v in row) + " |" for row in rows]
    return lines


def _common(values: Iterable[Any], fmt: Callable[[Any], str] = fmt_num) -> str:
    distinct = sorted({json.dumps(v, sort_keys=True, default=str) for v in values})
    if len(distinct) == 1:
        return fmt(json.loads(distinct[0]))
    shown = ", ".join(fmt(json.loads(v)) for v in distinct[:6])
    return f"varies ({shown}{', ...' if len(distinct) > 6 else ''})"


def _dataset_text(d: Any) -> str:
    if not isinstance(d, Mapping):
        return "?"
    sizes = [f"{d[k]:,} {k}" for k in ("train", "val", "test") if isinstance(d.get(k), int)]
    return f"{d.get('name')} ({' / '.join(sizes)} images)" if sizes else str(d.get("name"))


def header_lines(runs: Sequence[Mapping[str, Any]], n_unreadable: int) -> list[str]:
    """Dataset, network, optimizer and the run tally ("varies" where runs differ)."""
    with_data = [r for r in runs if isinstance(r.get("dataset"), Mapping)]
    dataset = _common((r["dataset"] for r in with_data), _dataset_text) if with_data else "?"
    inputs = _common(get(r, "config", "model", "input_size") or "?" for r in runs)
    classes = _common(get(r, "config", "model", "num_classes") or "?" for r in runs)
    widths = _common("-".join(map(str, r.get("hidden_sizes") or [])) or "?" for r in runs)
    activation = _common(r.get("activation") for r in runs)
    if widths.startswith("varies"):
        depths = _common(len(r.get("hidden_sizes") or []) for r in runs)
        network = f"MLP {inputs}-(hidden widths vary; depth {depths})-{classes}, {activation}"
    else:
        network = f"MLP {inputs}-{widths}-{classes}, {activation}"
    opt = _common(str(optimizer_setting(r, "name") or "?").upper() for r in runs)
    lr = _common(optimizer_setting(r, "lr") for r in runs)
    momentum = _common(optimizer_setting(r, "momentum") for r in runs)
    batch = _common(r.get("batch_size") for r in runs)
    epochs = _common(r.get("max_epochs") for r in runs)
    studies = _common(r.get("study") or "none (plain train.py runs)" for r in runs)
    return [
        f"- **Study**: {studies}",
        f"- **Dataset**: {dataset}",
        f"- **Network**: {network}",
        f"- **Optimizer**: {opt} lr {lr} momentum {momentum}, batch {batch}, {epochs} epochs",
        *runtime_lines(runs),
        runs_line(category_counts(runs, n_unreadable)),
    ]


def runtime_lines(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """How the runs did their arithmetic (each record's ``runtime``), and a warning when they
    differ in something that decides the numbers (``RUNTIME_DECIDING``): float sums then run in
    another order, and runs of one seed are no longer the same computation."""
    finished = [r for r in runs if r.get("status") in ("ok", "diverged")]  # a fit started
    recorded = [r["runtime"] for r in finished if isinstance(r.get("runtime"), Mapping)]
    if not recorded:
        return []
    values = {k: Counter(str(rt.get(k, "?")) for rt in recorded) for k in RUNTIME_DECIDING}
    shown = ", ".join(f"{k} {' / '.join(sorted(v))}" for k, v in values.items() if len(v) == 1)
    lines = [f"- **Arithmetic** ({len(recorded)} runs' `runtime`): {shown}"]
    mixed = {k: v for k, v in values.items() if len(v) > 1}
    if mixed:
        what = "; ".join(
            f"{k}: " + ", ".join(f"{val} ({n} runs)" for val, n in sorted(v.items()))
            for k, v in mixed.items()
        )
        lines.append(
            f"- **Warning: the runs mix how they computed**: {what}. Float sums then run in "
            "another order: the same config and seed give other numbers, and a run near an "
            "instability (the edge of chaos) can end elsewhere. Compare runs made alike."
        )
    if len(recorded) < len(finished):
        lines.append(
            f"- {len(finished) - len(recorded)} runs recorded no `runtime` (older records)."
        )
    return lines


def runs_line(tally: Mapping[str, int]) -> str:
    """The header's tally of the results.json files, in the words of the sweep's last line:
    "- **Runs**: 9 ok, 1 diverged, 1 failed, 1 unreadable (12 results.json; ...)"."""
    total = sum(tally.get(c, 0) for c in CATEGORIES)
    text = f"- **Runs**: {format_counts(tally)} ({total} results.json"
    if tally.get(UNREADABLE):
        text += "; the unreadable ones are listed below and never aggregated"
    return text + ")"


def metrics(
    keys: Sequence[str], evaluated: bool = False
) -> list[tuple[str, Callable[[Config], str]]]:
    """The metric columns of the main table: (name, cell) with one "steps to X%" column per
    threshold key; ``evaluated``: a column for the training subset evaluated at the end."""
    return [
        ("train acc", lambda c: fmt_stat(c.final("train_acc"))),
        *([(EVALUATED, lambda c: fmt_stat(c.final("train_eval_acc")))] if evaluated else []),
        (TEST_ACC_COLUMN, test_acc_cell),
        *((f"steps to {pct(k)}%", lambda c, k=k: fmt_steps(c.steps(k))) for k in keys),
        ("val AUC", lambda c: fmt_stat(c.auc())),
    ]


def summary_table(
    configs: Sequence[Config],
    keys: Sequence[str] | None = None,
    speed_key: str | None = None,
    found: Sequence[Comparison] | None = None,
) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the main table (configs in the order given); ``keys``: the
    thresholds (default: report_thresholds of the configurations' runs); ``found``: the tested
    claims (default: claims.comparisons of the configurations)."""
    runs = [r for c in configs for r in c.runs]
    keys = report_thresholds(runs) if keys is None else keys
    speed_key = speed_threshold(runs, keys) if speed_key is None else speed_key
    shown = varying_fields(configs)
    found = comparisons(configs, shown) if found is None else found
    tutorial = tutorial_columns(configs, found, speed_key)
    columns = metrics(keys, any(get(r, "final", "train_eval_acc") is not None for r in runs))
    header = [*shown, "n", "status", *(name for name, _ in columns)]
    if tutorial:
        header += ["tutorial says", "measured", "claim holds?"]
    rows = []
    for c in configs:
        row = [fmt_num(c.key[f]) if c.key[f] is not None else "-" for f in shown]
        row += [str(len(c.runs)), fmt_status(c.status_counts)]
        row += [fn(c) for _, fn in columns]
        if tutorial:
            row += list(tutorial.get(id(c), ("", "", "")))
        rows.append(row)
    return header, rows


VERDICT_RULE = (
    "Each claim is tested on the runs that differ only in what it compares (the init, or the "
    "init parameter, activation or norm its sides name; a trend: the depth), seed by seed: runs"
    " of one seed share the data order, so the paired difference (the claimed-better side's "
    "value minus the other's) removes what the seed does to both. *paired difference* is its "
    "mean over the seeds both inits have, with a 95% Student t interval (mean ± t(0.975, n-1) ·"
    " sd / √n). **holds**: the interval excludes 0 in the claimed direction; **contradicted**: "
    "it excludes 0 the other way; **unresolved with n seeds**: it contains 0, and *~m would "
    "resolve it* is how many seeds would make the interval exclude 0 if the mean difference and"
    " its spread stayed as observed. For steps to a threshold, fewer is better, and a run that "
    "never reached it counts as the length of the longer run of its pair: a lower bound, so the"
    " true difference is at least the one shown, and two runs that both never reached it differ"
    " by 0."
)


def claims_section(found: Sequence[Comparison]) -> list[str]:
    """## Claims: one row per claim tested, with its paired difference and verdict."""
    if not found:
        return []
    lines = ["## Claims", "", VERDICT_RULE, ""]
    grouped = any(c.group for c in found)
    header = ["claim", "source", "metric", "better", "better mean", "worse", "worse mean"]
    header += ["paired difference [95% CI]", "seeds", "verdict"]
    if grouped:
        header.insert(0, "runs")
    rows = []
    for c in found:
        metric = c.claim.metric
        row = [
            c.claim.says,
            c.claim.source,
            metric.name,
            c.labels[0],
            c.means[0],
            c.labels[1],
            c.means[1],
            c.effect_text(),
            str(c.pairs.n) + (f" ({c.censored} censored)" if c.censored else ""),
            f"**{c.verdict_text()}**",
        ]
        rows.append([c.group, *row] if grouped else row)
    lines += md_table(header, rows)
    lines.append("")
    lines += [tally(found) + ".", ""]
    late = late_learning(found)
    if late:
        lines += ["Runs that never reached a threshold of a claim: " + " ".join(late), ""]
    studies = {c.better.key.get("study") for c in found}
    lines += [f"*{s}*: {STUDY_NOTES[s]}\n" for s in sorted(studies, key=str) if s in STUDY_NOTES]
    return lines


def render_summary(
    sweep_dir: Path,
    runs: Sequence[Mapping[str, Any]],
    unreadable: Sequence[Unreadable],
    configs: Sequence[Config],
    plots: Sequence[tuple[str, str]],
    plot_errors: Sequence[str],
) -> str:
    """summary.md's text (deterministic: no timestamps, so rewriting it changes nothing)."""
    lines = [f"# Sweep report: {sweep_dir.name}", ""]
    lines += [f"`{sweep_dir}`", ""]
    found: list[Comparison] = []
    keys = report_thresholds(runs)
    if runs:
        found = comparisons(configs, varying_fields(configs))
    phase_cells = cells(configs)
    lines += answer_lines(answer_items(runs, len(unreadable), configs, found, phase_cells, keys))
    lines += one_run_warning(configs, found, phase_cells, sweep_dir)
    if not runs:  # the answer says there is none
        if unreadable:
            lines += [runs_line(category_counts(runs, len(unreadable))), ""]
    else:
        speed_key = speed_threshold(runs, keys)
        lines += header_lines(runs, len(unreadable))
        lines += ["", f"**How to read this.** {how_to_read(keys, speed_key)}", ""]
        header, rows = summary_table(configs, keys, speed_key, found)
        lines += md_table(header, rows)
        lines.append("")
        if any(c.key["study"] == TUTORIAL_STUDY for c in configs):
            note = speed_note(runs, keys, speed_key)
            lines += [
                "*tutorial says*: the tutorial's qualitative claim for that init (final "
                "performance, convergence speed). *measured*: the rank of mean test accuracy "
                f"and of speed to {pct(speed_key)}% val accuracy (more seeds reaching it, then "
                "fewer steps) among the rows that differ only in their init"
                + (f"; {note}" if note else "")
                + ". *claim holds?*: the verdicts of the claims below that involve that init "
                "(zero < small < Xavier < He on test accuracy; small < Xavier < He on speed): "
                "holds when all hold, contradicted when one is, else unresolved, naming the "
                "inits it cannot yet be told from.",
                "",
            ]
        lines += claims_section(found)
        lines += verdict_lines(phase_cells)
    bad = [r for r in runs if r["status"] != "ok"]
    if bad:
        lines += ["## Failed and diverged runs", ""]
        rows = []
        for r in sorted(bad, key=lambda r: (r["status"], r["_run"])):
            what = r.get("error") or ""
            if r["status"] == "diverged":
                step = r.get("diverged_at_step")
                what = f"loss not finite at step {step}" if step is not None else "loss not finite"
            rows.append([r["_run"], r["status"], r.get("seed"), what])
        lines += md_table(["run", "status", "seed", "what happened"], rows)
        lines.append("")
    missing = missing_seeds(configs)
    if missing:
        shown = varying_fields(configs)
        lines += ["## Missing seeds", ""]
        lines += [
            f"- {config_label(c, shown)}: seeds {', '.join(map(str, seeds))} missing "
            f"(has {', '.join(map(str, c.seeds))})"
            for c, seeds in missing
        ]
        lines.append("")
    if unreadable:
        lines += ["## Unreadable results.json (not aggregated)", ""]
        lines += md_table(
            ["file", "why"],
            ([relative(u.path, sweep_dir), u.reason] for u in unreadable),
        )
        lines.append("")
    if plots or plot_errors:
        lines += ["## Plots", ""]
        for name, caption in plots:
            lines += [f"**{caption}** (`{name}`)", "", f"![{caption}]({name})", ""]
        lines += [f"- {e}" for e in plot_errors]
        if plot_errors:
            lines.append("")
    lines += [
        f"One row per run, every field: `{SUMMARY_CSV}`. Regenerate: "
        f"`python scripts/report.py {sweep_dir}`.",
        "",
    ]
    return "\n".join(lines)


def relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys; lists as JSON text; the history by its length."""
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            key = f"{prefix}{k}"
            if key == "history":
                out["history.n"] = len(v) if isinstance(v, list) else None
            elif isinstance(v, Mapping) and v:
                out.update(flatten(v, key + "."))
            elif isinstance(v, (list, tuple, Mapping)):
                out[key] = json.dumps(v, default=str)
            else:
                out[key] = v
    return out


FIRST_COLUMNS = (
    "run",
    "status",
    "error",
    "study",
    "init",
    "norm",
    "activation",
    "depth",
    "hidden_sizes",
    "seed",
    "final.train_acc",
    "final.val_acc",
    "final.test_acc",
    "final.test_loss",
    # then steps_to_val_acc.<key> for each threshold (report_thresholds), then:
    "auc_val_acc",
)


def summary_csv(runs: Sequence[Mapping[str, Any]], unreadable: Sequence[Unreadable], root: Path):
    """summary.csv's text: one row per run (every field flattened), unreadable files last (status
    "unreadable", the reason in ``error``). ``steps_to_val_acc.<key>``: one column per threshold
    of the report (report_thresholds), from the record or recomputed from its history."""
    thresholds = report_thresholds(runs)
    rows = []
    for r in sorted(runs, key=lambda r: r["_run"]):
        row = flatten({k: v for k, v in r.items() if not k.startswith("_")})
        row = {k: v for k, v in row.items() if not k.startswith("steps_to_val_acc")}
        row["run"] = r["_run"]
        row["auc_val_acc"] = auc(r)
        steps = steps_to(r, thresholds) or {}
        for t in thresholds:
            row[f"steps_to_val_acc.{t}"] = steps.get(t)
        rows.append(row)
    for u in unreadable:
        rows.append({"run": relative(u.path.parent, root), "status": UNREADABLE, "error": u.reason})
    keys = {k for row in rows for k in row}
    first = list(FIRST_COLUMNS)
    at = first.index("auc_val_acc")
    first[at:at] = [f"steps_to_val_acc.{t}" for t in thresholds]
    columns = [c for c in first if c in keys or c in ("run", "status")]
    columns += sorted(keys - set(columns))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()
