"""The operating curve: the alert policy run again over a replay's recorded probabilities at other
thresholds, and the threshold that warns the most crashes within a false-alert budget."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from crashwatch.evaluation.certainty import upper_bound
from crashwatch.evaluation.scoring import WARNING_WINDOW, false_alert_starts, score_alerts, summarise
from crashwatch.monitor.messages import Level
from crashwatch.monitor.pipeline.alerts import AlertPolicy, AlertTracker, alert_starts
from crashwatch.monitor.pipeline.levels import RISES, CautionPolicy, LevelTracker

# Every 0.02, and finer at the top, where the threshold of a strict false-alert budget lies for a model whose
# risk before a collision saturates (0.99-1.00 for a second or more).
CURVE_THRESHOLDS = [round(0.02 * k, 2) for k in range(1, 50)] + [0.99, 0.995]
CURVE_COLUMNS = ("threshold", "alerted_before_collision", "crash_clips_with_event_time",
                 "alerted_before_collision_rate", "median_time_to_accident_s", "false_alerts", "false_alerts_per_hour",
                 "false_alerts_per_hour_upper", "normal_hours")


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
            starts = AlertRun.of(policy, trace).starts
            rows.append({"label": trace.label, "event_time": trace.event_time, "alert_fired": int(bool(starts)),
                         **score_alerts(starts, trace.duration, trace.event_time, trace.label, warning_window)})
        summary = summarise(rows, threshold)
        curve.append({key: summary[key] for key in CURVE_COLUMNS})
    return curve


def within_budget(curve: list[dict[str, Any]], budget: float, confidence: float | None = None) -> dict[str, Any] | None:
    """Of the curve's points whose false alerts per hour stay within ``budget`` (the point figure, or with
    ``confidence`` its exact upper bound at that level, ``certainty``), the one warning the most crashes in
    time, and of those the lowest threshold (the earliest warnings); None when no point is within budget or the
    data holds no normal driving. (Not simply the lowest threshold within budget: an alert that starts early
    and never ends counts as one false alert, and warns of nothing.)"""
    def rate(p: dict[str, Any]) -> float | None:
        if confidence is None or p["false_alerts_per_hour"] is None:
            return p["false_alerts_per_hour"]
        return upper_bound(p["false_alerts"], p["normal_hours"], confidence)

    within = [p for p in curve if (r := rate(p)) is not None and r <= budget]
    if not within:
        return None
    best = max(within, key=lambda p: (p["alerted_before_collision_rate"] or 0.0, -p["threshold"]))
    return {**best, "budget_per_hour": budget, "confidence": confidence,
            "false_alerts_per_hour_bound": rate(best)}


@dataclass(frozen=True)
class AlertRun:
    """What an alert policy makes of a trace, the same for every caution tried beside it: the open alert's id
    after each stride (None while none is open) and the alert starts."""

    alert_ids: list[int | None]
    starts: list[float]

    @classmethod
    def of(cls, policy: AlertPolicy, trace: Trace) -> "AlertRun":
        tracker, ids, events = AlertTracker(policy), [], []
        for t, p in zip(trace.times, trace.probabilities):
            events += tracker.update(t, p)
            ids.append(tracker.alert_id)
        return cls(ids, alert_starts(events))


def caution_starts(alert: AlertPolicy, caution: CautionPolicy, trace: Trace, run: AlertRun) -> list[float]:
    """The times the warning level rose from none to caution (a caution heard; an alert straight from none is an
    alert, counted as such), as the monitor's trackers would raise them."""
    levels, starts = LevelTracker(caution), []
    for t, p, alert_id in zip(trace.times, trace.probabilities, run.alert_ids):
        previous = levels.level
        level, _ = levels.update(t, p, alert.on, alert_id, None)
        starts += [t] if previous is Level.NONE and level is Level.CAUTION else []
    return starts


def caution_point(traces: list[Trace], alert: AlertPolicy, caution: CautionPolicy,
                  warning_window: float = WARNING_WINDOW, runs: list[AlertRun] | None = None) -> dict[str, Any]:
    """What the two levels do together: false cautions (cautions during normal driving, counted as false alerts
    are) and their rate per hour of normal driving; the crashes warned in time by either level (a caution or an
    alert starting in the warning window) and the median lead of that first warning. ``runs``: each trace's
    ``AlertRun`` for ``alert``, where the caller made them once for many cautions."""
    runs = runs if runs is not None else [AlertRun.of(alert, trace) for trace in traces]
    false_cautions, normal_s, leads = 0, 0.0, []
    for trace, run in zip(traces, runs):
        starts = caution_starts(alert, caution, trace, run)
        false_cautions += len(false_alert_starts(starts, trace.event_time, trace.label, warning_window))
        normal_s += score_alerts([], trace.duration, trace.event_time, trace.label, warning_window)["normal_s"]
        if trace.label == 1 and trace.event_time is not None:
            opens = trace.event_time - warning_window
            first = min((t for t in starts + run.starts if opens <= t < trace.event_time), default=None)
            leads += [] if first is None else [trace.event_time - first]
    hours = normal_s / 3600
    return {"caution_threshold": caution.on, "caution_rise_seconds": caution.rise_seconds,
            "false_cautions": false_cautions, "false_cautions_per_hour": false_cautions / hours if hours else None,
            "warned_by_either": len(leads), "median_first_warning_s": statistics.median(leads) if leads else None}


def caution_within_budget(traces: list[Trace], alert: AlertPolicy, budget: float,
                          warning_window: float = WARNING_WINDOW) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The caution for ``budget`` false cautions an hour, by the alert threshold's rule: of the thresholds up to
    the alert's (``CURVE_THRESHOLDS``) and the rising rule's look-aheads (``RISES``) within budget, the pair
    warning the most crashes in time with either level, then the earliest, then the highest threshold. Returns
    it (None when none keeps within budget) and every pair tried."""
    runs = [AlertRun.of(alert, trace) for trace in traces]
    rows = [caution_point(traces, alert, CautionPolicy.around(on, rise_seconds=rise), warning_window, runs)
            for on in [t for t in CURVE_THRESHOLDS if t <= alert.on] for rise in RISES]
    within = [r for r in rows if r["false_cautions_per_hour"] is not None and r["false_cautions_per_hour"] <= budget]
    best = max(within, key=lambda r: (r["warned_by_either"], r["median_first_warning_s"] or 0.0,
                                      r["caution_threshold"]), default=None)
    return (None if best is None else {**best, "budget_per_hour": budget}), rows
