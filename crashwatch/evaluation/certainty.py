"""How sure a false-alert rate is: exact (Garwood) Poisson confidence bounds on a count of false alerts in so
many hours of normal driving. Two false alerts in 2.6 hours is 0.78 an hour as a point figure, but any rate
up to 2.4 an hour would show two or fewer that often at 95 %: a threshold chosen by the point figure may
alert three times as often on the road. The bounds need no statistics library: the Poisson distribution
function is summed in log space and inverted by bisection."""

from __future__ import annotations

import math

CONFIDENCE = 0.95  # the level stated beside every interval


def poisson_cdf(k: int, mean: float) -> float:
    """P(X <= k) for X ~ Poisson(mean)."""
    if mean <= 0:
        return 1.0
    return min(1.0, sum(math.exp(i * math.log(mean) - mean - math.lgamma(i + 1)) for i in range(k + 1)))


def _solve(target: float, count: int, below: bool) -> float:
    """The mean at which P(X <= count) (``below``) or P(X >= count) equals ``target``, by bisection."""
    low, high = 0.0, max(10.0, 10.0 * (count + 1))
    for _ in range(200):
        mid = (low + high) / 2
        value = poisson_cdf(count, mid) if below else 1.0 - poisson_cdf(count - 1, mid)
        if (value > target) == below:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def upper_bound(count: int, hours: float, level: float = CONFIDENCE) -> float:
    """The one-sided upper ``level`` bound on the rate per hour: the highest rate that would show ``count`` or
    fewer events in ``hours`` at least ``1 - level`` of the time."""
    return _solve(1.0 - level, count, below=True) / hours


def interval(count: int, hours: float, level: float = CONFIDENCE) -> tuple[float, float]:
    """The two-sided exact ``level`` interval on the rate per hour (Garwood)."""
    tail = (1.0 - level) / 2
    low = 0.0 if count == 0 else _solve(tail, count, below=False)
    return low / hours, _solve(tail, count, below=True) / hours
