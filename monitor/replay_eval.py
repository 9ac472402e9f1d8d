"""``crashwatch replay-eval``: every clip of a split replayed as a stream through the monitor itself.

Per clip: whether an alert fired, the warning and time-to-accident for crash clips with ``event_time`` (the
first alert starting within ``warning_window`` seconds before the collision; time-to-accident is the event time
minus its start), false alerts, a risk-over-time PNG and the probability of every stride (``traces/NAME.csv``,
to study alerts without replaying again). Overall: detection rate, median time-to-accident,
false alerts per hour of driving with no collision ahead.

The window matters for minutes-long drives: an alert three minutes before a drive's collision is a false alert,
not an early warning, and the minutes before the window count as normal driving. (In clips of a few seconds
the window covers the whole clip and the first alert is the warning, as in the research metric.)

Every stride's probability is kept, so the same replay also gives the operating curve: the alert policy run
again over the recorded probabilities at other thresholds (``operating_curve.csv``), and the threshold that
warns the most crashes while keeping false alerts within a budget per hour (``crashwatch calibrate`` writes it
into a bundle).
"""

from __future__ import annotations

import bisect
import collections
import csv
import json
import logging
import statistics
from pathlib import Path
from typing import Any

import cv2

from monitor.alerts import AlertPolicy, AlertTracker
from monitor.annotate import alert_spans
from monitor.bundle import RiskModel
from monitor.plot import risk_chart
from monitor.publisher import Publisher
from monitor.run import Monitor, MonitorOptions
from monitor.source import SourceSpec
from train.data import Clip, read_split

log = logging.getLogger(__name__)

# Seconds before a collision in which an alert counts as its warning: twice the question's 2 s horizon, plus
# the 1 s a stride and the alert hysteresis may take.
WARNING_WINDOW = 5.0
FALSE_ALERT_BUDGET = 2.0  # per hour of normal driving: the demo model's target
# Every 0.02, and finer at the top, where the threshold of a strict false-alert budget lies for a model whose
# risk before a collision saturates (0.99-1.00 for a second or more).
CURVE_THRESHOLDS = [round(0.02 * k, 2) for k in range(1, 50)] + [0.99, 0.995]


def replay_clip(model: RiskModel, video: Path, stride: float | None, alert: dict[str, Any]) -> Monitor:
    """Replay one file as fast as inference allows, publishing on an in-process endpoint nobody reads."""
    options = MonitorOptions(source=SourceSpec("file", str(video), str(video)), replay="fast", camera=video.name,
                             stride=stride, alert=dict(alert))
    endpoint = f"inproc://replay-{id(options)}"
    monitor = Monitor(model, options, lambda status: Publisher(endpoint, video.name, status=None))
    monitor.run()
    return monitor


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


def read_segments(data: Path, split: str) -> dict[str, tuple[list[float], list[str]]]:
    """Per file name, when each stretch of it starts and what it shows, where the split's ground truth says
    (``{split}_truth.json`` with ``segment_starts_s`` and ``segments``, as ``crashwatch synth`` writes for
    drives); empty otherwise. False alerts are then counted by what was on screen when they started."""
    path = data / f"{split}_truth.json"
    if not path.is_file():
        return {}
    truth = json.loads(path.read_text(encoding="utf-8"))
    return {name: (entry["segment_starts_s"], entry["segments"]) for name, entry in truth.items()
            if isinstance(entry, dict) and "segment_starts_s" in entry and "segments" in entry}


def segment_at(segments: tuple[list[float], list[str]], t: float) -> str:
    """What the segment playing at ``t`` shows."""
    starts, kinds = segments
    return kinds[max(bisect.bisect_right(starts, t) - 1, 0)]


def replay_eval(bundle: Path, data: Path, split: str, out: Path, stride: float | None = None,
                alert: dict[str, Any] | None = None, skip_bad: bool = False,
                warning_window: float = WARNING_WINDOW, budget: float = FALSE_ALERT_BUDGET) -> dict[str, Any]:
    clips = read_split(data, split, skip_bad)
    model = RiskModel(bundle)
    out.mkdir(parents=True, exist_ok=True)
    for folder in ("plots", "traces"):
        (out / folder).mkdir(exist_ok=True)
    segments = read_segments(data, split)
    rows, traces = [], []
    for number, clip in enumerate(clips, 1):
        monitor = replay_clip(model, clip.video, stride, alert or {})
        times, probabilities = [r["t"] for r in monitor.risks], [r["probability"] for r in monitor.risks]
        starts = [a for a in monitor.alerts if a["event"] == "start"]
        spans = [(a, min(b, clip.info.duration)) for a, b in alert_spans(monitor.alerts)]
        start_times = [a["start"] for a in starts]
        scored = score_alerts(start_times, clip.info.duration, clip.event_time, clip.label, warning_window)
        tta = scored["time_to_accident_s"]
        false_in = [segment_at(segments[clip.name], t) for t in false_alert_starts(
            start_times, clip.event_time, clip.label, warning_window)] if clip.name in segments else []
        rows.append({
            "file_name": clip.name, "label": clip.label, "event_time": clip.event_time,
            "duration_s": round(clip.info.duration, 3), "strides": monitor.stats.strides,
            "alerts": len(starts), "alert_fired": int(bool(starts)),
            "first_alert_s": starts[0]["start"] if starts else None, **scored,
            "max_probability": max(probabilities, default=None), "false_alerts_in": " ".join(false_in),
        })
        chart = risk_chart(times, probabilities, monitor.policy.on, spans, clip.event_time,
                           f"{clip.name} (label {clip.label})", t_end=clip.info.duration)
        cv2.imwrite(str(out / "plots" / f"{clip.video.stem}.png"), chart)
        _write_csv(out / "traces" / f"{clip.video.stem}.csv",
                   [{"t": round(t, 3), "probability": round(p, 5)} for t, p in zip(times, probabilities)],
                   ["t", "probability"])  # a clip shorter than the window has no stride: a header alone
        log.info("[%d/%d] %s: %d strides, %d alert(s)%s", number, len(clips), clip.name, monitor.stats.strides,
                 len(starts), "" if tta is None else f", time-to-accident {tta:.2f} s")
        traces.append((clip, times, probabilities))
    summary = _summarise(rows, model.manifest.threshold if not alert or "on" not in alert else alert["on"])
    summary.update({"bundle": str(bundle), "data": str(data), "split": split, "warning_window_s": warning_window})
    if segments:
        summary["false_alerts_by_segment"] = dict(collections.Counter(
            kind for row in rows for kind in row["false_alerts_in"].split()).most_common())
    curve = operating_curve(traces, {k: v for k, v in (alert or {}).items() if k != "on"}, warning_window)
    _write_csv(out / "operating_curve.csv", curve)
    summary["within_budget"] = within_budget(curve, budget)
    _write_csv(out / "replay_eval.csv", rows)
    (out / "replay_eval.json").write_text(json.dumps({"summary": summary, "clips": rows}, indent=2) + "\n",
                                          encoding="utf-8")
    return summary


def _write_csv(path: Path, rows: list[dict[str, Any]], fields: list[str] | None = None) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _summarise(rows: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    crashes = [r for r in rows if r["label"] == 1]
    timed = [r for r in crashes if r["event_time"] is not None]
    early = [r for r in timed if r["time_to_accident_s"] is not None and r["time_to_accident_s"] > 0]
    normal = [r for r in rows if r["label"] == 0]
    normal_hours = sum(r["normal_s"] for r in rows) / 3600
    false_alerts = sum(r["false_alerts"] for r in rows)
    return {
        "clips": len(rows), "threshold": threshold,
        "crash_clips": len(crashes), "crash_clips_alerted": sum(r["alert_fired"] for r in crashes),
        "crash_clips_with_event_time": len(timed),
        "alerted_before_collision": len(early),
        "alerted_before_collision_rate": (len(early) / len(timed)) if timed else None,
        "median_time_to_accident_s": statistics.median([r["time_to_accident_s"] for r in early]) if early else None,
        "normal_clips": len(normal), "normal_hours": normal_hours, "false_alerts": false_alerts,
        "false_alerts_per_hour": (false_alerts / normal_hours) if normal_hours else None,
    }


Trace = tuple[Clip, list[float], list[float]]  # a replayed clip, its stride times and probabilities


def operating_curve(traces: list[Trace], alert: dict[str, Any], warning_window: float = WARNING_WINDOW,
                    thresholds: list[float] = CURVE_THRESHOLDS) -> list[dict[str, Any]]:
    """Per threshold, what the replay would have scored with alerts starting there (the rest of the policy
    as given): warned crashes, median time-to-accident, false alerts per hour."""
    curve = []
    for threshold in thresholds:
        policy = AlertPolicy.around(threshold, **alert)
        rows = []
        for clip, times, probabilities in traces:
            starts = _alert_starts(policy, times, probabilities)
            rows.append({"label": clip.label, "event_time": clip.event_time, "alert_fired": int(bool(starts)),
                         **score_alerts(starts, clip.info.duration, clip.event_time, clip.label, warning_window)})
        s = _summarise(rows, threshold)
        curve.append({key: s[key] for key in ("threshold", "alerted_before_collision", "crash_clips_with_event_time",
                                              "alerted_before_collision_rate", "median_time_to_accident_s",
                                              "false_alerts", "false_alerts_per_hour")})
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
    return [event["start"] for t, p in zip(times, probabilities) for event in tracker.update(t, p)
            if event["event"] == "start"]
