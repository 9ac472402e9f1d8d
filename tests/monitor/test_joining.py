"""Subscribers that join at any time: the current state at once, marked as a replay, and every loss named.

ZeroMQ drops what a publisher sends before a new subscription reaches it (the "slow joiner"); a subscriber
waiting for a monitor to start lost the monitor's first alert before the publisher kept a last-value cache.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

import zmq

from crashwatch.bench.process import free_port
from crashwatch.monitor.messages import Alert, AlertEvent, Message, Status, Topic, envelope
from crashwatch.monitor.transports.subscribe import Subscriber, describe
from crashwatch.monitor.transports.zeromq import Publisher
from tests.support.media import write_video
from tests.support.shared import REPO


def _until(subscriber: Subscriber, predicate, timeout: float) -> list[Message]:
    """Every message received until one satisfies ``predicate`` (that one included) or ``timeout`` passes."""
    received, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = subscriber.receive(timeout=0.1)
        if message is not None:
            received.append(message)
            if predicate(message):
                break
    return received


def _status(state: str = "live") -> Status:
    source = {"kind": "file", "name": "x", "state": state}
    return Status(source=source, capture_fps=0.0, frames_captured=0, frames_dropped=0, strides=0, strides_skipped=0,
                  stride_s=0.5, lag_s=None, model_ms=None, alert_active=False)


def _alert(event: AlertEvent, alert_id: int, t: float) -> Alert:
    ended = {"duration": t - 1.0, "reason": "risk subsided"} if event is AlertEvent.END else {}
    return Alert(event=event, alert_id=alert_id, start=1.0, t=t, probability=0.9, peak=0.9, peak_at=1.0,
                 threshold=0.5, **ended)


def test_a_subscriber_waiting_before_the_monitor_starts_receives_its_first_alert(tiny_bundle, tmp_path):
    clip = write_video(tmp_path / "short.mp4", 40)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    subscriber = Subscriber(endpoint)  # waiting before anything is bound there
    monitor = subprocess.Popen(
        [sys.executable, "-m", "crashwatch", "monitor", "--bundle", str(tiny_bundle), "--source", str(clip),
         "--camera", "cam", "--pub", endpoint, "--replay", "realtime", "--alert-on", "0", "--alert-off", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        received = _until(subscriber, lambda m: m.topic == "status" and m.wire["source"]["state"] == "ended", 60)
    finally:
        output = monitor.communicate(timeout=30)[0]
        subscriber.close()
    alerts = [m for m in received if m.topic == "alert"]
    assert [(m.body.event, m.body.alert_id) for m in alerts] == [(AlertEvent.START, 1), (AlertEvent.END, 1)], \
        (alerts, output)
    assert "cam/alert" not in subscriber.gaps and all(m.missed == 0 for m in alerts)


def test_a_late_subscriber_gets_the_newest_status_and_open_alerts_at_once_marked_replay():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    publisher = Publisher(endpoint, period=3600)  # no heartbeat: what arrives is the cache's
    front, rear = publisher.channel("front"), publisher.channel("rear")
    early = Subscriber(endpoint)
    front.publish(_status("reconnecting"))
    assert _until(early, lambda m: True, 5), "the early subscriber never connected"
    front.publish(_status())
    rear.publish(_status())
    front.publish(_alert(AlertEvent.START, 1, 1.0))
    front.publish(_alert(AlertEvent.UPDATE, 1, 2.0))
    front.publish(_alert(AlertEvent.UPDATE, 1, 3.0))
    rear.publish(_alert(AlertEvent.START, 1, 1.0))
    rear.publish(_alert(AlertEvent.END, 1, 4.0))  # ended: not the current state
    assert len(_until(early, lambda m: m.camera == "rear" and m.topic == "alert" and m.seq == 2, 5)) == 7
    try:
        late = Subscriber(endpoint)
        joined = _until(late, lambda m: m.topic == "alert" and m.body.t == 3.0, 5)
        assert all(m.replay for m in joined) and all(m.missed == 0 for m in joined)
        summary = sorted((m.camera, m.topic, m.seq) for m in joined)
        assert summary == [("front", "alert", 1), ("front", "alert", 3), ("front", "status", 2),
                           ("rear", "status", 1)], summary
        assert "(replay)" in describe(joined[0])
        assert early.receive(timeout=0.5) is None, "the replay's copies reached a reader that had them"

        alerts_only = Subscriber(endpoint, ("alert",))
        assert {m.topic for m in _until(alerts_only, lambda m: m.body.t == 3.0, 5)} == {"alert"}
        front.publish(_alert(AlertEvent.END, 1, 5.0))
        (end,) = _until(alerts_only, lambda m: True, 5)
        assert (end.body.event, end.replay, end.missed) == (AlertEvent.END, False, 0)
        alerts_only.close()
    finally:
        publisher.close(final_status=False)
        early.close()


def test_lost_messages_are_reported_per_camera_and_topic():
    context = zmq.Context.instance()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    raw = context.socket(zmq.PUB)  # a hand-made publisher: it can skip seqs, as a full queue does
    raw.bind(endpoint)
    subscriber = Subscriber(endpoint, context=context)

    def send(topic: Topic, seq: int, camera: str, body, **header) -> None:
        raw.send_multipart([topic.value.encode(), json.dumps({**envelope(topic, seq, camera, body.to_wire()),
                                                               **header}).encode()])
    try:
        deadline = time.monotonic() + 5
        while subscriber.receive(timeout=0.1) is None and time.monotonic() < deadline:  # the slow joiner
            send(Topic.STATUS, 1, "probe", _status())
        send(Topic.STATUS, 10, "front", _status())
        send(Topic.STATUS, 11, "front", _status())
        send(Topic.STATUS, 14, "front", _status())  # 12 and 13 lost
        send(Topic.STATUS, 5, "rear", _status())  # another camera's seq is its own
        send(Topic.ALERT, 7, "front", _alert(AlertEvent.END, 3, 9.0))  # an end whose start never came
        send(Topic.STATUS, 1, "front", _status())  # the monitor restarted: not a loss
        send(Topic.STATUS, 1, "front", _status(), replay=True)  # a copy of what is here
        send(Topic.STATUS, 2, "front", _status())
        received = _until(subscriber, lambda m: m.camera == "front" and m.seq == 2, 5)
        received = [m for m in received if m.camera != "probe"]
        assert [(m.camera, m.topic, m.seq, m.missed) for m in received] == [
            ("front", "status", 10, 0), ("front", "status", 11, 0), ("front", "status", 14, 2),
            ("rear", "status", 5, 0), ("front", "alert", 7, 1), ("front", "status", 1, 0), ("front", "status", 2, 0)]
        assert subscriber.gaps == {"front/status": 2, "front/alert": 1}
        assert "1 earlier alert message(s) of front missed" in describe(received[4])
        bare = dataclasses.replace(received[4], body=dataclasses.replace(received[4].body, duration=None, reason=None))
        assert "ALERT END #3" in describe(bare)  # another program's end without a duration is still shown
    finally:
        subscriber.close()
        raw.close(0)
