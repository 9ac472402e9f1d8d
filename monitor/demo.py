"""The embedded default: a demo bundle and a generated drive shipped inside the package.

The demo model was trained on `crashwatch synth` scenes only. It shows the whole pipeline working on a
machine with nothing else; it is not a model for real roads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2

from monitor.annotate import alert_spans, annotate_video
from monitor.bundle import BundleError
from monitor.plot import risk_chart
from monitor.replay_eval import score_alerts

DEMO_DIR = Path(__file__).resolve().parent / "demo"
DEMO_BUNDLE = DEMO_DIR / "bundle"
DEMO_DRIVE = DEMO_DIR / "drive.mp4"
DEMO_TRUTH = DEMO_DIR / "drive.json"
NOTICE = ("using the demo bundle: trained on generated scenes (crashwatch synth), not a road-ready model; "
          "see README, 'Real roads'")


def demo_bundle() -> Path:
    if not (DEMO_BUNDLE / "manifest.json").is_file():
        raise BundleError(f"{DEMO_BUNDLE}: the demo bundle is not installed here (build it with `make demo-model`)")
    return DEMO_BUNDLE


def demo_event_time() -> float | None:
    """Seconds into the shipped drive at which its collision happens."""
    return json.loads(DEMO_TRUTH.read_text(encoding="utf-8")).get("event_time")


def write_report(out: Path, risks: list[dict[str, Any]], alerts: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """The annotated video and the risk chart of a demo run; returns their paths, the warning time (an alert
    within ``replay_eval.WARNING_WINDOW`` before the collision, as replay-eval scores it) and the false alerts."""
    out.mkdir(parents=True, exist_ok=True)
    event = demo_event_time()
    video = annotate_video(DEMO_DRIVE, out / "demo_annotated.mp4", risks, alerts, threshold, event)
    chart = out / "demo_risk.png"
    spans = alert_spans(alerts)
    end = risks[-1]["t"] if risks else 0.0
    cv2.imwrite(str(chart), risk_chart([r["t"] for r in risks], [r["probability"] for r in risks], threshold,
                                       [(a, min(b, end)) for a, b in spans], event, "demo drive: risk over time",
                                       size=(900, 320), t_end=end))
    starts = [a["start"] for a in alerts if a["event"] == "start"]
    scored = score_alerts(starts, end, event, label=1)
    return {"video": video, "chart": chart, "event_time": event, "warning_s": scored["time_to_accident_s"],
            "false_alerts": scored["false_alerts"], "alerts": len(starts)}
