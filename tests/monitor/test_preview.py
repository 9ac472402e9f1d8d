"""The ``preview`` topic: a small JPEG of the newest frame at most
twice a second from a real monitor replaying a real file, only when asked for, never forwarded to MQTT."""

from __future__ import annotations

import base64
import json

import cv2
import numpy as np
import pytest

from crashwatch.bench.process import free_port
from crashwatch.contract.config import ConfigError
from crashwatch.demo import DEMO_BUNDLE
from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.messages import Message, Preview, Topic, envelope
from crashwatch.monitor.pipeline.camera import Monitor
from crashwatch.monitor.pipeline.options import MonitorOptions
from crashwatch.monitor.pipeline.preview import PREVIEW_PERIOD_S, PREVIEW_WIDTH
from crashwatch.monitor.pipeline.source import parse_source
from crashwatch.monitor.serving.cameras import load_cameras
from crashwatch.monitor.transports.mqtt import MqttSink
from crashwatch.monitor.transports.mqtt_target import MqttTarget
from crashwatch.monitor.transports.outbox import Outbox
from crashwatch.monitor.transports.subscribe import describe
from crashwatch.monitor.transports.zeromq import Publisher
from tests.support.collector import Collector
from tests.support.media import write_video


def _run(clip, preview: bool, replay: str) -> list[dict]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    collector = Collector(endpoint)
    monitor = Monitor(RiskModel.open(DEMO_BUNDLE), MonitorOptions(source=parse_source(str(clip)), replay=replay,
                                                             camera="front", preview=preview),
                      lambda status: Publisher(endpoint, "front", status=status))
    collector.wait_for(lambda c: False, 0.3)  # the subscription settles before the first frame
    monitor.run()
    collector.wait_for(lambda c: c.of("status") and c.of("status")[-1]["source"]["state"] == "ended", 3)
    collector.stop()
    assert collector.of("risk"), "the monitor published no risk"
    return collector.of("preview")


def test_previews_come_at_most_twice_a_second_small_and_decodable(tmp_path):
    clip = write_video(tmp_path / "wide.mp4", 40, fps=10, size=(640, 360))  # 4 s in real time
    previews = _run(clip, preview=True, replay="realtime")
    assert 6 <= len(previews) <= 9, len(previews)
    captured = [p["captured_at"] for p in previews]
    assert min(b - a for a, b in zip(captured, captured[1:])) >= PREVIEW_PERIOD_S - 0.05
    assert [p["frame_id"] for p in previews] == sorted({p["frame_id"] for p in previews})
    for wire in previews:
        preview = Message.decode(b"preview", json.dumps(wire).encode()).body
        assert isinstance(preview, Preview) and (preview.width, preview.height) == (PREVIEW_WIDTH, 180)
        image = cv2.imdecode(np.frombuffer(base64.b64decode(preview.jpeg), np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (180, PREVIEW_WIDTH, 3)
        assert len(preview.jpeg) < 40_000  # small: a few kB a frame
    line = describe(Message.decode(b"preview", json.dumps(previews[0]).encode()))
    assert "preview" in line and "320x180" in line and previews[0]["jpeg"] not in line


def test_no_previews_unless_asked_for(tmp_path):
    clip = write_video(tmp_path / "c.mp4", 30, fps=10)
    assert _run(clip, preview=False, replay="fast") == []


def test_mqtt_does_not_carry_previews(tmp_path):
    sink = MqttSink(MqttTarget.parse(f"mqtt://127.0.0.1:{free_port()}"), "front", outbox_path=tmp_path / "o.db")
    try:
        body = Preview(frame_id=1, t=0.1, captured_at=1.0, width=2, height=2, jpeg="AAAA").to_wire()
        sink.send(Topic.PREVIEW, envelope(Topic.PREVIEW, 1, "front", body))
        sink.send(Topic.ALERT, envelope(Topic.ALERT, 1, "front", {"event": "start"}))
    finally:
        sink.close(timeout=0.1)
    rows = Outbox(tmp_path / "o.db").peek(10)  # the sink's own outbox, once it let go of it
    assert [row.topic for row in rows] == ["crashwatch/front/alert"]


def test_the_cameras_file_takes_preview_per_camera(tmp_path):
    clip = write_video(tmp_path / "c.mp4", 10)
    path = tmp_path / "cameras.yaml"
    path.write_text(f"cameras:\n  - {{name: a, source: {clip}, preview: true}}\n  - {{name: b, source: {clip}}}\n")
    assert [o.preview for o in load_cameras(path).options()] == [True, False]
    path.write_text(f"cameras:\n  - {{name: a, source: {clip}, preview: yes}}\n")
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.preview: must be true or false"):
        load_cameras(path)
