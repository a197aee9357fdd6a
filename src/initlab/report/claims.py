"""The claims a study tests, and verdicts that weigh the evidence.

A claim says that one init beats another on one metric: the tutorial's "He: highest, fastest",
He et al. (2015)'s "Xavier stalls a deep plain ReLU net". It is tested on the configurations of
the study that differ only in their init (or in what a claim's Arms name), run by run over the
seeds they share: runs of one seed share the data order (and inits of one family their random
draws), so the paired difference removes what the seed does to both (``initlab.report.stats``).
One rule everywhere:

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
from collections import Counter
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
VERDICTS = (HOLDS, CONTRADICTED, UNRESOLVED)


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
        # never: a run that diverged would not have reached it within its budget either
        budget = number(get(record, "budget", "steps"))
        length = budget if record.get("status") == "diverged" and budget else run_length(record)
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


def _jacobian_spread(record: Mapping[str, Any]) -> Value | None:
    v = number(get(record, "jacobian", "spread"))
    return None if v is None else Value(v)


# Var(lambda) / E[lambda]^2 of the eigenvalues of J J^T at init (initlab.propagation.spectrum)
JACOBIAN_SPREAD = Metric(
    "spread of J Jᵀ's eigenvalues at init, Var/mean²", False, _jacobian_spread, 2
)


def growth_metric(at: str = "first") -> Metric:
    """log2 of q at the last hidden Linear over the first's: how much the signal grows through
    the net (lower: flatter; a residual net's stream under He grows by ~1 per block)."""

    def read(record: Mapping[str, Any]) -> Value | None:
        q = _profile(record, at, "preact_q")
        return None if q is None else Value(math.log2(q[-1] / q[0]))

    return Metric("log2 q last / first hidden layer, at init", False, read, digits=1)


# -- claims ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Arm:
    """One side of a claim: the configurations of an init, narrowed by its parameters
    (``params``: init_params entries) and by other defining fields (``fields``: norm,
    activation, ...). A claim compares configurations that differ only in what its arms name."""

    init: str
    params: tuple[tuple[str, Any], ...] = ()
    fields: tuple[tuple[str, Any], ...] = ()

    def matches(self, config: Config) -> bool:
        if config.key.get("init") != self.init:
            return False
        if any(config.key.get(f) != v for f, v in self.fields):
            return False
        params = (config.runs[0].get("init_params") if config.runs else None) or {}
        return all(params.get(k) == v for k, v in self.params)

    @property
    def varies(self) -> tuple[str, ...]:
        return ("init", "init params", *(f for f, _ in self.fields))

    @property
    def label(self) -> str:
        extra = [f"{k}={v}" for k, v in (*self.params, *self.fields)]
        return f"{self.init} ({', '.join(extra)})" if extra else self.init


def arm(side: str | Arm) -> Arm:
    """An init name is the arm of every configuration of that init."""
    return side if isinstance(side, Arm) else Arm(side)


@dataclass(frozen=True)
class Claim:
    """``better`` beats ``worse`` on ``metric``, as ``source`` says (an init name or an Arm)."""

    better: str | Arm
    worse: str | Arm
    metric: Metric
    source: str
    says: str


@dataclass(frozen=True)
class Trend:
    """``metric`` of the configurations of ``side`` rises (``rises``; else falls) along
    ``along``: its deepest value against its shallowest, seed by seed."""

    side: str | Arm
    metric: Metric
    source: str
    says: str
    along: str = "depth"
    rises: bool = True


@dataclass(frozen=True)
class GapTrend:
    """``better``'s advantage over ``worse`` on ``metric`` (paired by seed) grows along
    ``along``: the advantage at its largest value against the one at its smallest, seed by
    seed."""

    better: str | Arm
    worse: str | Arm
    metric: Metric
    source: str
    says: str
    along: str = "depth"


AnyClaim = Claim | Trend | GapTrend


# the defining fields that change with a field a trend runs along (the widths list the depth)
MOVES_WITH = {"depth": ("widths",)}


def arms(claim: AnyClaim) -> tuple[Arm, ...]:
    """The arms a claim names."""
    if isinstance(claim, Trend):
        return (arm(claim.side),)
    return (arm(claim.better), arm(claim.worse))


def varied(claim: AnyClaim) -> set[str]:
    """The defining fields a claim compares across; its peers share every other one."""
    if isinstance(claim, Claim):
        return {*arm(claim.better).varies, *arm(claim.worse).varies}
    along = {claim.along, *MOVES_WITH.get(claim.along, ())}
    if isinstance(claim, Trend):
        return along  # its arm picks the peers' group; the group varies only along
    return {*arm(claim.better).varies, *arm(claim.worse).varies} | along


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
PAPER_CLAIMS: dict[str, tuple[AnyClaim, ...]] = {
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
PENNINGTON2017 = "Pennington, Schoenholz & Ganguli (2017)"
_TANH, _RELU = (("activation", "tanh"),), (("activation", "relu"),)
_ORTH, _GAUSS = (("weights", "orthogonal"),), (("weights", "gaussian"),)
TANH_ORTH, TANH_GAUSS = Arm("mean_field", _ORTH, _TANH), Arm("mean_field", _GAUSS, _TANH)
RELU_ORTH, RELU_GAUSS = Arm("mean_field", _ORTH, _RELU), Arm("mean_field", _GAUSS, _RELU)
ISOMETRY_SPEED = steps_metric("0.80")
FIXUP2019 = "Zhang, Dauphin & Ma (2019)"
DE_SMITH2020 = "De & Smith (2020)"
_NONE, _BN = (("norm", "none"),), (("norm", "batchnorm"),)
HE_NONE, HE_BN = Arm("he", fields=_NONE), Arm("he", fields=_BN)
FIXUP_NONE, SKIPINIT_NONE = Arm("fixup", fields=_NONE), Arm("skipinit", fields=_NONE)
PAPER_CLAIMS["isometry"] = (
    Claim(
        TANH_ORTH,
        TANH_GAUSS,
        JACOBIAN_SPREAD,
        f"{PENNINGTON2017}, eq. for σ²_JJᵀ",
        "at the same χ₁ = 1, orthogonal weights keep a tanh net's Jacobian spectrum narrow: "
        "(L-1)(μ₂/μ₁² - 1) against (L-1) μ₂/μ₁² for Gaussian ones",
    ),
    Claim(
        TANH_ORTH,
        TANH_GAUSS,
        ISOMETRY_SPEED,
        f"{PENNINGTON2017}, Sec. 5",
        "so the orthogonal tanh net learns faster",
    ),
    GapTrend(
        TANH_ORTH,
        TANH_GAUSS,
        ISOMETRY_SPEED,
        f"{PENNINGTON2017}, Sec. 5",
        "and its lead grows with depth",
    ),
    Trend(
        RELU_GAUSS,
        JACOBIAN_SPREAD,
        PENNINGTON2017,
        "ReLU's spectrum spreads with depth with Gaussian weights (He)",
    ),
    Trend(
        RELU_ORTH,
        JACOBIAN_SPREAD,
        PENNINGTON2017,
        "and with orthogonal ones: no weights give ReLU dynamical isometry",
    ),
)
PAPER_CLAIMS["fixup2019"] = (
    Claim(
        FIXUP_NONE,
        HE_NONE,
        TEST_ACC,
        FIXUP2019,
        "without normalization, Fixup trains a deep residual MLP that He-initialized branches "
        "do not",
    ),
    GapTrend(FIXUP_NONE, HE_NONE, TEST_ACC, FIXUP2019, "and its lead grows with the blocks"),
    Claim(
        SKIPINIT_NONE,
        HE_NONE,
        TEST_ACC,
        DE_SMITH2020,
        "a zero-initialized gate per block (SkipInit) does it too",
    ),
    Claim(
        HE_BN,
        HE_NONE,
        TEST_ACC,
        DE_SMITH2020,
        "batch norm in the branches does it too: it down-weights the branches",
    ),
    Claim(
        FIXUP_NONE,
        HE_NONE,
        growth_metric(),
        FIXUP2019,
        "at init, He's residual stream grows with the blocks (q doubles per block); Fixup's "
        "stays flat",
    ),
)
# What a reader of a paper's study should know to read its verdicts.
STUDY_NOTES = {
    "isometry": (
        "The spread is Var(λ)/E[λ]² of the eigenvalues λ of J Jᵀ, J = dh_L/dh_1 the hidden "
        "stack's Jacobian, per input and averaged over the inputs measured at step 0 "
        "(results.json's `jacobian`; scale free, so it does not inherit the log-normal spread "
        "of E[λ] between inits). The theory beside it in `spectrum_vs_depth.png` is the free-"
        "probability prediction along the mean-field q of each layer, from the data's E[x²]: "
        "the first layer starts above q*, so it is not exactly (L-1)(μ₂/μ₁² - 1 - s₁). A trend "
        "row compares an arm's deepest depth with its shallowest seed by seed; the lead row "
        "compares the steps saved by orthogonal weights at the deepest depth with those at the "
        "shallowest."
    ),
    "fixup2019": (
        "A run that diverged (He-initialized branches double E[h²] per block) counts with the "
        "test accuracy it ended at. The growth row reads the layer profile at step 0: log2 of "
        "the stream's q after the last block over q after the embedding (`inp`); the stream "
        "block by block against the residual recursion is `scripts/propagate.py "
        "model.residual=true` (docs/propagation.md)."
    ),
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


def study_claims(study: Any, speed_key: str) -> tuple[AnyClaim, ...]:
    if study == TUTORIAL_STUDY:
        return tutorial_claims(speed_key)
    return PAPER_CLAIMS.get(study, ())


# -- testing a claim ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """A claim tested on its configurations: the paired differences better - worse.

    For a Claim, ``better`` and ``worse`` are the two configurations. For a Trend, they are the
    arm's configurations at the largest and the smallest value along the trend (for a falling
    one, the other way round). For a GapTrend, the worse arm's configurations at those two
    values (where a stall would show), and the pairs are the advantages at each. ``labels`` and
    ``means`` say what each side is in the claims table."""

    claim: AnyClaim
    better: Config
    worse: Config
    pairs: Paired
    censored: int  # pairs in which some run never reached the threshold
    group: str  # the configurations' other varying fields ("" when there is one group)
    labels: tuple[str, str] = ("", "")
    means: tuple[str, str] = ("", "")
    direction: int = 0  # +1: the claim says the differences are > 0; -1: < 0

    @property
    def verdict(self) -> str:
        direction = self.direction or (1 if self.claim.metric.higher_is_better else -1)
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


def _paired_values(
    metric: Metric, a: dict[Any, Value], b: dict[Any, Value]
) -> tuple[dict[Any, tuple[float, float]], set[Any]]:
    """Seed -> (a's value, b's value) over the seeds both have, and the censored seeds: a run
    that never reached a threshold counts as the longer run's length of its pair."""
    out, censored = {}, set()
    for seed in sorted(set(a) & set(b), key=str):
        va, vb = a[seed], b[seed]
        if va.censored or vb.censored:
            censored.add(seed)
            bound = max(va.value, vb.value)  # the longer run's length
            va = Value(bound) if va.censored else va
            vb = Value(bound) if vb.censored else vb
        out[seed] = (va.value, vb.value)
    return out, censored


def _fmt_mean(values: Sequence[float], digits: int) -> str:
    return f"{sum(values) / len(values):+.{digits}f}" if values else "-"


def compare(claim: Claim, better: Config, worse: Config, group: str = "") -> Comparison:
    """Pair the two configurations' runs by seed and take the differences better - worse."""
    metric = claim.metric
    pairs, censored = _paired_values(metric, _values(better, metric), _values(worse, metric))
    xs, ys = [p[0] for p in pairs.values()], [p[1] for p in pairs.values()]
    return Comparison(
        claim,
        better,
        worse,
        paired(xs, ys),
        len(censored),
        group,
        (arm(claim.better).label, arm(claim.worse).label),
        (mean_text(better, metric), mean_text(worse, metric)),
    )


def _along_label(field: str, config: Config) -> str:
    return f"{field} {fmt_num(config.key.get(field))}"


def compare_trend(claim: Trend, ends: Sequence[Config], group: str = "") -> Comparison:
    """The arm's metric at the largest value along the trend minus at the smallest, by seed."""
    low, high = ends[0], ends[-1]
    metric = claim.metric
    pairs, censored = _paired_values(metric, _values(high, metric), _values(low, metric))
    xs, ys = [p[0] for p in pairs.values()], [p[1] for p in pairs.values()]
    name = arm(claim.side).label
    return Comparison(
        claim,
        high,
        low,
        paired(xs, ys),
        len(censored),
        group,
        (f"{name}, {_along_label(claim.along, high)}", f"{name}, {_along_label(claim.along, low)}"),
        (mean_text(high, metric), mean_text(low, metric)),
        1 if claim.rises else -1,
    )


def _advantage(metric: Metric, better: Config, worse: Config) -> tuple[dict[Any, float], int]:
    """Seed -> better's advantage over worse (> 0: better is better), and the censored count."""
    pairs, censored = _paired_values(metric, _values(better, metric), _values(worse, metric))
    sign = 1.0 if metric.higher_is_better else -1.0
    return {seed: sign * (a - b) for seed, (a, b) in pairs.items()}, len(censored)


def compare_gap(
    claim: GapTrend, low: tuple[Config, Config], high: tuple[Config, Config], group: str = ""
) -> Comparison:
    """The advantage of better over worse at the largest value along the trend minus at the
    smallest, by seed (each (better, worse) pair as ``compare`` pairs it)."""
    adv_low, c_low = _advantage(claim.metric, *low)
    adv_high, c_high = _advantage(claim.metric, *high)
    seeds = sorted(set(adv_low) & set(adv_high), key=str)
    xs, ys = [adv_high[s] for s in seeds], [adv_low[s] for s in seeds]
    d = claim.metric.digits
    what = f"{arm(claim.better).label} - {arm(claim.worse).label}"
    return Comparison(
        claim,
        high[1],
        low[1],
        paired(xs, ys),
        c_low + c_high,
        group,
        (
            f"{what}, {_along_label(claim.along, high[1])}",
            f"{what}, {_along_label(claim.along, low[1])}",
        ),
        (_fmt_mean(xs, d), _fmt_mean(ys, d)),
        1,
    )


def peer_groups(
    configs: Sequence[Config], vary: Sequence[str] = ("init", "init params")
) -> dict[str, list[Config]]:
    """The configurations that differ only in the fields ``vary`` (by default: their init and
    its parameters), by the JSON of what they share."""
    groups: dict[str, list[Config]] = {}
    for c in configs:
        rest = {k: v for k, v in c.key.items() if k not in vary}
        groups.setdefault(json.dumps(rest, sort_keys=True, default=str), []).append(c)
    return groups


def _group_label(peers: Sequence[Config], shown: Sequence[str], vary: Sequence[str]) -> str:
    fields = [f for f in shown if f not in vary]
    c = peers[0]
    return ", ".join(f"{f}={fmt_num(c.key[f])}" for f in fields)


def _along(configs: Sequence[Config], field: str) -> list[Config]:
    """``configs`` sorted along ``field`` (one per value: the first)."""
    seen: dict[Any, Config] = {}
    for c in configs:
        seen.setdefault(c.key.get(field), c)
    return [seen[k] for k in sorted(seen, key=lambda v: (v is None, v if v is not None else 0))]


def _test(claim: AnyClaim, peers: Sequence[Config], label: str) -> list[Comparison]:
    if isinstance(claim, Claim):
        better, worse = arm(claim.better), arm(claim.worse)
        return [
            compare(claim, b, w, label)
            for b in peers
            if better.matches(b)
            for w in peers
            if worse.matches(w)
        ]
    if isinstance(claim, Trend):
        ends = _along([c for c in peers if arm(claim.side).matches(c)], claim.along)
        return [compare_trend(claim, ends, label)] if len(ends) > 1 else []
    better = {c.key.get(claim.along): c for c in peers if arm(claim.better).matches(c)}
    worse = {c.key.get(claim.along): c for c in peers if arm(claim.worse).matches(c)}
    both = sorted(set(better) & set(worse), key=lambda v: (v is None, v if v is not None else 0))
    if len(both) < 2:
        return []
    lo, hi = both[0], both[-1]
    return [compare_gap(claim, (better[lo], worse[lo]), (better[hi], worse[hi]), label)]


def comparisons(configs: Sequence[Config], shown: Sequence[str] = ()) -> list[Comparison]:
    """Every claim of every study in ``configs``, tested in each group of peers: the
    configurations that differ only in what the claim compares (for a Claim, what its arms name;
    for a trend, the field it runs along). ``shown``: the varying fields, whose other values label
    a group."""
    runs = [r for c in configs for r in c.runs]
    speed_key = speed_threshold(runs, report_thresholds(runs)) if runs else "0.95"
    out = []
    studies: dict[Any, list[Config]] = {}
    for c in configs:
        studies.setdefault(c.key.get("study"), []).append(c)
    for study, members in studies.items():
        for claim in study_claims(study, speed_key):
            vary = tuple(sorted(varied(claim)))
            groups = peer_groups(members, vary)
            named = {*vary, *(f for a in arms(claim) for f in a.varies)}  # said by the row
            for peers in groups.values():
                label = _group_label(peers, shown, named) if len(groups) > 1 else ""
                out.extend(_test(claim, peers, label))
    return out


def tally(found: Sequence[Comparison]) -> str:
    """ "9 claims tested: 6 holds, 0 contradicted, 3 unresolved": the one count of the verdicts,
    which the Claims section and the answer line at the top of summary.md both print."""
    verdicts = Counter(c.verdict for c in found)
    return f"{len(found)} claims tested: " + ", ".join(f"{verdicts[v]} {v}" for v in VERDICTS)


def row_name(found: Comparison) -> str:
    """A claims-table row in a few words (its two sides, its metric and its group), for the
    answer line to name a verdict by."""
    text = f"{found.labels[0]} vs {found.labels[1]}, {found.claim.metric.name}"
    return text + (f" ({found.group})" if found.group else "")


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
        if not isinstance(c.claim, Claim) or not _is_steps(c.claim.metric) or id(c.worse) in seen:
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
            f"{c.labels[1] or c.worse.key['init']}: {len(runs)} of {len(c.worse.runs)} runs "
            f"never reached {pct(c.claim.metric.threshold)}%; their val accuracy went from "
            f"{start:.3f} at step 0 to {end:.3f} (best {best:.3f}) at step {steps:.0f}: {what}."
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
