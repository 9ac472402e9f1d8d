"""A camera's own alert threshold from its verdict history (``crashwatch review calibrate``): its dismissed
events are its false alerts, its confirmed ones the crashes it must keep warning of.

An alert fires when the probability reaches the threshold, so raising the threshold above a dismissed event's
peak would have silenced it, and above a confirmed one's would have lost it. The threshold proposed is the
lowest, from the one the events fired at, whose remaining false alerts keep the rate's exact upper bound
(``crashwatch.evaluation.certainty``) within the budget without losing a confirmed event; none where no such
threshold exists. The hours a camera drove are the operator's to give: the events folder holds alerts, not
the driving between them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from crashwatch.evaluation.certainty import interval, upper_bound
from crashwatch.review.events import ClipError, list_events
from crashwatch.review.verdicts import Decision, ReviewError, VerdictStore

STEP = 0.005  # thresholds proposed on this grid, just above a dismissed event's peak


def camera_thresholds(events_dir: Path, hours: dict[str, float], default_hours: float | None, budget: float,
                      level: float) -> list[dict[str, Any]]:
    """Per camera with events: its verdict counts, false alerts per hour with their ``level`` interval, the
    threshold its events fired at and the one proposed (``threshold``, None where none keeps within budget)."""
    verdicts = VerdictStore(events_dir).current()
    peaks: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"confirmed": [], "dismissed": [], "open": []})
    fired: dict[str, float] = {}
    for event in list_events(events_dir):
        try:
            summary = event.summary()
        except ClipError:
            continue
        verdict = verdicts.get(event.path.name)
        kind = "open" if verdict is None or verdict.decision is Decision.NEEDS_REVIEW else verdict.decision.value
        camera = summary["camera"]
        peaks[camera][kind].append(float(summary["peak"]))
        fired[camera] = max(fired.get(camera, 0.0), float(summary["threshold"]))
    rows = []
    for camera in sorted(peaks):
        driven = hours.get(camera, default_hours)
        if driven is None or driven <= 0:
            raise ReviewError(f"camera {camera}: how many hours did it drive? give --hours {camera}=H (or --hours H "
                              "for every camera)")
        p = peaks[camera]
        low, high = interval(len(p["dismissed"]), driven, level)
        rows.append({"camera": camera, "hours": driven, "confirmed": len(p["confirmed"]),
                     "dismissed": len(p["dismissed"]), "unreviewed": len(p["open"]),
                     "false_alerts_per_hour": len(p["dismissed"]) / driven, "interval": [low, high],
                     "confidence": level, "fired_at": fired[camera],
                     **_proposal(fired[camera], p["dismissed"], p["confirmed"], driven, budget, level)})
    return rows


def _proposal(fired: float, dismissed: list[float], confirmed: list[float], hours: float, budget: float,
              level: float) -> dict[str, Any]:
    none = {"threshold": None, "false_alerts_left": None, "false_alerts_per_hour_bound": None}
    floor = upper_bound(0, hours, level)
    if floor > budget:
        return {**none, "why": f"too few hours: even no false alert bounds the rate only below {floor:.2f}/h"}
    candidates = sorted({fired, *(math.floor(peak / STEP + 1) * STEP for peak in dismissed if peak >= fired)})
    for threshold in candidates:
        if any(peak < threshold for peak in confirmed):
            break
        left = sum(peak >= threshold for peak in dismissed)
        bound = upper_bound(left, hours, level)
        if bound <= budget:
            return {"threshold": round(threshold, 4), "false_alerts_left": left, "false_alerts_per_hour_bound": bound,
                    "why": None}
    return {**none, "why": "a threshold high enough would lose a confirmed event"}
