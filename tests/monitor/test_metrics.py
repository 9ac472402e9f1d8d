"""Prometheus metrics scraped over HTTP and read with prometheus-client's own text parser, while a monitor
replays real video: what they say agrees with what a subscriber received."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from crashwatch.bench.process import free_port
from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.pipeline.options import MonitorOptions
from crashwatch.monitor.pipeline.source import parse_source
from crashwatch.monitor.serving.run import run_cameras
from crashwatch.monitor.transports.metrics import Metrics, MetricsError
from tests.support.media import write_video
from tests.support.shared import REPO


def scrape(url: str) -> dict[str, dict[tuple, float]]:
    """Every sample by name, keyed by its labels, parsed as Prometheus parses it."""
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


class Kept:
    """A further transport that keeps what it is given: every message each camera published, in order."""

    name = "kept"
    messages: list[tuple[str, dict]] = []

    def __init__(self, camera: str) -> None:
        self.camera = camera

    def send(self, topic, message) -> None:
        self.messages.append((topic.value, dict(message)))

    def status(self) -> dict:
        return {}

    def close(self) -> None:
        pass


def test_metrics_agree_with_what_the_cameras_published(tiny_bundle, tmp_path):
    clips = [write_video(tmp_path / f"{name}.mp4", 60) for name in ("front", "rear")]
    cameras = [MonitorOptions(source=parse_source(str(clip)), camera=clip.stem, replay="fast", alert_on=0.0,
                              alert_off=0.0, events_dir=tmp_path / "events", events_hold="memory")
               for clip in clips]
    endpoint, metrics = f"tcp://127.0.0.1:{free_port()}", Metrics()
    url = metrics.serve(f"127.0.0.1:{free_port()}")
    Kept.messages = []
    try:
        summaries = run_cameras(RiskModel.open(tiny_bundle), cameras, endpoint, sinks=[Kept], metrics=metrics)
        samples = scrape(url)
    finally:
        metrics.close()
    for name, summary in summaries.items():
        camera = (("camera", name),)
        risks = [m for topic, m in Kept.messages if topic == "risk" and m["camera"] == name]
        statuses = [m for topic, m in Kept.messages if topic == "status" and m["camera"] == name]
        assert samples["crashwatch_strides_total"][camera] == summary["strides"] > 0
        assert samples["crashwatch_frames_captured_total"][camera] == summary["frames"] == 60
        assert samples["crashwatch_alerts_total"][camera] == summary["alerts"] == 1
        raised = [m["level"] for topic, m in Kept.messages if topic == "level" and m["camera"] == name
                  and m["previous"] == "none"]
        assert raised == ["imminent"]  # threshold 0: the alert from the first stride, no caution before it
        assert samples["crashwatch_warnings_total"][(("camera", name), ("level", "imminent"))] == 1
        assert samples["crashwatch_warnings_total"][(("camera", name), ("level", "caution"))] == 0
        assert samples["crashwatch_risk_latency_seconds_count"][camera] == summary["strides"]
        assert samples["crashwatch_risk_latency_seconds_sum"][camera] == pytest.approx(
            sum(r["latency_ms"] for r in risks) / 1000, rel=1e-6)
        assert samples["crashwatch_model_seconds_count"][(("camera", name), ("stage", "encode"))] == summary["strides"]
        assert samples["crashwatch_risk_probability"][camera] == risks[-1]["probability"]
        assert samples["crashwatch_source_online"][camera] == 0  # its file ended
        assert samples["crashwatch_events_written_total"][camera] >= 1
        explained = [m for topic, m in Kept.messages if topic == "explanation" and m["camera"] == name]
        assert [m["state"] for m in explained] == ["ready"]  # the alert's start, explained on the shared model
        assert samples["crashwatch_explanations_total"][(("camera", name), ("state", "done"))] == 1
        (info,) = [dict(k) for k in samples["crashwatch_model_info"] if dict(k)["camera"] == name]
        assert info["hash"] == statuses[-1]["model"]["hash"]
    assert samples["crashwatch_batch_calls_total"][(("graph", "vision"),)] > 0  # two cameras: shared graphs
    assert samples["process_resident_memory_bytes"][()] > 10e6


def test_the_monitor_command_serves_metrics_while_it_runs_and_refuses_a_taken_port(tiny_bundle, tmp_path):
    clip = write_video(tmp_path / "c.mp4", 300)
    port = free_port()
    monitor = subprocess.Popen([sys.executable, "-m", "crashwatch", "monitor", "--bundle", str(tiny_bundle),
                                "--source", str(clip), "--camera", "cab", "--pub", f"tcp://127.0.0.1:{free_port()}",
                                "--metrics", f"127.0.0.1:{port}"], cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        deadline, samples = time.monotonic() + 60, {}
        while time.monotonic() < deadline and not samples.get("crashwatch_strides_total"):
            try:
                samples = scrape(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                pass
            time.sleep(0.3)
        assert samples["crashwatch_strides_total"][(("camera", "cab"),)] >= 1
        assert samples["crashwatch_source_online"][(("camera", "cab"),)] == 1
        taken = subprocess.run([sys.executable, "-m", "crashwatch", "monitor", "--bundle", str(tiny_bundle),
                                "--source", str(clip), "--pub", f"tcp://127.0.0.1:{free_port()}",
                                "--metrics", f"127.0.0.1:{port}"], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert taken.returncode == 1 and f"--metrics 127.0.0.1:{port}: cannot serve metrics there" in taken.stderr
    finally:
        monitor.terminate()
        monitor.wait(timeout=10)
    bad = subprocess.run([sys.executable, "-m", "crashwatch", "monitor", "--source", str(clip), "--metrics", "9108"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--metrics" in bad.stderr and "give HOST:PORT" in bad.stderr


def test_a_metrics_address_that_cannot_be_served_is_named():
    with pytest.raises(MetricsError, match="--metrics 256.1.1.1:9108: cannot serve metrics there"):
        Metrics().serve("256.1.1.1:9108")
