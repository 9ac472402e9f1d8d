"""``crashwatch replay-eval``: every clip of a split replayed as a stream through the monitor itself.

Per clip: whether an alert fired, time-to-accident (event time minus the first alert's start, for crash clips
with ``event_time``; positive means the warning came first), alerts on normal clips (false alerts), and a
risk-over-time PNG. Overall: detection rate, median time-to-accident, false alerts per hour.
"""

from __future__ import annotations

import csv
import json
import logging
import statistics
from pathlib import Path
from typing import Any

import cv2

from monitor.annotate import alert_spans
from monitor.bundle import RiskModel
from monitor.plot import risk_chart
from monitor.publisher import Publisher
from monitor.run import Monitor, MonitorOptions
from monitor.source import SourceSpec
from train.data import read_split

log = logging.getLogger(__name__)


def replay_clip(model: RiskModel, video: Path, stride: float | None, alert: dict[str, Any]) -> Monitor:
    """Replay one file as fast as inference allows, publishing on an in-process endpoint nobody reads."""
    options = MonitorOptions(source=SourceSpec("file", str(video), str(video)), replay="fast", camera=video.name,
                             stride=stride, alert=dict(alert))
    endpoint = f"inproc://replay-{id(options)}"
    monitor = Monitor(model, options, lambda status: Publisher(endpoint, video.name, status=None))
    monitor.run()
    return monitor


def replay_eval(bundle: Path, data: Path, split: str, out: Path, stride: float | None = None,
                alert: dict[str, Any] | None = None, skip_bad: bool = False) -> dict[str, Any]:
    clips = read_split(data, split, skip_bad)
    model = RiskModel(bundle)
    out.mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(exist_ok=True)
    rows = []
    for number, clip in enumerate(clips, 1):
        monitor = replay_clip(model, clip.video, stride, alert or {})
        starts = [a for a in monitor.alerts if a["event"] == "start"]
        spans = [(a, min(b, clip.info.duration)) for a, b in alert_spans(monitor.alerts)]
        first = starts[0]["start"] if starts else None
        tta = (clip.event_time - first) if (first is not None and clip.event_time is not None) else None
        rows.append({
            "file_name": clip.name, "label": clip.label, "event_time": clip.event_time,
            "duration_s": round(clip.info.duration, 3), "strides": monitor.stats.strides,
            "alerts": len(starts), "alert_fired": int(bool(starts)), "first_alert_s": first,
            "time_to_accident_s": tta, "max_probability": max((r["probability"] for r in monitor.risks), default=None),
        })
        chart = risk_chart([r["t"] for r in monitor.risks], [r["probability"] for r in monitor.risks],
                           monitor.policy.on, spans, clip.event_time, f"{clip.name} (label {clip.label})",
                           t_end=clip.info.duration)
        cv2.imwrite(str(out / "plots" / f"{clip.video.stem}.png"), chart)
        log.info("[%d/%d] %s: %d strides, %d alert(s)%s", number, len(clips), clip.name, monitor.stats.strides,
                 len(starts), "" if tta is None else f", time-to-accident {tta:.2f} s")
    summary = _summarise(rows, model.manifest.threshold if not alert or "on" not in alert else alert["on"])
    summary.update({"bundle": str(bundle), "data": str(data), "split": split})
    with (out / "replay_eval.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "replay_eval.json").write_text(json.dumps({"summary": summary, "clips": rows}, indent=2) + "\n",
                                          encoding="utf-8")
    return summary


def _summarise(rows: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    crashes = [r for r in rows if r["label"] == 1]
    timed = [r for r in crashes if r["event_time"] is not None]
    early = [r for r in timed if r["time_to_accident_s"] is not None and r["time_to_accident_s"] > 0]
    normal = [r for r in rows if r["label"] == 0]
    normal_hours = sum(r["duration_s"] for r in normal) / 3600
    false_alerts = sum(r["alerts"] for r in normal)
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
