"""The scoring rules: which alert of a clip is its warning, which are false alerts, and how much normal
driving a clip holds.

The warning window matters for minutes-long drives: an alert three minutes before a drive's collision is a
false alert, not an early warning, and the minutes before the window count as normal driving. (In clips of
a few seconds the window covers the whole clip and the first alert is the warning, as in the research metric.)
"""

from __future__ import annotations

import statistics
from typing import Any

from crashwatch.evaluation.certainty import interval, upper_bound

# Seconds before a collision in which an alert counts as its warning: twice the question's 2 s horizon, plus
# the 1 s a stride and the alert hysteresis may take.
WARNING_WINDOW = 5.0
FALSE_ALERT_BUDGET = 2.0  # per hour of normal driving: the demo model's target
FALSE_CAUTION_BUDGET = 6.0  # per hour: the caution, a quieter grade, may speak three times as often
# Below this much normal driving a false-alert rate rests on too few alerts to set a threshold by: at 2 an hour,
# an hour holds two of them, and a replay without any says little.
MIN_NORMAL_HOURS = 1.0


def score_alerts(starts: list[float], duration: float, event_time: float | None, label: int,
                 window: float = WARNING_WINDOW) -> dict[str, Any]:
    """Alert start times of one clip -> its warning, time-to-accident, false alerts and normal seconds.

    With an event: the first start in ``[event - window, event]`` is the warning, starts before it are false
    alerts, and the time before ``event - window`` is normal driving (after the event nothing counts). A crash
    clip without an event time has no timing: no warning, no false alerts, no normal time.
    """
    false_alerts = len(false_alert_starts(starts, event_time, label, window))
    if event_time is None:
        normal = 0.0 if label == 1 else duration
        return {"warning_s": None, "time_to_accident_s": None, "false_alerts": false_alerts, "normal_s": normal}
    opens = event_time - window
    warnings = [t for t in starts if opens <= t <= event_time]
    warning = warnings[0] if warnings else None
    return {"warning_s": warning, "time_to_accident_s": None if warning is None else event_time - warning,
            "false_alerts": false_alerts, "normal_s": min(max(opens, 0.0), duration)}


def false_alert_starts(starts: list[float], event_time: float | None, label: int,
                       window: float = WARNING_WINDOW) -> list[float]:
    """The alert starts of one clip that are false alerts (see ``score_alerts``)."""
    if event_time is None:
        return [] if label == 1 else list(starts)
    return [t for t in starts if t < event_time - window]


def summarise(rows: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """Per-clip rows (``score_alerts`` with label, event time and whether an alert fired) -> the overall
    figures: crashes warned before the collision, median time-to-accident, false alerts per hour."""
    crashes = [r for r in rows if r["label"] == 1]
    timed = [r for r in crashes if r["event_time"] is not None]
    early = [r for r in timed if r["time_to_accident_s"] is not None and r["time_to_accident_s"] > 0]
    normal = [r for r in rows if r["label"] == 0]
    normal_hours = sum(r["normal_s"] for r in rows) / 3600
    false_alerts = sum(r["false_alerts"] for r in rows)
    certain = normal_hours > 0
    return {
        "clips": len(rows), "threshold": threshold,
        "crash_clips": len(crashes), "crash_clips_alerted": sum(r["alert_fired"] for r in crashes),
        "crash_clips_with_event_time": len(timed),
        "alerted_before_collision": len(early),
        "alerted_before_collision_rate": (len(early) / len(timed)) if timed else None,
        "median_time_to_accident_s": statistics.median([r["time_to_accident_s"] for r in early]) if early else None,
        "normal_clips": len(normal), "normal_hours": normal_hours, "false_alerts": false_alerts,
        "false_alerts_per_hour": (false_alerts / normal_hours) if normal_hours else None,
        # How sure that is (``certainty``): the exact two-sided interval and one-sided upper bound, at CONFIDENCE.
        "false_alerts_per_hour_interval": list(interval(false_alerts, normal_hours)) if certain else None,
        "false_alerts_per_hour_upper": upper_bound(false_alerts, normal_hours) if certain else None,
    }
