"""The phase diagram of a sigma_w2 x depth study, and whether mean-field theory's boundary holds.

Schoenholz et al. (2017) found networks with W ~ N(0, sigma_w2 / fan_in), b ~ N(0, sigma_b2)
trainable only where depth <~ 6 xi_c, xi_c the correlation depth scale, which diverges at the
critical sigma_w2 (the edge of chaos). Here each configuration of the study is a cell (sigma_w2,
depth); a cell *trained* when its mean final training accuracy reached TRAINED_ACC; and the
verdict counts, among the cells deeper than 6 xi_c and those within xi_c, how many trained.
Theory comes from ``initlab.propagation.theory`` (numpy; no torch).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from initlab.report.aggregate import Config
from initlab.report.load import get, number

PHASE_STUDY = "phase_diagram"
TRAINED_ACC = 0.5  # final training accuracy a cell must reach to count as trained (chance: 0.1)
DEPTH_FACTOR = 6  # the paper's trainability bound: depth <~ 6 xi_c


@dataclass(frozen=True)
class Cell:
    """One configuration of the study: its (sigma_w2, depth) and what its runs reached."""

    sigma_w2: float
    sigma_b2: float
    depth: int
    activation: str
    train_acc: float | None  # mean over seeds of the final (last epoch's) training accuracy
    val_acc: float | None
    runs: int


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
        out.append(
            Cell(
                sw,
                sb,
                int(depth),
                str(c.key.get("activation")),
                c.final("train_acc").mean,
                c.final("val_acc").mean,
                len(c.runs),
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


def _trained(cell: Cell) -> bool:
    return cell.train_acc is not None and cell.train_acc >= TRAINED_ACC


def _where(found: Sequence[Cell]) -> str:
    return ", ".join(f"(σ_w² {c.sigma_w2:g}, depth {c.depth})" for c in found)


def verdict_lines(found: Sequence[Cell]) -> list[str]:
    """summary.md's phase-diagram section: the theory's boundary and what the runs show."""
    if not found:
        return []
    kinds = {(c.activation, c.sigma_b2) for c in found}
    lines = ["## Phase diagram", ""]
    for activation, sigma_b2 in sorted(kinds):
        group = [c for c in found if (c.activation, c.sigma_b2) == (activation, sigma_b2)]
        crit = critical(activation, sigma_b2)
        deep, shallow, between = [], [], []
        for c in group:
            scale = xi_c(activation, c.sigma_w2, sigma_b2)
            if c.depth > DEPTH_FACTOR * scale:
                deep.append(c)
            elif c.depth <= scale:
                shallow.append(c)
            else:
                between.append(c)
        trained_deep = [c for c in deep if _trained(c)]
        untrained_shallow = [c for c in shallow if not _trained(c)]
        lines += [
            f"{activation}, σ_b² = {sigma_b2:g}: the theory's critical σ_w² is {crit:.3f} "
            f"(χ₁ = 1, where ξ_c diverges). A cell *trained* when its mean final training "
            f"accuracy reached {TRAINED_ACC:g} (chance: 0.1).",
            "",
            f"- Deeper than {DEPTH_FACTOR}ξ_c (the theory: untrainable): "
            f"**{len(trained_deep)} of {len(deep)} trained**"
            + (f": {_where(trained_deep)}" if trained_deep else "")
            + ".",
            f"- Within ξ_c (the theory: trainable): **{len(shallow) - len(untrained_shallow)} of "
            f"{len(shallow)} trained**"
            + (f"; not: {_where(untrained_shallow)}" if untrained_shallow else "")
            + ".",
            f"- Between ξ_c and {DEPTH_FACTOR}ξ_c: {sum(map(_trained, between))} of "
            f"{len(between)} trained.",
        ]
        if not deep and not shallow:
            holds = "cannot be judged here (no cell deeper than 6ξ_c or within ξ_c)"
        elif not trained_deep and not untrained_shallow:
            holds = "**holds** on these runs"
        else:
            wrong = trained_deep + untrained_shallow
            holds = f"**does not hold** at {_where(wrong)}"
        lines += [
            f"- The boundary depth ≈ {DEPTH_FACTOR}ξ_c {holds}. A budget-limited run can fail "
            "to train where the theory allows it (too few steps), never the reverse: a trained "
            "cell beyond 6ξ_c contradicts the bound, an untrained one within ξ_c may be the "
            "budget.",
            "",
        ]
    return lines


def curve(activation: str, sigma_b2: float, lo: float, hi: float, n: int = 21):
    """(sigma_w2 values, xi_c values) on [lo, hi] for drawing the theory's lines."""
    xs = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
    ys = [xi_c(activation, x, sigma_b2) for x in xs]
    return xs, [y if math.isfinite(y) else math.nan for y in ys]
