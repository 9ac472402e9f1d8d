"""``crashwatch demo``: the monitor on the shipped demo drive, with a subscriber printing what it says, then
an annotated video and a risk chart.

The demo bundle and drive lie in ``crashwatch/assets/demo`` (its README says how they were made). The demo
model was trained on ``crashwatch synth`` scenes only: it shows the whole pipeline working on a machine with
nothing else; it is not a model for real roads.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2

from crashwatch.contract.bundle import MANIFEST, Manifest
from crashwatch.contract.errors import CrashwatchError
from crashwatch.evaluation.annotate import annotate_video
from crashwatch.evaluation.plot import risk_chart
from crashwatch.evaluation.scoring import WARNING_WINDOW, score_alerts
from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.messages import Alert, Explanation, Risk, Topic
from crashwatch.monitor.pipeline.alerts import alert_spans, alert_starts
from crashwatch.monitor.pipeline.camera import Monitor
from crashwatch.monitor.pipeline.options import MonitorOptions
from crashwatch.monitor.pipeline.source import SourceSpec
from crashwatch.monitor.serving.signals import stop_on_signals
from crashwatch.monitor.transports.subscribe import Subscriber, describe
from crashwatch.monitor.transports.zeromq import Publisher

ASSETS = Path(__file__).resolve().parent / "assets" / "demo"
DEMO_BUNDLE = ASSETS / "bundle"
DEMO_DRIVE = ASSETS / "drive.mp4"
DEMO_TRUTH = ASSETS / "drive.json"
NOTICE = ("using the demo bundle: trained on generated scenes (crashwatch synth), not a road-ready model; "
          "see docs/data.md, 'Real roads'")


class DemoError(CrashwatchError):
    """The demo cannot run here (its bundle is not installed, or the monitor's messages do not arrive)."""


def demo_bundle() -> Path:
    if not (DEMO_BUNDLE / MANIFEST).is_file():
        raise DemoError(f"{DEMO_BUNDLE}: the demo bundle is not installed here (build it with `make demo-model`)")
    return DEMO_BUNDLE


def is_demo_model(manifest: Manifest) -> bool:
    """Whether ``manifest`` describes the demo model (by content, whatever the folder is called, and whether the
    bundle is local or a Triton server's)."""
    return (DEMO_BUNDLE / MANIFEST).is_file() and manifest.content_hash == Manifest.read(DEMO_BUNDLE).content_hash


def demo_event_time() -> float | None:
    """Seconds into the shipped drive at which its collision happens."""
    return json.loads(DEMO_TRUTH.read_text(encoding="utf-8")).get("event_time")


def run_demo(out: Path, endpoint: str, fast: bool, say: Callable[[str], None]) -> None:
    """Replay the demo drive through the monitor (real time unless ``fast``), ``say`` each risk and alert a
    subscriber receives, then write the report and ``say`` how early the alert came."""
    model = RiskModel.open(demo_bundle())
    say(NOTICE)
    stop = stop_on_signals()
    options = MonitorOptions(source=SourceSpec("file", str(DEMO_DRIVE), DEMO_DRIVE.name), camera="demo",
                             events_dir=out / "events", replay="fast" if fast else "realtime", demo_model=True)
    subscriber = Subscriber(endpoint)
    monitor = Monitor(model, options, lambda status: Publisher(endpoint, "demo", status=status), stop=stop)
    if subscriber.receive(timeout=3) is None:  # the first heartbeat: the subscription is live
        raise DemoError(f"{endpoint}: the subscriber received nothing from the monitor")
    finished = threading.Event()
    explanations: list[Explanation] = []

    def show() -> None:
        while True:
            message = subscriber.receive(timeout=0.2)
            if message is None:
                if finished.is_set():  # the monitor has stopped and nothing more is coming
                    return
            elif message.topic in (Topic.RISK.value, Topic.ALERT.value, Topic.EXPLANATION.value):
                say(describe(message))
                if isinstance(message.body, Explanation):
                    explanations.append(message.body)

    printer = threading.Thread(target=show, daemon=True)
    say(f"replaying {DEMO_DRIVE.name} {'fast' if fast else 'in real time'}; risk every {monitor.stride:.1f} s "
        "of video (Ctrl-C stops)")
    printer.start()
    monitor.run()
    finished.set()
    printer.join(timeout=2)
    subscriber.close()
    report = write_report(out, monitor.risks, monitor.alerts, monitor.policy.on, explanations)
    if report["warning_s"] is not None:
        say(f"the alert came {report['warning_s']:.1f} s before the collision at {report['event_time']:.1f} s")
    elif report["event_time"] is not None and not stop.is_set():
        say(f"no alert in the {WARNING_WINDOW:.0f} s before the collision at {report['event_time']:.1f} s")
    say(f"false alerts before that: {report['false_alerts']}")
    say(f"annotated video: {report['video']}")
    say(f"risk chart:      {report['chart']}")


def write_report(out: Path, risks: list[Risk], alerts: list[Alert], threshold: float,
                 explanations: Sequence[Explanation] = ()) -> dict[str, Any]:
    """The annotated video (with the alerts' explanations) and the risk chart of a demo run; returns their
    paths, the warning time (an alert within ``WARNING_WINDOW`` before the collision, as replay-eval scores it)
    and the false alerts."""
    out.mkdir(parents=True, exist_ok=True)
    event = demo_event_time()
    video = annotate_video(DEMO_DRIVE, out / "demo_annotated.mp4", risks, alerts, threshold, event,
                           explanations=explanations)
    chart = out / "demo_risk.png"
    spans = alert_spans(alerts)
    end = risks[-1].t if risks else 0.0
    cv2.imwrite(str(chart), risk_chart([r.t for r in risks], [r.probability for r in risks], threshold,
                                       [(a, min(b, end)) for a, b in spans], event, "demo drive: risk over time",
                                       size=(900, 320), t_end=end))
    starts = alert_starts(alerts)
    scored = score_alerts(starts, end, event, label=1)
    return {"video": video, "chart": chart, "event_time": event, "warning_s": scored["time_to_accident_s"],
            "false_alerts": scored["false_alerts"], "alerts": len(starts)}
