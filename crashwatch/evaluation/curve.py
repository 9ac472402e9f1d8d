"""The operating curve: the alert policy run again over a replay's recorded probabilities at other
thresholds, and the threshold that warns the most crashes within a false-alert budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crashwatch.evaluation.scoring import WARNING_WINDOW, score_alerts, summarise
from crashwatch.monitor.pipeline.alerts import AlertPolicy, AlertTracker, alert_starts

# Every 0.02, and finer at the top, where the threshold of a strict false-alert budget lies for a model whose
# risk before a collision saturates (0.99-1.00 for a second or more).
CURVE_THRESHOLDS = [round(0.02 * k, 2) for k in range(1, 50)] + [0.99, 0.995]
CURVE_COLUMNS = ("threshold", "alerted_before_collision", "crash_clips_with_event_time",
                 "alerted_before_collision_rate", "median_time_to_accident_s", "false_alerts", "false_alerts_per_hour")


@dataclass(frozen=True)
class Trace:
    """A replayed clip (its file name, label, collision time and length) and every stride's time and probability:
    all any metric needs, so the metrics can be computed again from a replay's folder (``traces.read_replay``)."""

    name: str
    label: int
    event_time: float | None
    duration: float
    times: list[float]
    probabilities: list[float]


def operating_curve(traces: list[Trace], alert: dict[str, Any], warning_window: float = WARNING_WINDOW,
                    thresholds: list[float] = CURVE_THRESHOLDS) -> list[dict[str, Any]]:
    """Per threshold, what the replay would have scored with alerts starting there (the rest of the policy
    as given): warned crashes, median time-to-accident, false alerts per hour."""
    curve = []
    for threshold in thresholds:
        policy = AlertPolicy.around(threshold, **alert)
        rows = []
        for trace in traces:
            starts = _alert_starts(policy, trace.times, trace.probabilities)
            rows.append({"label": trace.label, "event_time": trace.event_time, "alert_fired": int(bool(starts)),
                         **score_alerts(starts, trace.duration, trace.event_time, trace.label, warning_window)})
        summary = summarise(rows, threshold)
        curve.append({key: summary[key] for key in CURVE_COLUMNS})
    return curve


def within_budget(curve: list[dict[str, Any]], budget: float) -> dict[str, Any] | None:
    """Of the curve's points whose false alerts per hour stay within ``budget``, the one warning the most
    crashes in time, and of those the lowest threshold (the earliest warnings); None when no point is within
    budget or the data holds no normal driving. (Not simply the lowest threshold within budget: an alert that
    starts early and never ends counts as one false alert, and warns of nothing.)"""
    within = [p for p in curve if p["false_alerts_per_hour"] is not None and p["false_alerts_per_hour"] <= budget]
    if not within:
        return None
    best = max(within, key=lambda p: (p["alerted_before_collision_rate"] or 0.0, -p["threshold"]))
    return {**best, "budget_per_hour": budget}


def _alert_starts(policy: AlertPolicy, times: list[float], probabilities: list[float]) -> list[float]:
    tracker = AlertTracker(policy)
    return alert_starts([event for t, p in zip(times, probabilities) for event in tracker.update(t, p)])
