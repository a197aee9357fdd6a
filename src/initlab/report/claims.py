"""The claims a study tests, and verdicts that weigh the evidence.

A claim says that one init beats another on one metric: the tutorial's "He: highest, fastest",
He et al. (2015)'s "Xavier stalls a deep plain ReLU net". It is tested on the configurations of
the study that differ only in their init, run by run over the seeds they share: runs of one seed
share the data order (and inits of one family their random draws), so the paired difference
removes what the seed does to both (``initlab.report.stats``). One rule everywhere:

- **holds**: the 95% t interval of the paired differences excludes zero in the claimed direction;
- **contradicted**: it excludes zero the other way;
- **unresolved with n seeds**: it contains zero; with the observed mean and spread, about how
  many seeds would resolve it.

Steps to a threshold: a run that never reached it counts as the length of the longer run of its
pair, a lower bound on its true steps. The true difference is then at least as large as the one
measured, so neither "holds" nor "contradicted" is made up by it; two runs that both never
reached it differ by 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from initlab.report.aggregate import Config, fmt_num, speed_threshold
from initlab.report.load import (
    get,
    number,
    pct,
    report_thresholds,
    run_length,
    steps_to,
    validations,
)
from initlab.report.stats import MAX_SEEDS, Paired, paired

HOLDS, CONTRADICTED, UNRESOLVED = "holds", "contradicted", "unresolved"


# -- metrics: one number per run ---------------------------------------------------------------
@dataclass(frozen=True)
class Value:
    """A run's value of a metric; ``censored``: the run never got there within ``value`` steps."""

    value: float
    censored: bool = False


@dataclass(frozen=True)
class Metric:
    """What a claim compares: ``read(record)`` gives the run's Value (None: the run has none)."""

    name: str
    higher_is_better: bool
    read: Callable[[Mapping[str, Any]], Value | None]
    digits: int = 4
    threshold: str | None = None  # steps to this val accuracy (a threshold key), if a steps metric


def _test_acc(record: Mapping[str, Any]) -> Value | None:
    v = number(get(record, "final", "test_acc"))
    return None if v is None else Value(v)


TEST_ACC = Metric("test accuracy", True, _test_acc)


def steps_metric(key: str) -> Metric:
    """Steps to ``key`` (a threshold key, "0.95") val accuracy; never: censored at the run's
    length."""

    def read(record: Mapping[str, Any]) -> Value | None:
        steps = steps_to(record, [key])
        if not steps or key not in steps:
            return None
        if steps[key] is not None:
            return Value(float(steps[key]))
        length = run_length(record)
        return None if length is None else Value(length, censored=True)

    return Metric(f"steps to {pct(key)}% val accuracy", False, read, digits=0, threshold=key)


def _profile(record: Mapping[str, Any], at: str, key: str) -> list[float] | None:
    values = get(record, "layer_profile", at, key)
    if not isinstance(values, list) or len(values) < 2:
        return None
    values = [number(v) for v in values]
    return values if all(v is not None and v > 0 for v in values) else None


def gradient_metric(at: str) -> Metric:
    """log10 of E[(dL/dh)^2] at the first hidden layer over the last one's, at step 0 (``at``
    "first") or at the end of training ("last"): 0 is flat, -2 is a gradient 100x smaller (in
    second moment) at the input than at the top."""

    def read(record: Mapping[str, Any]) -> Value | None:
        q = _profile(record, at, "grad_preact_q")
        return None if q is None else Value(math.log10(q[0] / q[-1]))

    when = "at init" if at == "first" else "after training"
    return Metric(f"log10 E[δ²] first / last hidden layer, {when}", True, read, digits=2)


def forward_metric(at: str = "first") -> Metric:
    """log2 of the pre-activation second moment q at the last hidden layer over the first's: 0
    keeps the signal, -29 is the 2^-29 of Xavier on 30 ReLU layers."""

    def read(record: Mapping[str, Any]) -> Value | None:
        q = _profile(record, at, "preact_q")
        return None if q is None else Value(math.log2(q[-1] / q[0]))

    when = "at init" if at == "first" else "after training"
    return Metric(f"log2 q last / first hidden layer, {when}", True, read, digits=1)


# -- claims ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """``better`` beats ``worse`` on ``metric``, as ``source`` says."""

    better: str
    worse: str
    metric: Metric
    source: str
    says: str


TUTORIAL_STUDY = "tutorial"
TUTORIAL_SOURCE = "the tutorial"
# The tutorial's qualitative claims, and the orders they imply (higher = better / faster).
TUTORIAL_CLAIMS = {
    "zero": "low",
    "small_uniform": "medium, slow",
    "small_normal": "medium, slow",
    "xavier": "high, fast",
    "he": "very high, fastest",
    "tutorial_he": "very high, fastest (its He code)",
    "large_uniform": "no ranking: may vanish early, may escape local optima",
    "large_normal": "no ranking: may vanish early, may escape local optima",
}
NOT_IN_TUTORIAL = "(not in the tutorial)"
ACC_LEVEL = {
    "zero": 0,
    "small_uniform": 1,
    "small_normal": 1,
    "xavier": 2,
    "he": 3,
    "tutorial_he": 3,
}
SPEED_LEVEL = {"small_uniform": 1, "small_normal": 1, "xavier": 2, "he": 3, "tutorial_he": 3}

HE2015 = "He et al. (2015), Fig. 3"
GLOROT2010 = "Glorot & Bengio (2010)"
PAPER_CLAIMS: dict[str, tuple[Claim, ...]] = {
    "he2015": (
        Claim(
            "he",
            "xavier",
            steps_metric("0.90"),
            HE2015,
            "a 30-layer plain ReLU net trains with He init and stalls with Xavier",
        ),
        Claim("he", "xavier", TEST_ACC, HE2015, "so He ends higher after the same budget"),
        Claim(
            "he",
            "xavier",
            forward_metric("first"),
            HE2015,
            "Xavier halves q at each ReLU layer (n v / 2 = 1/2); He keeps it (n v / 2 = 1)",
        ),
    ),
    "glorot2010": (
        Claim(
            "xavier",
            "standard",
            gradient_metric("first"),
            f"{GLOROT2010}, Fig. 7",
            "with the standard init the back-propagated gradient shrinks toward the input; "
            "the normalized (Xavier) init keeps it flat",
        ),
        Claim(
            "xavier",
            "standard",
            gradient_metric("last"),
            "this study's question (the paper shows init only)",
            "the gap persists after training: the standard init's gradient still shrinks more",
        ),
        Claim(
            "xavier",
            "standard",
            TEST_ACC,
            f"{GLOROT2010}, Table 1",
            "the normalized init reaches a lower test error with tanh",
        ),
    ),
}
# What a reader of a paper's study should know to read its verdicts.
STUDY_NOTES = {
    "he2015": (
        "He et al. show the Xavier net not learning at all within their budget. Here *stalls* is "
        "tested as *reaches 90% later* (a Xavier run that never reaches it counts as the run's "
        "length); whether the Xavier runs learned at all, late (delayed) or not (stalled), is said "
        "above from their val accuracy at step 0 and at the end."
    ),
    "glorot2010": (
        "The *standard* init is U[-1/√n, 1/√n] with zero biases (the paper's eq. 1); *xavier* is "
        "their normalized init. The gradient rows compare log10 of E[δ²] = E[(dL/dh)²] at the "
        "first hidden layer over the last one's (0: flat; the profile across every layer is in "
        "`gradient_profile.png`). The paper's figure is at init; the after-training row asks "
        "whether training keeps the gap, which the paper does not claim."
    ),
}


def tutorial_claims(speed_key: str) -> tuple[Claim, ...]:
    """The tutorial's orders as pairwise claims: every init it ranks above another, on test
    accuracy (ACC_LEVEL) and on steps to ``speed_key`` (SPEED_LEVEL)."""
    out = []
    for level, metric, what in (
        (ACC_LEVEL, TEST_ACC, "ends above"),
        (SPEED_LEVEL, steps_metric(speed_key), "is faster than"),
    ):
        for a, la in level.items():
            for b, lb in level.items():
                if la > lb:
                    says = f"{a} ({TUTORIAL_CLAIMS[a]}) {what} {b} ({TUTORIAL_CLAIMS[b]})"
                    out.append(Claim(a, b, metric, TUTORIAL_SOURCE, says))
    return tuple(out)


def study_claims(study: Any, speed_key: str) -> tuple[Claim, ...]:
    if study == TUTORIAL_STUDY:
        return tutorial_claims(speed_key)
    return PAPER_CLAIMS.get(study, ())


# -- testing a claim ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """A claim tested on two configurations: the paired differences better - worse."""

    claim: Claim
    better: Config
    worse: Config
    pairs: Paired
    censored: int  # pairs in which some run never reached the threshold
    group: str  # the configurations' other varying fields ("" when there is one group)

    @property
    def verdict(self) -> str:
        direction = 1 if self.claim.metric.higher_is_better else -1
        sign = self.pairs.sign()
        return HOLDS if sign == direction else (CONTRADICTED if sign == -direction else UNRESOLVED)

    def verdict_text(self) -> str:
        """ "holds", "contradicted", or "unresolved with 3 seeds (~40 would resolve it)"."""
        if self.verdict != UNRESOLVED:
            return self.verdict
        text = f"unresolved with {self.pairs.n} seed{'s' if self.pairs.n != 1 else ''}"
        if self.pairs.n < 2:
            return text + " (no interval from one pair)"
        need = self.pairs.seeds_to_resolve()
        if need is None:
            return text + " (no difference at all)"
        if need > MAX_SEEDS:
            return text + f" (more than {MAX_SEEDS} would be needed)"
        return text + f" (~{need} would resolve it)"

    def effect_text(self) -> str:
        """ "+0.0007 [-0.0021, +0.0035]": the mean paired difference and its 95% interval."""
        d = self.claim.metric.digits
        mean = self.pairs.mean
        if mean is None:
            return "-"
        ci = self.pairs.interval
        text = f"{mean:+.{d}f}"
        return text + (f" [{ci[0]:+.{d}f}, {ci[1]:+.{d}f}]" if ci else "")


def _values(config: Config, metric: Metric) -> dict[Any, Value]:
    out = {}
    for r in config.runs:
        v = metric.read(r)
        if v is not None:
            out[r.get("seed")] = v
    return out


def compare(claim: Claim, better: Config, worse: Config, group: str = "") -> Comparison:
    """Pair the two configurations' runs by seed and take the differences better - worse."""
    a, b = _values(better, claim.metric), _values(worse, claim.metric)
    xs, ys, censored = [], [], 0
    for seed in sorted(set(a) & set(b), key=str):
        va, vb = a[seed], b[seed]
        if va.censored or vb.censored:
            censored += 1
            bound = max(va.value, vb.value)  # the longer run's length
            va = Value(bound) if va.censored else va
            vb = Value(bound) if vb.censored else vb
        xs.append(va.value)
        ys.append(vb.value)
    return Comparison(claim, better, worse, paired(xs, ys), censored, group)


def peer_groups(configs: Sequence[Config]) -> dict[str, list[Config]]:
    """The configurations that differ only in their init (and its parameters), by the JSON of
    what they share."""
    groups: dict[str, list[Config]] = {}
    for c in configs:
        rest = {k: v for k, v in c.key.items() if k not in ("init", "init params")}
        groups.setdefault(json.dumps(rest, sort_keys=True, default=str), []).append(c)
    return groups


def _group_label(peers: Sequence[Config], shown: Sequence[str]) -> str:
    fields = [f for f in shown if f not in ("init", "init params")]
    c = peers[0]
    return ", ".join(f"{f}={fmt_num(c.key[f])}" for f in fields)


def comparisons(configs: Sequence[Config], shown: Sequence[str] = ()) -> list[Comparison]:
    """Every claim of every study in ``configs``, tested in each group of peers that has both
    inits. ``shown``: the varying fields, whose values (other than the init's) label a group."""
    runs = [r for c in configs for r in c.runs]
    speed_key = speed_threshold(runs, report_thresholds(runs)) if runs else "0.95"
    out = []
    groups = peer_groups(configs)
    for peers in groups.values():
        claims = study_claims(peers[0].key.get("study"), speed_key)
        by_init: dict[str, list[Config]] = {}
        for c in peers:
            by_init.setdefault(c.key["init"], []).append(c)
        label = _group_label(peers, shown) if len(groups) > 1 else ""
        for claim in claims:
            for better in by_init.get(claim.better, []):
                for worse in by_init.get(claim.worse, []):
                    out.append(compare(claim, better, worse, label))
    return out


def mean_text(config: Config, metric: Metric) -> str:
    """The metric's mean over the configuration's runs; for steps, how many reached it."""
    values = list(_values(config, metric).values())
    reached = [v.value for v in values if not v.censored]
    if not values:
        return "-"
    if len(reached) < len(values):
        if not reached:
            return f"never ({len(values)} runs)"
        mean = sum(reached) / len(reached)
        return f"{mean:.{metric.digits}f} ({len(reached)}/{len(values)} reached)"
    return f"{sum(reached) / len(reached):.{metric.digits}f}"


def late_learning(found: Sequence[Comparison]) -> list[str]:
    """For each configuration that never reached a claim's threshold in some run: whether it
    learned at all, from its val accuracy at step 0 and at the end (mean over those runs). Tells
    "stalled" (no change) from "delayed" (it rose, later than the budget allowed)."""
    lines, seen = [], set()
    for c in found:
        if not _is_steps(c.claim.metric) or id(c.worse) in seen:
            continue
        seen.add(id(c.worse))
        runs = [r for r in c.worse.runs if (v := c.claim.metric.read(r)) and v.censored]
        starts, ends = [], []
        for r in runs:
            h = validations(r)
            if len(h) > 1:
                starts.append(number(h[0]["val_acc"]))
                ends.append((number(h[-1]["val_acc"]), number(h[-1]["step"])))
        if not ends:
            continue
        start = sum(starts) / len(starts)
        end = sum(v for v, _ in ends) / len(ends)
        best = max(v for v, _ in ends)
        steps = max(s for _, s in ends)
        what = "it learns, later than this budget" if end - start > 0.05 else "it stalled"
        lines.append(
            f"{c.worse.key['init']}: {len(runs)} of {len(c.worse.runs)} runs never reached "
            f"{pct(c.claim.metric.threshold)}%; their val accuracy went from {start:.3f} at "
            f"step 0 to {end:.3f} (best {best:.3f}) at step {steps:.0f}: {what}."
        )
    return lines


def init_verdicts(config: Config, found: Sequence[Comparison]) -> str:
    """The tutorial's claim for ``config``'s init, summed up over the comparisons it is in:
    "acc: holds; speed: unresolved vs he (3 seeds)". One verdict per metric: holds when every
    comparison holds, contradicted when one is, else unresolved (naming the inits)."""
    parts = []
    for short, is_metric in (("acc", lambda m: m is TEST_ACC), ("speed", _is_steps)):
        mine = [
            c
            for c in found
            if is_metric(c.claim.metric)
            and c.claim.source == TUTORIAL_SOURCE
            and (config is c.better or config is c.worse)
        ]
        if not mine:
            continue
        bad = [c for c in mine if c.verdict == CONTRADICTED]
        open_ = [c for c in mine if c.verdict == UNRESOLVED]

        def other(c: Comparison) -> str:
            return (c.worse if c.better is config else c.better).key["init"]

        if bad:
            parts.append(f"{short}: contradicted vs {', '.join(other(c) for c in bad)}")
        elif open_:
            n = min(c.pairs.n for c in open_)
            parts.append(f"{short}: unresolved vs {', '.join(other(c) for c in open_)} ({n} seeds)")
        else:
            parts.append(f"{short}: holds")
    return "; ".join(parts) or "-"


def _is_steps(metric: Metric) -> bool:
    return metric.threshold is not None


# -- the tutorial's columns in the main table --------------------------------------------------
def _ordinal_rank(values: Sequence[Any], i: int, better: Callable[[Any, Any], bool]) -> int:
    return 1 + sum(better(v, values[i]) for j, v in enumerate(values) if j != i)


def _speed(config: Config, key: str) -> tuple[float, float] | None:
    """(fraction of seeds that reached ``key``, mean steps to it): faster is a higher fraction,
    then fewer steps. None without validation records."""
    st = config.steps(key)
    if st.n == 0:
        return None
    return (len(st.values) / st.n, st.mean if st.values else math.inf)


def _faster(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    if a is None or b is None or (a[0] == 0 and b[0] == 0):
        return False
    if a[0] != b[0]:
        return a[0] > b[0]
    return a[1] < b[1]


def tutorial_columns(
    configs: Sequence[Config], found: Sequence[Comparison], speed_key: str
) -> dict[int, tuple[str, str, str]]:
    """For each configuration of the tutorial study (by id): (the tutorial's claim, the measured
    ranks of mean test accuracy and of speed to ``speed_key`` among its peers, and the verdicts
    of init_verdicts)."""
    out = {}
    for peers in peer_groups(configs).values():
        if peers[0].key.get("study") != TUTORIAL_STUDY:
            continue
        accs = [p.final("test_acc").mean for p in peers]
        speeds = [_speed(p, speed_key) for p in peers]
        n = len(peers)
        for i, c in enumerate(peers):
            if accs[i] is None:
                measured = "no test acc"
            else:
                rank = _ordinal_rank(accs, i, lambda a, b: a is not None and a > b)
                measured = f"acc #{rank}/{n}"
            if speeds[i] is not None and speeds[i][0] == 0:
                measured += f", never {pct(speed_key)}%"
            elif speeds[i] is not None:
                measured += f", speed #{_ordinal_rank(speeds, i, _faster)}/{n}"
            claim = TUTORIAL_CLAIMS.get(c.key["init"], NOT_IN_TUTORIAL)
            out[id(c)] = (claim, measured, init_verdicts(c, found))
    return out
