"""Graded warnings: the caution level's threshold, its rising rule, its hysteresis, and the level the monitor
publishes beside its alerts."""

from __future__ import annotations

import pytest

from crashwatch.monitor.messages import Level, LevelChange
from crashwatch.monitor.pipeline.alerts import AlertPolicy, AlertTracker
from crashwatch.monitor.pipeline.levels import CautionPolicy, LevelTracker


def _levels(series: list[float], caution: CautionPolicy, alert: AlertPolicy, stride: float = 0.5):
    """Run both trackers as the monitor does; (t, level) per stride and the changes published."""
    alerts, levels = AlertTracker(alert), LevelTracker(caution)
    per_stride, changes = [], []
    for k, p in enumerate(series):
        t = k * stride
        alerts.update(t, p)
        level, change = levels.update(t, p, alert.on, alerts.alert_id, captured_at=1000.0 + t)
        per_stride.append(level.value)
        changes += [change] if change is not None else []
    return per_stride, changes


def test_a_caution_comes_below_the_alert_with_its_own_hysteresis():
    caution = CautionPolicy.around(0.5, rise_seconds=0)  # the threshold alone; off below 0.4
    alert = AlertPolicy.around(0.9)
    series = [0.1, 0.55, 0.45, 0.95, 0.95, 0.6, 0.3, 0.3, 0.3, 0.3, 0.3]
    per_stride, changes = _levels(series, caution, alert)
    # 0.55 raises a caution; 0.45 is above its off (0.4): no flap; 0.95 is the alert; the alert ends after a
    # second below 0.72 (from 2.5 s, at 3.5 s) and the caution after a second below 0.4 (from 3.0 s, at 4.0 s).
    assert per_stride == ["none", "caution", "caution", "imminent", "imminent", "imminent", "imminent", "caution",
                          "none", "none", "none"]
    assert [(c.previous.value, c.level.value, c.t) for c in changes] == [
        ("none", "caution", 0.5), ("caution", "imminent", 1.5), ("imminent", "caution", 3.5), ("caution", "none", 4.0)]
    assert changes[1].alert_id == 1 and changes[0].alert_id is None
    assert changes[0].captured_at == 1000.5 and "caution threshold 0.50" in changes[0].reason


def test_a_fast_rise_raises_a_caution_before_the_lower_threshold():
    alert = AlertPolicy.around(0.9)
    series = [0.05, 0.05, 0.3, 0.55, 0.95]
    rising, changes = _levels(series, CautionPolicy.around(0.6, rise_seconds=1.0), alert)
    # 0.05 -> 0.3 -> 0.55 over a second: 0.5/s, so at the 0.9 alert threshold within the second ahead
    assert rising == ["none", "none", "none", "caution", "imminent"]
    assert "rising" in changes[0].reason
    threshold_only, _ = _levels(series, CautionPolicy.around(0.6, rise_seconds=0), alert)
    assert threshold_only == ["none", "none", "none", "none", "imminent"]
    slow, _ = _levels([0.05, 0.1, 0.15, 0.2, 0.25], CautionPolicy.around(0.6, rise_seconds=1.0), alert)
    assert slow == ["none"] * 5  # rising, but far from the alert threshold at its rate


def test_a_caution_threshold_above_the_alert_threshold_in_force_is_taken_at_it():
    # an operator may lower the alert threshold below the bundle's caution threshold
    per_stride, changes = _levels([0.1, 0.55, 0.1], CautionPolicy.around(0.7, rise_seconds=0), AlertPolicy.around(0.5))
    assert per_stride == ["none", "imminent", "imminent"]
    assert changes[0].caution_threshold == 0.5


def test_level_messages_round_trip_and_rank():
    change = LevelChange(level=Level.CAUTION, previous=Level.NONE, t=1.0, probability=0.6, reason="r",
                         captured_at=5.0, caution_threshold=0.5, alert_threshold=0.9)
    assert LevelChange.from_wire(change.to_wire()) == change
    assert change.to_wire()["level"] == "caution"
    assert Level.NONE.rank < Level.CAUTION.rank < Level.IMMINENT.rank
    with pytest.raises(ValueError):
        CautionPolicy(on=0.3, off=0.5)
