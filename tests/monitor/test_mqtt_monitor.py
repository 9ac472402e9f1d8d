"""`crashwatch monitor --mqtt` end to end: a real monitor process, a real Mosquitto, a real ZeroMQ subscriber
and a real paho one. The transport's own cases (outages, bounds, bad brokers) are in ``test_mqtt.py``."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from crashwatch.bench.process import free_port
from crashwatch.cli import main
from tests.support.collector import Collector
from tests.support.media import write_video
from tests.support.mqtt_broker import Broker, Subscriber, need_mosquitto, wait_until
from tests.support.shared import REPO
from tests.support.timing import within

SECRET = "s3cret-Xk2"


def _monitor(bundle: Path, clip: Path, endpoint: str, url: str, outbox: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "crashwatch", "monitor", "--bundle", str(bundle), "--source",
                             str(clip), "--pub", endpoint, "--camera", "front", "--mqtt", url, "--mqtt-outbox",
                             str(outbox), "--alert-on", "0", *extra],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.timed
def test_mqtt_carries_what_zeromq_carries_and_availability_follows_the_process(tiny_bundle, tmp_path):
    need_mosquitto()
    broker = Broker(tmp_path / "broker", users={"fleet": SECRET}).start()
    subscriber = Subscriber(broker, username="fleet", password=SECRET)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    collector = Collector(endpoint)
    clip = write_video(tmp_path / "drive.mp4", 300, fps=15)  # 20 s in real time
    process = _monitor(tiny_bundle, clip, endpoint, f"mqtt://fleet:{SECRET}@127.0.0.1:{broker.port}",
                       tmp_path / "outbox.sqlite", "--alert-min-on", "2", "--mqtt-risk")
    try:
        subscriber.wait_for(lambda ms: any(m.topic == "crashwatch/front/alert" for m in ms), 30, "alert over MQTT")
        assert collector.wait_for(lambda c: c.of("alert"), 5)
        over_zmq = collector.of("alert")[0]
        over_mqtt = subscriber.on("crashwatch/front/alert")[0].payload
        assert over_mqtt["delivered_at"] >= over_mqtt["sent_at"]
        assert {k: v for k, v in over_mqtt.items() if k != "delivered_at"} == over_zmq  # the same message
        # Its explanation follows on its own topic, kept like the alert (QoS 1, the outbox).
        subscriber.wait_for(lambda ms: any(m.topic == "crashwatch/front/explanation" for m in ms), 10,
                            "the alert's explanation over MQTT")
        explanation = subscriber.on("crashwatch/front/explanation")[0].payload
        assert explanation["alert_id"] == over_mqtt["alert_id"] and explanation["state"] == "ready"
        assert explanation["delivered_at"] >= explanation["sent_at"]
        # Every 5 s at most; the very first heartbeat may come before the publisher (and its sinks) is set.
        subscriber.wait_for(lambda ms: any(m.topic == "crashwatch/front/status" and "sinks" in m.payload for m in ms),
                            12, "status naming the sink")
        status = subscriber.on("crashwatch/front/status")[-1]
        assert status.payload["sinks"]["mqtt"]["connected"] is True
        assert SECRET not in repr(status.payload) and "***@127.0.0.1" in status.payload["sinks"]["mqtt"]["broker"]
        assert subscriber.on("crashwatch/front/risk")
        assert [m.payload for m in subscriber.on("crashwatch/front/availability")][-1] == "online"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        killed = time.time()
        subscriber.wait_for(lambda ms: [m.payload for m in ms if m.topic.endswith("/availability")][-1:] == ["offline"],
                            15, "offline by the last will")
        late = Subscriber(broker, username="fleet", password=SECRET)  # retained: a newcomer sees both at once
        late.wait_for(lambda ms: {m.topic for m in ms} >= {"crashwatch/front/status", "crashwatch/front/availability"},
                      5, "retained status and availability")
        assert [m.payload for m in late.on("crashwatch/front/availability")] == ["offline"]
        late.close()
        assert time.time() - killed < within(15)
    finally:
        process.kill()
        collector.stop()
        subscriber.close()
        broker.stop()
    assert SECRET not in process.stderr.read()


def test_an_alert_raised_while_the_broker_is_down_survives_a_sigkill_and_arrives_after_the_restart(
        tiny_bundle, tmp_path):
    need_mosquitto()
    broker = Broker(tmp_path / "broker")  # not started: the broker is away
    url = f"mqtt://127.0.0.1:{broker.port}"
    outbox = tmp_path / "outbox.sqlite"
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    collector = Collector(endpoint, ("alert",))
    clip = write_video(tmp_path / "drive.mp4", 300, fps=15)
    process = _monitor(tiny_bundle, clip, endpoint, url, outbox, "--alert-min-on", "2")
    try:
        assert collector.wait_for(lambda c: c.of("alert"), 30), "no alert"
        raised = collector.of("alert")[0]
        queued = wait_until(lambda: [row for row in _rows(outbox) if row[0].endswith("/alert")] and _rows(outbox), 5,
                            "the alert in the outbox")
        # the alert, behind the warning level's changes that led to it (caution, then imminent): both wait on disk;
        # its explanation, made on its own thread after the alert is out, may already have joined them behind it
        topics = [row[0] for row in queued]
        alert = topics.index("crashwatch/front/alert")
        assert set(topics[:alert]) == {"crashwatch/front/level"}
        assert set(topics[alert + 1:]) <= {"crashwatch/front/explanation"}
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        process.kill()
        collector.stop()
    assert "connection refused" in process.stderr.read()  # said at start, and the monitor kept going
    broker.start()
    subscriber = Subscriber(broker)
    try:
        restart = _monitor(tiny_bundle, write_video(tmp_path / "short.mp4", 30, fps=15),
                           f"tcp://127.0.0.1:{free_port()}", url, outbox, "--replay", "fast")
        assert restart.wait(timeout=60) == 0, restart.stderr.read()
        alerts = subscriber.wait_for(lambda ms: any(m.topic.endswith("/alert") for m in ms), 10, "the old alert")
        first = next(m.payload for m in alerts if m.topic.endswith("/alert"))
        assert (first["seq"], first["sent_at"], first["event"]) == (raised["seq"], raised["sent_at"], "start")
        assert first["delivered_at"] > first["sent_at"]
        assert _rows(outbox) == []  # acknowledged, so gone
    finally:
        subscriber.close()
        broker.stop()


def _rows(outbox: Path) -> list[tuple]:
    if not outbox.exists():
        return []
    with sqlite3.connect(outbox) as db:
        return db.execute("SELECT topic FROM outbox ORDER BY id").fetchall()


def test_mqtt_options_without_a_broker_and_a_bad_url_are_clear(tiny_bundle, tmp_path):
    clip = write_video(tmp_path / "c.mp4", 20)
    result = CliRunner().invoke(main, ["monitor", "--source", str(clip), "--mqtt-risk"])
    assert result.exit_code == 2 and "need --mqtt URL" in result.output
    result = CliRunner().invoke(main, ["monitor", "--bundle", str(tiny_bundle), "--source", str(clip),
                                       "--mqtt", f"http://u:{SECRET}@host"])
    assert result.exit_code == 1 and "mqtt" in result.output and SECRET not in result.output
