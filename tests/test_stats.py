"""Paired t intervals (initlab.report.stats) against a printed table of Student's t."""

from __future__ import annotations

import math
import statistics

import pytest

from initlab.report.stats import MAX_SEEDS, paired, t_cdf, t_quantile

# t(0.975, df) and t(0.95, df), from a printed table (5 significant digits)
TABLE = {
    1: (12.706, 6.3138),
    2: (4.3027, 2.9200),
    3: (3.1824, 2.3534),
    5: (2.5706, 2.0150),
    10: (2.2281, 1.8125),
    30: (2.0423, 1.6973),
    120: (1.9799, 1.6577),
}


@pytest.mark.parametrize("df", sorted(TABLE))
def test_t_quantile_matches_the_table(df):
    q975, q95 = TABLE[df]
    assert t_quantile(0.975, df) == pytest.approx(q975, abs=6e-4 * q975)
    assert t_quantile(0.95, df) == pytest.approx(q95, abs=6e-4 * q95)
    assert t_quantile(0.025, df) == pytest.approx(-t_quantile(0.975, df))
    assert t_cdf(t_quantile(0.9, df), df) == pytest.approx(0.9, abs=1e-9)


def test_t_tends_to_the_normal():
    assert t_quantile(0.975, 100_000) == pytest.approx(statistics.NormalDist().inv_cdf(0.975), 1e-4)
    assert t_cdf(0.0, 3) == 0.5
    with pytest.raises(ValueError, match="df=0"):
        t_cdf(1.0, 0)


def test_paired_interval_by_hand():
    a, b = [0.91, 0.93, 0.92, 0.95], [0.90, 0.90, 0.91, 0.93]
    p = paired(a, b)
    d = [x - y for x, y in zip(a, b, strict=True)]
    half = TABLE[3][0] * statistics.stdev(d) / math.sqrt(4)
    low, high = p.interval
    assert p.n == 4 and p.mean == pytest.approx(statistics.fmean(d))
    assert low == pytest.approx(p.mean - half, rel=1e-4) and high == pytest.approx(
        p.mean + half, rel=1e-4
    )
    assert p.sign() == 1 and paired(b, a).sign() == -1


def test_unresolved_and_seeds_to_resolve():
    p = paired([0.90, 0.92, 0.91], [0.91, 0.90, 0.905])  # +0.005 mean, sd 0.015: contains 0
    assert p.sign() == 0
    m = p.seeds_to_resolve()
    t = [t_quantile(0.975, k - 1) for k in (m - 1, m)]
    assert t[1] * p.sd / math.sqrt(m) < abs(p.mean) <= t[0] * p.sd / math.sqrt(m - 1)
    assert paired([1.0], [0.0]).interval is None and paired([1.0], [0.0]).sign() == 0
    assert paired([1.0, 2.0], [1.0, 2.0]).seeds_to_resolve() is None  # no difference at all
    tiny = paired([1.0, 1.2, 0.8], [1.0, 1.0, 1.0 - 1e-4])
    assert tiny.seeds_to_resolve() == MAX_SEEDS + 1
    with pytest.raises(ValueError, match="equal lengths"):
        paired([1.0], [1.0, 2.0])
