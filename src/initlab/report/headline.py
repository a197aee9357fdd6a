"""The top of summary.md: the sweep's answer first, and a warning when a configuration rests on
one run.

Someone who opens summary.md wants the study's answer before its tables. Every statement of the
answer is read from what the sections below compute, never recomputed: the configurations in the
main table's order (``aggregate.sort_key``: mean test accuracy, best first) and that table's own
cells (``aggregate.test_acc_cell``, ``fmt_steps``), the claims' count (``claims.tally``), the
phase diagram's verdict (``phase.boundary_verdict``). So the answer can neither rank otherwise
nor quote other numbers than the tables.

One run per configuration leaves a mean without a spread, and no difference decided: the
warning says which configurations, and the command that adds seeds beside them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from initlab.report.aggregate import (
    Config,
    config_label,
    fmt_mean,
    fmt_status,
    fmt_steps,
    test_acc_cell,
    varying_fields,
)
from initlab.report.claims import CONTRADICTED, Comparison, row_name, tally
from initlab.report.load import pct
from initlab.report.phase import DEPTH_FACTOR, Cell, boundary_verdict, kinds

RANKED_BY = "mean test accuracy"  # what aggregate.sort_key orders the main table by
MAX_NAMED = 4  # configurations or claims named in one line of the answer, then "and k more"
MAX_WARNED = 8  # configurations named by the one-run warning
SEED_KEY = "seed"  # the config's seed (initlab.config.TrainConf.seed)
SEEDS_WANTED = 3  # the seeds the warning's command brings each configuration to, at least


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _plural_has(n: int, word: str) -> str:
    """A count and its verb, "1 claim row has" or "2 claim rows have": made together so that
    the verb always agrees with the count (the one-run warning states two such counts)."""
    return f"{_plural(n, word)} {'has' if n == 1 else 'have'}"


def _capped(names: Sequence[str], cap: int = MAX_NAMED, sep: str = "; ") -> str:
    shown = sep.join(names[:cap])
    return shown + (f"{sep}and {len(names) - cap} more" if len(names) > cap else "")


def _named(config: Config, shown: Sequence[str]) -> str:
    """ "init=he, norm=none — 0.970 ± 0.014 (2/3) (n=3: 2 ok, 1 failed)": the configuration, its
    test accuracy cell as the table prints it, its n and, unless all ok, its statuses."""
    counts = config.status_counts
    runs = f"n={len(config.runs)}"
    if counts.get("ok", 0) != len(config.runs):
        runs += f": {fmt_status(counts)}"
    return f"{config_label(config, shown)} — {test_acc_cell(config)} ({runs})"


def _ranking(configs: Sequence[Config], shown: Sequence[str]) -> str:
    """The best configuration by the table's order, any tied with it at the table's rounding,
    and the next one."""
    ranked = [c for c in configs if c.final("test_acc").values]  # a prefix of the table
    if not ranked:
        counts = Counter(r["status"] for c in configs for r in c.runs)
        return (
            f"no run has a test accuracy ({fmt_status(counts)}): nothing to rank; what happened "
            "to each run is listed under *Failed and diverged runs*."
        )
    top = ranked[0]
    if len(configs) == 1:
        what = "one run" if len(top.runs) == 1 else "one configuration"
        return f"{what}, {_named(top, shown)}: nothing to rank it against."
    best = fmt_mean(top.final("test_acc"))
    tied = [c for c in ranked if fmt_mean(c.final("test_acc")) == best]  # the first rows
    if len(tied) > 1:
        names = _capped([_named(c, shown) for c in tied], sep=" and ")
        text = f"best by {RANKED_BY}: a tie at the table's rounding ({best}) between {names}"
    else:
        text = f"best by {RANKED_BY}: {_named(top, shown)}"
    rest = ranked[len(tied) :]
    if rest:
        text += f"; next: {_named(rest[0], shown)}"
    if len(ranked) < len(configs):
        text += f"; {len(configs) - len(ranked)} more without a test accuracy"
    return text + "."


def _by_depth(configs: Sequence[Config], shown: Sequence[str]) -> list[str]:
    """Where depth varies: the first row of each depth in the table's order."""
    if "depth" not in shown:
        return []
    depths = sorted({c.key["depth"] for c in configs} - {None})
    if len(depths) < 2:
        return []
    others = [f for f in shown if f not in ("depth", "widths")]
    parts = []
    for d in depths:
        first = next(
            (c for c in configs if c.key["depth"] == d and c.final("test_acc").values), None
        )
        if first is None:
            parts.append(f"depth {d}: no test accuracy")
        else:
            parts.append(f"depth {d}: {config_label(first, others)} — {test_acc_cell(first)}")
    return [f"best at each depth (by {RANKED_BY}): " + "; ".join(parts) + "."]


def _never(configs: Sequence[Config], shown: Sequence[str], keys: Sequence[str]) -> list[str]:
    """The configurations none of whose runs reached the lowest threshold (the table's "never
    (0/n)", fmt_steps)."""
    if not keys:
        return []
    key = keys[0]
    never = [c for c in configs if fmt_steps(c.steps(key)).startswith("never")]
    if not never:
        return []
    if len(never) == len(configs):
        return [f"no configuration reached {pct(key)}% val accuracy in any run."]
    names = [f"{config_label(c, shown)} — {test_acc_cell(c)}" for c in never]
    return [f"never reached {pct(key)}% val accuracy in any run: {_capped(names)}."]


def _left_out(runs: Sequence[Mapping[str, Any]], n_unreadable: int) -> list[str]:
    """What the means leave out (failed runs, diverged ones without a test accuracy, unreadable
    files), and the diverged runs they keep."""
    failed = sum(r["status"] == "failed" for r in runs)
    diverged = [r for r in runs if r["status"] == "diverged"]
    lost = sum(not _has_test_acc(r) for r in diverged)
    parts = [_plural(failed, "failed run")] if failed else []
    if lost:
        parts.append(f"{_plural(lost, 'diverged run')} without a test accuracy")
    if n_unreadable:
        parts.append(f"{n_unreadable} unreadable results.json")
    items = [f"not in the means: {', '.join(parts)} (listed below)."] if parts else []
    if kept := len(diverged) - lost:
        items.append(
            f"{_plural(kept, 'diverged run')} in the means: each counts with the test accuracy "
            "it ended at."
        )
    return items


def _has_test_acc(record: Mapping[str, Any]) -> bool:
    final = record.get("final")
    value = final.get("test_acc") if isinstance(final, Mapping) else None
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def answer_items(
    runs: Sequence[Mapping[str, Any]],
    n_unreadable: int,
    configs: Sequence[Config],
    found: Sequence[Comparison],
    phase_cells: Sequence[Cell],
    keys: Sequence[str],
) -> list[str]:
    """The statements of the answer, the most important first: the phase diagram's verdict and
    the claims' count when the study has them, then the best configuration by the table's order
    and the next, the best at each depth, the configurations that never reached the lowest
    threshold, and what the means leave out. ``configs`` in the main table's order."""
    if not runs:
        none = "no readable results.json below this directory."
        if n_unreadable:
            return [f"{none} {n_unreadable} unreadable ones are listed below, never aggregated."]
        return [none]
    shown = varying_fields(configs)
    items = [
        f"phase diagram ({activation}, σ_b² = {sigma_b2:g}): the boundary depth ≈ "
        f"{DEPTH_FACTOR}ξ_c: {boundary_verdict(group)}."
        for activation, sigma_b2, group in kinds(phase_cells)
    ]
    if found:
        items.append(f"{tally(found)} (*Claims* below).")
        bad = [row_name(c) for c in found if c.verdict == CONTRADICTED]
        if bad:
            items.append(f"contradicted: {_capped(bad)}.")
    items.append(_ranking(configs, shown))
    items += _by_depth(configs, shown)
    items += _never(configs, shown, keys)
    items += _left_out(runs, n_unreadable)
    return items


def answer_lines(items: Sequence[str]) -> list[str]:
    """summary.md's first lines: "**Answer.** <the first statement>", then one bullet per
    further statement (``answer_items``)."""
    items = [s[0].upper() + s[1:] for s in items]
    return [f"**Answer.** {items[0]}", *(f"- {s}" for s in items[1:]), ""]


# -- one run per configuration -------------------------------------------------------------------
def single_run(configs: Sequence[Config]) -> list[Config]:
    """The configurations whose numbers rest on one run: one run in all, or only one with a test
    accuracy (its cell is that run's value, without a spread)."""
    return [c for c in configs if len(c.runs) == 1 or len(c.final("test_acc").values) == 1]


def _int_seeds(configs: Sequence[Config]) -> list[int]:
    seeds = {s for c in configs for s in c.seeds}
    return sorted(s for s in seeds if isinstance(s, int) and not isinstance(s, bool))


def seeds_to_add(configs: Sequence[Config]) -> list[int]:
    """The seeds the warning's command asks for: the sweep's seeds, with the smallest new ones
    up to SEEDS_WANTED. With a single seed so far, only the new ones: a sweep of one seed may not
    name it in its job directories, and asking for it again would run it twice."""
    have = _int_seeds(configs)
    target = list(have)
    candidate = 0
    while len(target) < SEEDS_WANTED:
        if candidate not in target:
            target.append(candidate)
        candidate += 1
    target.sort()
    return [s for s in target if s not in have] if len(have) <= 1 else target


def recorded_overrides(sweep_dir: Path) -> list[str] | None:
    """The sweep's command-line overrides as Hydra recorded them in its ``multirun.yaml`` (task
    overrides, then Hydra's own: a launcher, ...), without the seed, the mode and the sweep dir
    (the warning's command sets those); None when the directory holds no readable record."""
    from initlab.rerun import sweep_overrides  # here: it brings yaml and the run-dir lock

    recorded = sweep_overrides(sweep_dir)
    if recorded is None:  # absent, unreadable or another shape: the warning says it in words
        return None
    found = [*(recorded["task"] or []), *(recorded["hydra"] or [])]
    dropped = re.compile(rf"[+~]*({SEED_KEY}|hydra\.mode|hydra\.sweep\.dir)=")
    return [o for o in found if not dropped.match(o)]


def add_seeds_command(sweep_dir: Path, seeds: Sequence[int]) -> str | None:
    """``python train.py -m <the sweep's overrides> seed=1,2 "hydra.sweep.dir='<dir>'"``: the
    sweep again with more seeds, into its own directory (runs already there are skipped);
    None without the sweep's multirun.yaml."""
    from initlab.rerun import quoted_override, shell_word  # (as in recorded_overrides)

    overrides = recorded_overrides(sweep_dir)
    if overrides is None:
        return None
    words = ["python", "train.py", "-m", *overrides, f"{SEED_KEY}={','.join(map(str, seeds))}"]
    words.append(quoted_override("hydra.sweep.dir", str(sweep_dir)))
    return " ".join(shell_word(w) for w in words)


def one_run_warning(
    configs: Sequence[Config],
    found: Sequence[Comparison],
    phase_cells: Sequence[Cell],
    sweep_dir: Path,
) -> list[str]:
    """A warning under the answer when some configuration rests on one run (single_run): which,
    what that means for its cells, claims and phase cells, and the command that adds seeds;
    [] when none does."""
    lone = single_run(configs)
    if not lone:
        return []
    shown = varying_fields(configs)
    if len(lone) == len(configs):
        who = f"every configuration ({len(configs)}) rests on one run"
    else:
        names = []
        for c in lone:
            extra = "" if len(c.runs) == 1 else f" (1 of {len(c.runs)} runs has a test accuracy)"
            names.append(config_label(c, shown) + extra)
        who = (
            f"{len(lone)} of {len(configs)} configurations rest on one run: "
            f"{_capped(names, MAX_WARNED)}"
        )
    effects = [
        "A cell of one run shows that run's value alone, without ± (one run has no spread), and "
        "its difference to another row cannot be told from seed-to-seed noise"
    ]
    if one_pair := sum(c.pairs.n < 2 for c in found):
        effects.append(
            f"{_plural_has(one_pair, 'claim row')} fewer than two seed pairs: unresolved"
        )
    if one_seed := sum(len(c.acc) == 1 for c in phase_cells):
        effects.append(f"{_plural_has(one_seed, 'phase cell')} one seed: unresolved")
    have = _int_seeds(configs)
    seeds = seeds_to_add(configs)
    listed = ",".join(map(str, seeds))
    if not have:
        ran = "no run here records its seed"
    elif len(have) == 1:
        ran = f"every run here has seed {have[0]}"
    else:
        ran = f"the runs here have seeds {', '.join(map(str, have))}"
    lines = [
        f"> **Warning: one run per configuration.** {who[0].upper() + who[1:]}. "
        + "; ".join(effects)
        + f". Add seeds (the config's key is `{SEED_KEY}`; {ran}): the new runs join these in "
        "this directory, and the report is rewritten with all of them when that sweep ends"
    ]
    command = add_seeds_command(sweep_dir, seeds)
    if command is not None:
        lines[0] += ":"
        lines += [">", f"> `{command}`"]
    else:
        lines[0] += (
            f": run the sweep's command again with `{SEED_KEY}={listed}` and `hydra.sweep.dir=` "
            f"set to its directory (or a new sweep with `{SEED_KEY}="
            f"{','.join(map(str, sorted({*have, *seeds})))}`)."
        )
    return [*lines, ""]
