"""False alerts per hour with their certainty: exact Poisson bounds against published table values, and a
threshold picked by the upper bound where asked."""

from __future__ import annotations

import pytest

from crashwatch.evaluation.certainty import interval, upper_bound
from crashwatch.evaluation.curve import within_budget


@pytest.mark.parametrize("count, low, high", [(0, 0.0, 3.6889), (2, 0.2422, 7.2247), (10, 4.7954, 18.3904)])
def test_the_two_sided_interval_is_garwoods(count, low, high):
    """95 % exact intervals for a Poisson count (Garwood 1936; e.g. the tables of Ulm 1990)."""
    got = interval(count, 1.0)
    assert got[0] == pytest.approx(low, abs=1e-3) and got[1] == pytest.approx(high, abs=1e-3)
    assert interval(count, 2.0)[1] == pytest.approx(high / 2, abs=1e-3)  # per hour over two hours


def test_the_upper_bound_is_one_sided():
    assert upper_bound(0, 1.0) == pytest.approx(2.9957, abs=1e-3)  # -ln(0.05)
    assert upper_bound(0, 1.0, 0.5) == pytest.approx(0.6931, abs=1e-3)  # ln 2
    assert upper_bound(3, 1.0) == pytest.approx(7.7537, abs=1e-3)


def _point(threshold: float, false_alerts: int, warned: float, hours: float = 10.0) -> dict:
    return {"threshold": threshold, "alerted_before_collision_rate": warned, "false_alerts": false_alerts,
            "normal_hours": hours, "false_alerts_per_hour": false_alerts / hours}


def test_a_threshold_picked_by_the_upper_bound_keeps_the_budget_surely():
    curve = [_point(0.5, 15, 1.0), _point(0.7, 8, 0.95), _point(0.9, 2, 0.9)]
    by_point = within_budget(curve, 1.0)
    assert by_point["threshold"] == 0.7 and by_point["confidence"] is None  # 0.8/h, as a point figure
    sure = within_budget(curve, 1.0, confidence=0.95)
    assert sure["threshold"] == 0.9 and sure["false_alerts_per_hour_bound"] == pytest.approx(0.6296, abs=1e-3)
    assert within_budget([_point(0.9, 0, 1.0, hours=2.0)], 1.0, confidence=0.95) is None  # 2 h prove no 1/h
