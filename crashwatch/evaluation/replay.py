"""``crashwatch replay-eval``: every clip of a split replayed as a stream through the monitor itself.

Per clip: whether an alert fired, the warning and time-to-accident for crash clips with ``event_time``
(``scoring``), false alerts, a risk-over-time PNG and the probability of every stride (``traces/NAME.csv``,
to study alerts and compute metrics without replaying again), and each alert's explanation
(``explanations.csv``, a picture each in ``explanations/``). Overall: detection rate, median
time-to-accident, false alerts per hour of driving with no collision ahead, the operating curve over other
thresholds (``curve``), the explanations' pointing game where clips have road-user boxes (``pointing``), and
the field's metrics beside the project's (``field``: ``metrics.json``, ``metrics.csv``).
"""

from __future__ import annotations

import collections
import csv
import json
import logging
from pathlib import Path
from typing import Any

import cv2

from crashwatch.contract.dataset import read_split
from crashwatch.contract.sidecars import boxes_path, read_boxes, read_truth, segments_of
from crashwatch.evaluation.curve import Trace, caution_point, operating_curve, within_budget
from crashwatch.evaluation.explained import explanation_card
from crashwatch.evaluation.field import field_metrics, write_metrics
from crashwatch.evaluation.plot import risk_chart
from crashwatch.evaluation.pointing import explanation_rows, pointing_summary
from crashwatch.evaluation.scoring import (
    FALSE_ALERT_BUDGET,
    MIN_NORMAL_HOURS,
    WARNING_WINDOW,
    false_alert_starts,
    score_alerts,
    summarise,
)
from crashwatch.evaluation.traces import REPORT, TRACES, trace_path, write_trace, written
from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.messages import CollectingOutlet, Explanation
from crashwatch.monitor.pipeline.alerts import alert_spans, alert_starts
from crashwatch.monitor.pipeline.camera import Monitor
from crashwatch.monitor.pipeline.options import MonitorOptions
from crashwatch.monitor.pipeline.source import SourceSpec

log = logging.getLogger(__name__)


def replay_clip(model: RiskModel, video: Path, stride: float | None,
                alert_on: float | None) -> tuple[Monitor, list[Explanation]]:
    """Replay one file as fast as inference allows; its messages are kept in the process (``Monitor.risks`` and
    ``Monitor.alerts``, and the alerts' explanations returned beside it), not sent."""
    options = MonitorOptions(source=SourceSpec("file", str(video), str(video)), replay="fast", camera=video.name,
                             stride=stride, alert_on=alert_on)
    outlet = CollectingOutlet()
    monitor = Monitor(model, options, lambda status: outlet)
    monitor.run()
    return monitor, [body for body in outlet.bodies if isinstance(body, Explanation)]


def replay_eval(bundle: Path, data: Path, split: str, out: Path, stride: float | None = None,
                alert_on: float | None = None, skip_bad: bool = False,
                warning_window: float = WARNING_WINDOW, budget: float = FALSE_ALERT_BUDGET,
                min_normal_hours: float = MIN_NORMAL_HOURS, runtime: str = "auto",
                confidence: float | None = None) -> dict[str, Any]:
    """Replay every clip of the split, write the report, and return its summary, with the field's metrics under
    ``field``. ``within_budget`` is the threshold recommended for ``budget``, None when none keeps within it or
    when the split holds less than ``min_normal_hours`` of normal driving (``withheld`` then says why);
    ``cautions`` what the caution level did at the thresholds the replay ran at (``curve.caution_point``)."""
    clips = read_split(data, split, skip_bad)
    model = RiskModel.open(bundle, runtime=runtime)
    out.mkdir(parents=True, exist_ok=True)
    for folder in ("plots", TRACES, "explanations"):
        (out / folder).mkdir(exist_ok=True)
    segments = segments_of(read_truth(data, split))
    rows, traces, explained, monitor = [], [], [], None
    for number, clip in enumerate(clips, 1):
        monitor, explanations = replay_clip(model, clip.video, stride, alert_on)
        times, probabilities = [r.t for r in monitor.risks], [r.probability for r in monitor.risks]
        start_times = alert_starts(monitor.alerts)
        spans = [(a, min(b, clip.info.duration)) for a, b in alert_spans(monitor.alerts)]
        scored = score_alerts(start_times, clip.info.duration, clip.event_time, clip.label, warning_window)
        tta = scored["time_to_accident_s"]
        false_in = [segments[clip.name].at(t) for t in false_alert_starts(
            start_times, clip.event_time, clip.label, warning_window)] if clip.name in segments else []
        rows.append({
            "file_name": clip.name, "label": clip.label, "event_time": clip.event_time,
            "duration_s": round(clip.info.duration, 3), "strides": monitor.stats.strides,
            "alerts": len(start_times), "alert_fired": int(bool(start_times)),
            "first_alert_s": start_times[0] if start_times else None, **scored,
            "max_probability": max(probabilities, default=None), "false_alerts_in": " ".join(false_in),
        })
        boxes = read_boxes(boxes_path(clip.video)) if boxes_path(clip.video).is_file() else None
        explained += explanation_rows(clip.name, explanations, boxes,
                                      [] if scored["warning_s"] is None else [scored["warning_s"]])
        for e in explanations:
            card = explanation_card(e)
            if card is not None:
                cv2.imwrite(str(out / "explanations" / f"{clip.video.stem}-alert{e.alert_id}-{e.event}.png"), card)
        chart = risk_chart(times, probabilities, monitor.policy.on, spans, clip.event_time,
                           f"{clip.name} (label {clip.label})", t_end=clip.info.duration)
        cv2.imwrite(str(out / "plots" / f"{clip.video.stem}.png"), chart)
        write_trace(trace_path(out, clip.name), times, probabilities)
        log.info("[%d/%d] %s: %d strides, %d alert(s)%s", number, len(clips), clip.name, monitor.stats.strides,
                 len(start_times), "" if tta is None else f", time-to-accident {tta:.2f} s")
        traces.append(Trace(clip.name, clip.label, clip.event_time, clip.info.duration,
                            *written(times, probabilities)))
    summary = summarise(rows, model.manifest.threshold if alert_on is None else alert_on)
    summary.update({"bundle": str(bundle), "data": str(data), "split": split, "warning_window_s": warning_window,
                    "runtime": model.engine.runtime.value, "inference_precision": model.engine.inference_precision})
    if segments:
        summary["false_alerts_by_segment"] = dict(collections.Counter(
            kind for row in rows for kind in row["false_alerts_in"].split()).most_common())
    if monitor is not None:
        summary["cautions"] = caution_point(traces, monitor.policy, monitor.levels.policy, warning_window)
    curve = operating_curve(traces, {}, warning_window)
    write_csv(out / "operating_curve.csv", curve)
    summary["within_budget"] = within_budget(curve, budget, confidence)
    summary["confidence"] = confidence
    if summary["normal_hours"] < min_normal_hours:
        summary["within_budget"] = None
        summary["withheld"] = (f"{summary['normal_hours'] * 60:.1f} min of normal driving, under the "
                               f"{min_normal_hours * 60:.0f} min a false-alert rate needs to set a threshold by")
    write_csv(out / "replay_eval.csv", rows)
    summary["pointing"] = pointing_summary(explained)
    if explained:
        write_csv(out / "explanations.csv", explained)
    (out / REPORT).write_text(json.dumps({"summary": summary, "clips": rows}, indent=2) + "\n", encoding="utf-8")
    metrics = field_metrics(traces, summary["threshold"], budget, warning_window, min_normal_hours=min_normal_hours)
    write_metrics(out, metrics)
    return {**summary, "field": metrics}


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
