"""Paired comparisons over seeds: a t confidence interval on paired differences.

Runs that share a seed share the data order (and inits of one family share their random draws),
so two configurations are compared best seed by seed: the differences d_s = a_s - b_s remove the
seed's common part. The interval is Student's t on those differences, mean ± t_(0.975, n-1) s/√n
(s: the differences' sample standard deviation), which assumes the differences are roughly normal
and independent across seeds. Standard library only.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95
MAX_SEEDS = 1000  # "seeds to resolve" beyond this is reported as "more than"


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for num in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom (via the incomplete beta
    function; no scipy needed)."""
    if df < 1:
        raise ValueError(f"df={df}: needs at least 1 degree of freedom")
    tail = 0.5 * _incomplete_beta(df / 2, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


@functools.lru_cache(maxsize=4096)
def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on t_cdf)."""
    if not 0 < p < 1:
        raise ValueError(f"p={p} is not in (0, 1)")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class Paired:
    """The paired differences of one comparison and their t interval."""

    differences: tuple[float, ...]
    confidence: float = CONFIDENCE

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.differences) if self.differences else None

    @property
    def sd(self) -> float | None:
        return statistics.stdev(self.differences) if self.n > 1 else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """(low, high) of the two-sided interval; None with fewer than 2 pairs."""
        if self.n < 2:
            return None
        half = _t(self.confidence, self.n) * self.sd / math.sqrt(self.n)
        return self.mean - half, self.mean + half

    def sign(self) -> int:
        """+1 / -1 when the interval excludes zero on that side, 0 when it contains zero (or
        there is no interval)."""
        ci = self.interval
        if ci is None:
            return 0
        return 1 if ci[0] > 0 else (-1 if ci[1] < 0 else 0)

    def seeds_to_resolve(self) -> int | None:
        """Roughly how many seeds would make the interval exclude zero, if the mean difference
        and its standard deviation stayed as observed: the smallest m with t s / √m < |mean|.
        None when there is no estimate (fewer than 2 pairs, or a mean of exactly 0);
        MAX_SEEDS + 1 for "more than MAX_SEEDS"."""
        if self.n < 2 or not self.mean:
            return None
        if self.sd == 0:
            return self.n
        # t > z, so the normal approximation's m is a lower bound to start from
        z = statistics.NormalDist().inv_cdf(0.5 + self.confidence / 2)
        m = max(2, self.n + 1, math.ceil((z * self.sd / abs(self.mean)) ** 2))
        while m <= MAX_SEEDS:
            if _t(self.confidence, m) * self.sd / math.sqrt(m) < abs(self.mean):
                return m
            m += 1
        return MAX_SEEDS + 1


def _t(confidence: float, n: int) -> float:
    return t_quantile(0.5 + confidence / 2, n - 1)


def paired(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Paired:
    """The paired differences a_i - b_i (equal-length sequences, one entry per shared seed)."""
    if len(a) != len(b):
        raise ValueError(f"paired needs equal lengths, got {len(a)} and {len(b)}")
    return Paired(tuple(x - y for x, y in zip(a, b, strict=True)), confidence)
