"""The phase diagram of a sigma_w2 x depth study, and whether mean-field theory's boundary holds.

Schoenholz et al. (2017) found networks with W ~ N(0, sigma_w2 / fan_in), b ~ N(0, sigma_b2)
trainable only where depth <~ 6 xi_c, xi_c the correlation depth scale, which diverges at the
critical sigma_w2 (the edge of chaos). Here each configuration of the study is a cell (sigma_w2,
depth), judged on what its nets can do at the end of the budget: the training accuracy
*evaluated* on a fixed subset of training images (``final.train_eval_acc``, eval mode), not the
running mean of batch accuracy over the epoch, which mostly says how fast a net started.

A cell's seeds decide it by the report's one rule (``initlab.report.stats``): *trained* when the
95% t interval of their mean lies above TRAINED_ACC, *untrained* when it lies below, else
*unresolved with n seeds*; near the edge of chaos outcomes vary from seed to seed, so one seed
decides nothing. The bound's verdict: **contradicted** where a cell deeper than 6 xi_c trained
or one within xi_c did not, **holds** when every such cell went the theory's way, else
**unresolved**. A cell that has not trained but whose accuracy still rose over the budget's
second half could change with more steps; the report names those: a possibility, not a verdict,
so "rose" is the seeds' mean gain beyond the noise of measuring it (``rise_noise``), not a 95%
interval, which three seeds of a cell in mid-climb rarely clear.
Theory comes from ``initlab.propagation.theory`` (numpy; no torch).
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from initlab.report.aggregate import Config, Stat
from initlab.report.load import get, number
from initlab.report.stats import MAX_SEEDS, Paired, paired

PHASE_STUDY = "phase_diagram"
MEASURE = "train_eval_acc"  # final.train_eval_acc: the fixed training subset, at the budget's end
TRAINED_ACC = 0.5  # the evaluated training accuracy a trained cell's mean clears (chance: 0.1)
DEPTH_FACTOR = 6  # the paper's trainability bound: depth <~ 6 xi_c
TRAINED, UNTRAINED, UNRESOLVED, UNMEASURED = "trained", "untrained", "unresolved", "unmeasured"
MARK = {TRAINED: "✓", UNTRAINED: "✗", UNRESOLVED: "?", UNMEASURED: "–"}


def _midway(record: Mapping[str, Any]) -> float | None:
    """The evaluated training accuracy at the validation nearest the middle of the budget
    (neither step 0 nor the end); None when the history has no such point."""
    steps = number(get(record, "budget", "steps"))
    history = record.get("history")
    if steps is None or not isinstance(history, list):
        return None
    points = [
        (abs(h["step"] - steps / 2), number(h.get(MEASURE)))
        for h in history
        if isinstance(h, Mapping)
        and number(h.get("step")) is not None
        and 0 < h["step"] < steps
        and number(h.get(MEASURE)) is not None
    ]
    return min(points)[1] if points else None


@dataclass(frozen=True)
class Cell:
    """One configuration of the study: its (sigma_w2, depth) and what its seeds reached."""

    sigma_w2: float
    sigma_b2: float
    depth: int
    activation: str
    acc: tuple[float, ...]  # per seed with a value: final.train_eval_acc
    midway: tuple[tuple[float, float], ...]  # per seed: (accuracy midway, at the end)
    val_acc: float | None  # mean over seeds of the last validation's accuracy
    runs: int
    steps: int | None  # the budget, in optimizer steps
    evaluated_on: int | None  # the images of the fixed training subset

    @property
    def mean(self) -> float | None:
        return Stat(list(self.acc), self.runs).mean

    @property
    def sd(self) -> float | None:
        """The sample standard deviation over seeds (None with one)."""
        return Stat(list(self.acc), self.runs).std

    def _above_threshold(self) -> Paired:
        """The seeds' accuracies less TRAINED_ACC: the report's interval rule decides on it."""
        return paired(self.acc, [TRAINED_ACC] * len(self.acc))

    @property
    def verdict(self) -> str:
        if not self.acc:
            return UNMEASURED
        sign = self._above_threshold().sign()
        return TRAINED if sign > 0 else (UNTRAINED if sign < 0 else UNRESOLVED)

    def seeds_to_resolve(self) -> int | None:
        return self._above_threshold().seeds_to_resolve()

    @property
    def gain(self) -> float | None:
        """The seeds' mean gain in evaluated accuracy over the budget's second half."""
        return statistics.fmean(e - m for m, e in self.midway) if self.midway else None

    @property
    def rising(self) -> bool:
        """Whether its accuracy rose over the budget's second half by more than the noise of
        measuring the gain on its training subset."""
        if self.gain is None or not self.evaluated_on or self.evaluated_on < 1:
            return False
        return self.gain > rise_noise(self.evaluated_on)

    def text(self) -> str:
        """ "0.84 ± 0.05 ✓": the mean, its spread over seeds (sd) and the verdict's mark."""
        if self.mean is None:
            return MARK[UNMEASURED]
        spread = f" ± {self.sd:.2f}" if self.sd is not None else ""
        return f"{self.mean:.2f}{spread} {MARK[self.verdict]}"

    def where(self) -> str:
        return f"(σ_w² {self.sigma_w2:g}, depth {self.depth})"


def budgets(found: Sequence[Cell]) -> tuple[list[int], list[int]]:
    """The budgets (steps) and training-subset sizes of ``found``, each value once, sorted: what
    the section and the plot say the cells were judged after and on."""
    steps = sorted({c.steps for c in found} - {None})
    sizes = sorted({c.evaluated_on for c in found} - {None})
    return steps, sizes


def rise_noise(n: int) -> float:
    """Two standard errors of the difference of two accuracies, each measured on ``n`` images
    (binomial, at its widest, p = 0.5): sqrt(2/n), 0.020 on 5,000. The same images measured
    twice err less, so a gain above this is the net's, not the sample's."""
    return math.sqrt(2 / n)


def cells(configs: Sequence[Config]) -> list[Cell]:
    """The cells of the phase-diagram study among ``configs`` (those of study PHASE_STUDY whose
    runs recorded sigma_w2 and sigma_b2)."""
    out = []
    for c in configs:
        if c.key.get("study") != PHASE_STUDY or not c.runs:
            continue
        first = c.runs[0]
        sw, sb = (number(get(first, "init_params", k)) for k in ("sigma_w2", "sigma_b2"))
        depth = c.key.get("depth")
        if sw is None or sb is None or depth is None:
            continue
        acc, midway = [], []
        for r in c.runs:
            end = number(get(r, "final", MEASURE))
            if end is None:
                continue
            acc.append(end)
            if (mid := _midway(r)) is not None:
                midway.append((mid, end))
        steps = {number(get(r, "budget", "steps")) for r in c.runs} - {None}
        sizes = {number(get(r, "dataset", "train_eval")) for r in c.runs} - {None}
        out.append(
            Cell(
                sw,
                sb,
                int(depth),
                str(c.key.get("activation")),
                tuple(acc),
                tuple(midway) if len(midway) == len(acc) else (),
                c.final("val_acc").mean,
                len(c.runs),
                int(max(steps)) if steps else None,
                int(max(sizes)) if sizes else None,
            )
        )
    return sorted(out, key=lambda x: (x.sigma_w2, x.depth))


@functools.lru_cache(maxsize=1024)
def xi_c(activation: str, sigma_w2: float, sigma_b2: float) -> float:
    """The correlation depth scale the theory predicts (math.inf at the critical point)."""
    from initlab.propagation.theory import depth_scales

    return depth_scales(activation, sigma_w2, sigma_b2)[1]


def critical(activation: str, sigma_b2: float) -> float:
    """The critical sigma_w2 (chi_1 = 1) for ``sigma_b2``."""
    from initlab.propagation.theory import critical_sigma_w2

    return critical_sigma_w2(activation, sigma_b2)


def region(cell: Cell) -> str:
    """Where the theory puts ``cell``: "deep" (beyond 6 xi_c: untrainable), "shallow" (within
    xi_c: trainable) or "between"."""
    scale = xi_c(cell.activation, cell.sigma_w2, cell.sigma_b2)
    if cell.depth > DEPTH_FACTOR * scale:
        return "deep"
    return "shallow" if cell.depth <= scale else "between"


def _where(found: Sequence[Cell]) -> str:
    return ", ".join(c.where() for c in found)


def _count(group: Sequence[Cell]) -> str:
    by = {v: [c for c in group if c.verdict == v] for v in (TRAINED, UNTRAINED, UNRESOLVED)}
    text = f"{len(group)} cell{'s' if len(group) != 1 else ''}: "
    text += f"{len(by[TRAINED])} trained, {len(by[UNTRAINED])} untrained"
    if by[UNRESOLVED]:
        text += f", {len(by[UNRESOLVED])} unresolved ({_where(by[UNRESOLVED])})"
    return text


def _seeds(found: Sequence[Cell]) -> str:
    ns = sorted({len(c.acc) for c in found})
    return "/".join(map(str, ns)) + (" seed" if ns == [1] else " seeds")


def _table(group: Sequence[Cell]) -> list[str]:
    xs = sorted({c.sigma_w2 for c in group})
    ys = sorted({c.depth for c in group}, reverse=True)
    at = {(c.sigma_w2, c.depth): c for c in group}
    lines = ["| depth \\ σ_w² | " + " | ".join(f"{x:g}" for x in xs) + " |"]
    lines.append("|---" * (len(xs) + 1) + "|")
    for y in ys:
        row = [at[(x, y)].text() if (x, y) in at else "" for x in xs]
        lines.append(f"| {y} | " + " | ".join(row) + " |")
    return lines


def kinds(found: Sequence[Cell]) -> list[tuple[str, float, list[Cell]]]:
    """The cells by (activation, sigma_b2), each with its own critical point: one diagram each."""
    keys = sorted({(c.activation, c.sigma_b2) for c in found})
    return [(a, b, [c for c in found if (c.activation, c.sigma_b2) == (a, b)]) for a, b in keys]


def _regions(group: Sequence[Cell]) -> tuple[list[Cell], list[Cell], list[Cell]]:
    """The judged cells deeper than 6 xi_c, within xi_c, and between."""
    measured = [c for c in group if c.verdict != UNMEASURED]
    deep = [c for c in measured if region(c) == "deep"]
    shallow = [c for c in measured if region(c) == "shallow"]
    between = [c for c in measured if region(c) == "between"]
    return deep, shallow, between


def boundary_verdict(group: Sequence[Cell]) -> str:
    """The verdict on the bound depth ~ 6 xi_c of one diagram's cells ("**holds** on these runs
    (2 cells decide it)", "**contradicted** at ...", "**unresolved with 3 seeds** at ..."): the
    one rule, printed in the section and in the answer line at the top of summary.md."""
    deep, shallow, _ = _regions(group)
    wrong = [c for c in deep if c.verdict == TRAINED]
    wrong += [c for c in shallow if c.verdict == UNTRAINED]
    open_ = [c for c in deep + shallow if c.verdict == UNRESOLVED]
    if wrong:
        return f"**contradicted** at {_where(wrong)}"
    if open_:
        need = [c.seeds_to_resolve() for c in open_]
        known = [n for n in need if n is not None and n <= MAX_SEEDS]
        hint = f" (~{max(known)} seeds would resolve them)" if known else ""
        return f"**unresolved with {_seeds(open_)}** at {_where(open_)}{hint}"
    if deep or shallow:
        return f"**holds** on these runs ({len(deep) + len(shallow)} cells decide it)"
    return f"cannot be judged here (no cell deeper than {DEPTH_FACTOR}ξ_c or within ξ_c)"


def verdict_lines(found: Sequence[Cell]) -> list[str]:
    """summary.md's phase-diagram section: the cells, the theory's boundary and the verdict."""
    if not found:
        return []
    lines = ["## Phase diagram", ""]
    for activation, sigma_b2, group in kinds(found):
        measured = [c for c in group if c.verdict != UNMEASURED]
        steps, sizes = budgets(group)
        budget = " or ".join(f"{s:,}" for s in steps) or "?"
        subset = " or ".join(f"{n:,}" for n in sizes) or "?"
        lines += [
            f"{activation}, σ_b² = {sigma_b2:g}: the theory's critical σ_w² is "
            f"{critical(activation, sigma_b2):.3f} (χ₁ = 1, where ξ_c diverges). A cell is "
            f"judged on its **training accuracy evaluated at the end of the budget** ({budget} "
            f"steps) on a fixed subset of {subset} training images (eval mode; "
            f"`final.{MEASURE}`), over its seeds: *trained* (✓) when the 95% t interval of "
            f"their mean lies above {TRAINED_ACC:g}, *untrained* (✗) when it lies below, "
            f"*unresolved* (?) when it contains {TRAINED_ACC:g} (chance: 0.1). Each cell: mean "
            "± sd over seeds.",
            "",
            *_table(group),
            "",
        ]
        if len(measured) < len(group):
            missing = [c for c in group if c.verdict == UNMEASURED]
            lines += [
                f"- Not judged: {_where(missing)}: no evaluated training accuracy in their "
                "records (run with `data.train_eval_size` > 0, as `experiment=phase_diagram` "
                "does).",
            ]
        deep, shallow, between = _regions(group)
        lines += [
            f"- Deeper than {DEPTH_FACTOR}ξ_c (the theory: untrainable): {_count(deep)}.",
            f"- Within ξ_c (the theory: trainable): {_count(shallow)}.",
            f"- Between ξ_c and {DEPTH_FACTOR}ξ_c (the theory does not say): {_count(between)}.",
            f"- The boundary depth ≈ {DEPTH_FACTOR}ξ_c: {boundary_verdict(group)}.",
        ]
        rising = [c for c in measured if c.verdict != TRAINED and c.rising]
        if rising:
            gains = ", ".join(
                f"{c.where()} {statistics.fmean(m for m, _ in c.midway):.2f} → {c.mean:.2f}"
                for c in rising
            )
            noise = rise_noise(min(c.evaluated_on for c in rising if c.evaluated_on))
            change = (
                f"- **More steps could change**: {gains} (evaluated accuracy midway → at the "
                "end, mean over seeds: not trained, and still rising over the budget's second "
                f"half by more than the measurement's noise, {noise:.3f}). A longer budget "
                "(`trainer.max_epochs`) may train them"
            )
            if any(region(c) == "deep" for c in rising):
                change += ", and a deep cell that trains contradicts the bound"
            lines.append(change + ".")
        else:
            lines.append(
                "- More steps: no cell short of trained was still rising over the budget's "
                "second half (or the runs have no midway evaluation)."
            )
        lines.append("")
    return lines


def curve(activation: str, sigma_b2: float, lo: float, hi: float, n: int = 21):
    """(sigma_w2 values, xi_c values) on [lo, hi] for drawing the theory's lines."""
    xs = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
    ys = [xi_c(activation, x, sigma_b2) for x in xs]
    return xs, [y if math.isfinite(y) else math.nan for y in ys]
