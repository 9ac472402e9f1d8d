"""The MQTT transport against a real Mosquitto (started, stopped and restarted by the tests) and a real paho
subscriber: alerts across a broker outage and across a SIGKILL of the monitor, availability and the last will,
broker trouble that must never reach the risk loop, bad URLs, and the outbox's bounds."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crashwatch.bench.process import free_port
from crashwatch.contract.errors import CrashwatchError
from crashwatch.monitor.messages import Alert, AlertEvent, Topic, envelope
from crashwatch.monitor.transports.mqtt import MqttSink
from crashwatch.monitor.transports.mqtt_target import PASSWORD_ENV, USERNAME_ENV, MqttError, MqttTarget
from crashwatch.monitor.transports.outbox import Outbox, OutboxError
from tests.support.mqtt_broker import Broker, Subscriber, need_mosquitto, wait_until
from tests.support.shared import REPO
from tests.support.timing import within

SECRET = "hunter2-Zq9"  # a password that must never be seen outside the client


@pytest.fixture
def broker(tmp_path):
    need_mosquitto()
    broker = Broker(tmp_path / "broker").start()
    yield broker
    broker.stop()


def alert(seq: int, camera: str = "cam1") -> dict:
    body = Alert(AlertEvent.START, alert_id=seq, start=10.0 * seq, t=10.0 * seq, probability=0.9, peak=0.9,
                 peak_at=10.0 * seq, threshold=0.5).to_wire()
    return envelope(Topic.ALERT, seq, camera, body)


def sink_for(broker: Broker, tmp_path: Path, camera: str = "cam1", **options) -> MqttSink:
    return MqttSink(MqttTarget.parse(f"mqtt://127.0.0.1:{broker.port}"), camera,
                    outbox_path=tmp_path / f"{camera}-outbox.db", **options)


@pytest.mark.timed
def test_alerts_sent_during_a_20_s_outage_all_arrive_in_order_with_their_stamps(broker, tmp_path):
    sink = sink_for(broker, tmp_path)
    wait_until(lambda: sink.connected, 10, "sink connected")
    broker.stop()
    wait_until(lambda: not sink.connected, 10, "sink saw the broker go")
    down_at = time.monotonic()
    sent = []
    for seq in range(1, 6):  # spread over the outage
        message = alert(seq)
        started = time.monotonic()
        sink.send(Topic.ALERT, message)
        assert time.monotonic() - started < within(0.5)
        sent.append(message)
        time.sleep(3)
    time.sleep(max(down_at + 20 - time.monotonic(), 0))
    status = sink.status()
    assert (status["connected"], status["queued"], status["delivered"]) == (False, 5, 0)
    assert "connection refused" in status["last_error"]

    broker.start()
    restarted = time.time()
    # Subscribed before the sink's next retry: its backoff has doubled to 16 s by now.
    subscriber = Subscriber(broker)
    messages = subscriber.wait_for(lambda got: len([m for m in got if m.topic.endswith("/alert")]) == 5, 40,
                                   "the 5 alerts after the restart")
    alerts = [m.payload for m in messages if m.topic == "crashwatch/cam1/alert"]
    assert [a["seq"] for a in alerts] == [1, 2, 3, 4, 5]
    for got, original in zip(alerts, sent):
        assert got["sent_at"] == original["sent_at"]
        assert got["delivered_at"] >= restarted > got["sent_at"]
        assert {k: v for k, v in got.items() if k != "delivered_at"} == original
    wait_until(lambda: sink.status()["delivered"] == 5, 5, "the PUBACKs counted")
    assert sink.status()["queued"] == 0
    sink.close()
    subscriber.close()


def test_an_alert_in_flight_when_the_broker_dies_is_delivered_once_after_the_restart(broker, tmp_path):
    sink = sink_for(broker, tmp_path)
    wait_until(lambda: sink.connected, 10, "sink connected")
    broker.pause()  # alert 1 goes out and is never acknowledged; alert 2 waits behind it
    sink.send(Topic.ALERT, alert(1))
    sink.send(Topic.ALERT, alert(2))
    time.sleep(0.5)
    assert (sink.status()["queued"], sink.status()["delivered"]) == (2, 0)
    broker.kill()
    broker.start()
    subscriber = Subscriber(broker, "crashwatch/cam1/alert")
    wait_until(lambda: sink.status()["delivered"] == 2, 10, "both alerts acknowledged")
    time.sleep(0.5)  # time for a duplicate to show
    assert [m.payload["seq"] for m in subscriber.messages] == [1, 2]
    assert sink.status()["queued"] == 0
    sink.close()
    subscriber.close()


@pytest.mark.timed
def test_close_flushes_the_outbox_and_leaves_what_it_cannot_deliver_for_the_next_start(broker, tmp_path):
    subscriber = Subscriber(broker, "crashwatch/cam1/alert")
    sink = sink_for(broker, tmp_path)
    wait_until(lambda: sink.connected, 10, "sink connected")
    for seq in range(1, 21):
        sink.send(Topic.ALERT, alert(seq))
    sink.close()
    assert [m.payload["seq"] for m in subscriber.wait_for(lambda got: len(got) == 20, 2, "20 alerts")] == \
        list(range(1, 21))
    box = Outbox(tmp_path / "cam1-outbox.db")
    queued = box.stats()["queued"]
    box.close()  # an open outbox is owned: the next sink would be refused
    assert queued == 0

    sink = sink_for(broker, tmp_path)
    wait_until(lambda: sink.connected, 10, "sink connected")
    broker.pause()  # nothing is acknowledged any more
    last = alert(21)
    sink.send(Topic.ALERT, last)
    started = time.monotonic()
    sink.close(timeout=0.5)
    assert time.monotonic() - started < within(2.5)
    box = Outbox(tmp_path / "cam1-outbox.db")
    left = [json.loads(row.payload) for row in box.peek(5)]
    box.close()
    assert left == [last]
    subscriber.close()


def test_risk_only_with_publish_risk_and_the_latest_status_retained_at_most_every_period(broker, tmp_path):
    subscriber = Subscriber(broker)
    quiet = sink_for(broker, tmp_path, "quiet")
    loud = sink_for(broker, tmp_path, "loud", publish_risk=True, status_period=1.0)
    for sink in (quiet, loud):
        wait_until(lambda: sink.connected, 10, "sink connected")
        sink.send(Topic.RISK, envelope(Topic.RISK, 1, "x", {"probability": 0.1}))
        sink.send(Topic.ALERT, alert(1))
    # The outbox keeps order, so a risk quiet published would arrive before its alert.
    subscriber.wait_for(lambda got: {m.topic for m in got} >= {"crashwatch/quiet/alert", "crashwatch/loud/alert"},
                        10, "both alerts")
    topics = [m.topic for m in subscriber.messages if m.topic.endswith(("/risk", "/alert"))]
    assert "crashwatch/quiet/risk" not in topics
    assert topics.index("crashwatch/loud/risk") < topics.index("crashwatch/loud/alert")
    assert subscriber.on("crashwatch/loud/risk")[0].payload["delivered_at"] > 0

    status = lambda seq: envelope(Topic.STATUS, seq, "loud", {"alert_active": False})  # noqa: E731
    loud.send(Topic.STATUS, status(1))
    subscriber.wait_for(lambda got: any(m.topic == "crashwatch/loud/status" for m in got), 5, "the first status")
    loud.send(Topic.STATUS, status(2))
    loud.send(Topic.STATUS, status(3))
    subscriber.wait_for(lambda got: any(m.topic == "crashwatch/loud/status" and m.payload["seq"] == 3 for m in got),
                        5, "the latest status")
    statuses = subscriber.on("crashwatch/loud/status")
    assert [m.payload["seq"] for m in statuses] == [1, 3]  # 2 was superseded while the period ran
    assert statuses[1].at - statuses[0].at >= 0.9

    late = Subscriber(broker, "crashwatch/loud/status")
    retained = late.wait_for(lambda got: len(got) == 1, 5, "the retained status")[0]
    assert retained.retain and retained.payload["seq"] == 3
    wait_until(lambda: (quiet.status()["delivered"], loud.status()["delivered"]) == (1, 2), 5, "the deliveries counted")
    for client in (quiet, loud, subscriber, late):
        client.close()


CHILD = """
import json, logging, sys, time
from pathlib import Path
from crashwatch.monitor.messages import Topic
from crashwatch.monitor.transports.mqtt import MqttSink
from crashwatch.monitor.transports.mqtt_target import MqttTarget
logging.basicConfig(level=logging.WARNING)
port, outbox, mode = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
sink = MqttSink(MqttTarget.parse(f"mqtt://127.0.0.1:{port}"), "cam1", outbox_path=outbox, keepalive=2)
deadline = time.monotonic() + 20
if mode == "queue":  # the broker is down: three alerts into the outbox, then wait for the SIGKILL
    for seq in (1, 2, 3):
        sink.send(Topic.ALERT, {"seq": seq, "sent_at": 1000.0 + seq})
    print(json.dumps(sink.status()), flush=True)
    time.sleep(60)
while not sink.connected or (mode == "deliver" and sink.status()["queued"]):
    if time.monotonic() > deadline:
        sys.exit(f"not done within 20 s: {sink.status()}")
    time.sleep(0.05)
print(json.dumps(sink.status()), flush=True)
if mode == "deliver":
    sink.close()
else:  # "online": wait for the SIGKILL
    time.sleep(60)
"""


def child(broker: Broker, outbox: Path, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(broker.port), str(outbox), mode], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def first_line(process: subprocess.Popen) -> dict:
    line = process.stdout.readline()  # the child exits by itself within 20 s when it has nothing to say
    assert line, f"the child said nothing: {process.communicate()[1]}"
    return json.loads(line)


def test_alerts_of_a_sigkilled_monitor_are_delivered_by_the_next_start(broker, tmp_path):
    outbox = tmp_path / "outbox.db"
    broker.stop()
    first = child(broker, outbox, "queue")
    assert first_line(first)["queued"] == 3
    first.send_signal(signal.SIGKILL)
    first.wait()

    broker.start()
    subscriber = Subscriber(broker, "crashwatch/cam1/alert")
    second = child(broker, outbox, "deliver")
    assert first_line(second)["delivered"] == 3
    assert second.wait(10) == 0, second.stderr.read()
    alerts = subscriber.wait_for(lambda got: len(got) == 3, 5, "the 3 alerts")
    assert [(m.payload["seq"], m.payload["sent_at"]) for m in alerts] == [(1, 1001.0), (2, 1002.0), (3, 1003.0)]
    assert all(m.payload["delivered_at"] > m.payload["sent_at"] for m in alerts)
    subscriber.close()


@pytest.mark.timed
def test_availability_online_retained_offline_by_last_will_and_online_again(broker, tmp_path):
    outbox = tmp_path / "outbox.db"
    watcher = Subscriber(broker, "crashwatch/cam1/availability")
    monitor = child(broker, outbox, "online")
    first_line(monitor)
    watcher.wait_for(lambda got: [m.payload for m in got] == ["online"], 5, "online")
    late = Subscriber(broker, "crashwatch/cam1/availability")
    seen = late.wait_for(lambda got: len(got) == 1, 5, "the retained availability")[0]
    assert seen.retain and seen.payload == "online"

    monitor.send_signal(signal.SIGKILL)
    killed = time.time()
    monitor.wait()
    offline = watcher.wait_for(lambda got: len(got) == 2, 2 * 1.5 + 2, "the last will")[1]
    assert offline.payload == "offline" and offline.at - killed < within(2 * 1.5 + 2)

    again = MqttSink(MqttTarget.parse(f"mqtt://127.0.0.1:{broker.port}"), "cam1", outbox_path=outbox)  # the next start
    watcher.wait_for(lambda got: [m.payload for m in got] == ["online", "offline", "online"], 5, "online again")
    again.close()  # a clean close says offline itself: a clean disconnect fires no will
    watcher.wait_for(lambda got: [m.payload for m in got][-1:] == ["offline"] and len(got) == 4, 5, "offline on close")
    for client in (watcher, late):
        client.close()


@pytest.fixture(scope="module")
def troubled_brokers(tmp_path_factory):
    """A broker that wants a password and one that speaks TLS with a CA of its own."""
    need_mosquitto()
    root = tmp_path_factory.mktemp("brokers")
    brokers = {"password": Broker(root / "password", users={"cam": SECRET, "watcher": SECRET}).start(),
               "tls": Broker(root / "tls", tls=True).start()}
    yield brokers
    for broker in brokers.values():
        broker.stop()


TROUBLE = {  # a URL for the brokers, and what the reason must say
    "unresolvable host": (lambda b: f"mqtt://cam:{SECRET}@no-such-host.invalid", "cannot resolve host"),
    "refused port": (lambda b: f"mqtt://cam:{SECRET}@127.0.0.1:{free_port()}", "connection refused"),
    "wrong password": (lambda b: f"mqtt://cam:{SECRET}-wrong@127.0.0.1:{b['password'].port}",
                       "refused the connection: Not authorized"),
    "unverifiable TLS certificate": (lambda b: f"mqtts://cam:{SECRET}@localhost:{b['tls'].port}",
                                     "TLS certificate does not verify"),
}


@pytest.mark.timed
@pytest.mark.parametrize("trouble", TROUBLE)
def test_broker_trouble_never_blocks_send_and_is_named_once_without_the_password(trouble, troubled_brokers,
                                                                                 tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    url_for, reason = TROUBLE[trouble]
    sink = MqttSink(MqttTarget.parse(url_for(troubled_brokers)), "cam1",
                    outbox_path=tmp_path / "outbox.db")
    started = time.monotonic()
    for seq in range(50):
        sink.send(Topic.ALERT, alert(seq))
    assert time.monotonic() - started < within(1.0)
    wait_until(lambda: sink.status()["last_error"], 20, "an error in status")  # a DNS without answer: 10 s
    time.sleep(1.6)  # the retry at 1 s fails the same way
    status = sink.status()
    assert reason in status["last_error"]
    assert (status["connected"], status["queued"], status["delivered"]) == (False, 50, 0)
    warnings = [r for r in caplog.records if r.name == "crashwatch.monitor.transports.mqtt" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and reason in warnings[0].getMessage() and "***@" in warnings[0].getMessage()
    sink.close()
    assert SECRET not in json.dumps(status) + caplog.text + repr(sink.target)


def test_the_right_password_from_a_file_or_the_environment_and_the_right_ca_connect(troubled_brokers, tmp_path,
                                                                                   monkeypatch):
    password_broker, tls_broker = troubled_brokers["password"], troubled_brokers["tls"]
    password_file = tmp_path / "mqtt-password"
    password_file.write_text(SECRET + "\n")
    monkeypatch.setenv(USERNAME_ENV, "cam")
    by_file = MqttTarget.parse(f"mqtt://127.0.0.1:{password_broker.port}", password_file=password_file)
    monkeypatch.setenv(PASSWORD_ENV, SECRET)
    by_env = MqttTarget.parse(f"mqtt://127.0.0.1:{password_broker.port}")
    with_ca = MqttTarget.parse(f"mqtts://localhost:{tls_broker.port}", ca=tls_broker.ca)
    watchers = [Subscriber(password_broker, "crashwatch/#", "watcher", SECRET), Subscriber(tls_broker)]
    sinks = [MqttSink(target, f"cam{i}", outbox_path=tmp_path / f"outbox{i}.db")
             for i, target in enumerate((by_file, by_env, with_ca))]
    for sink in sinks:
        sink.send(Topic.ALERT, alert(1))
    for i, watcher in enumerate((0, 0, 1)):
        watchers[watcher].wait_for(lambda got: any(m.topic == f"crashwatch/cam{i}/alert" for m in got), 10,
                                   f"cam{i}'s alert")
    assert all(sink.status()["last_error"] is None for sink in sinks)
    for client in (*sinks, *watchers):
        client.close()


def test_credentials_come_from_the_url_then_the_file_then_the_environment(tmp_path, monkeypatch):
    password_file = tmp_path / "mqtt-password"
    password_file.write_text("from-file\nignored\n")
    monkeypatch.setenv(USERNAME_ENV, "env-user")
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    url = MqttTarget.parse("mqtt://url-user:from%40url@broker", password_file=password_file)
    assert (url.username, url.password, url.port, url.display) == ("url-user", "from@url", 1883,
                                                                    "mqtt://***@broker:1883")
    file = MqttTarget.parse("mqtts://broker", password_file=password_file)
    assert (file.username, file.password, file.port, file.tls) == ("env-user", "from-file", 8883, True)
    assert MqttTarget.parse("mqtt://broker:1884").password == "from-env"
    assert "from-env" not in repr(MqttTarget.parse("mqtt://broker"))
    monkeypatch.delenv(USERNAME_ENV)
    with pytest.raises(MqttError, match="a password but no user name"):
        MqttTarget.parse("mqtt://broker")


@pytest.mark.parametrize("url, problem", [
    (f"http://cam:{SECRET}@broker", "not an MQTT URL"),
    ("broker:1883", "not an MQTT URL"),
    (f"mqtt://cam:{SECRET}@:1883", "no host"),
    (f"mqtt://cam:{SECRET}@broker:0", "port must be a number from 1 to 65535"),
    (f"mqtt://cam:{SECRET}@broker:65536", "port must be a number from 1 to 65535"),
    (f"mqtt://cam:{SECRET}@broker:eighty", "port must be a number from 1 to 65535"),
    (f"mqtt://cam:{SECRET}@broker/alerts", "no path"),
])
def test_a_bad_url_is_an_mqtt_error_naming_it_redacted(url, problem):
    with pytest.raises(MqttError, match=problem) as error:
        MqttTarget.parse(url)
    assert isinstance(error.value, CrashwatchError)
    assert SECRET not in str(error.value)
    assert str(error.value).startswith(url.replace(f"cam:{SECRET}@", "***@") + ": ")


def test_bad_ca_password_file_and_topic_parts_are_clear_errors(tmp_path):
    with pytest.raises(MqttError, match=f"{tmp_path / 'missing.pem'}: CA file not found .*mqtts://\\*\\*\\*@broker"):
        MqttTarget.parse(f"mqtts://cam:{SECRET}@broker", ca=tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(MqttError, match="junk.pem: not a CA certificate file in PEM format"):
        MqttTarget.parse("mqtts://broker", ca=tmp_path / "junk.pem")
    with pytest.raises(MqttError, match="a CA file is for mqtts:// only"):
        MqttTarget.parse("mqtt://broker", ca=tmp_path / "junk.pem")
    with pytest.raises(MqttError, match="missing-password: cannot read the MQTT password file"):
        MqttTarget.parse("mqtt://cam@broker", password_file=tmp_path / "missing-password")
    (tmp_path / "empty-password").write_text("\n")
    with pytest.raises(MqttError, match="empty-password: the MQTT password file is empty"):
        MqttTarget.parse("mqtt://cam@broker", password_file=tmp_path / "empty-password")
    for camera in ("a/b", "cam#", ""):
        with pytest.raises(MqttError, match="MQTT camera name"):
            MqttSink(MqttTarget.parse("mqtt://broker"), camera, outbox_path=tmp_path / "outbox.db")


@pytest.mark.timed
def test_the_outbox_drops_risk_before_alerts_and_counts_the_drops(tmp_path, caplog):
    box = Outbox(tmp_path / "outbox.db", max_messages=4)
    for name, critical in (("a1", True), ("a2", True), ("r1", False), ("r2", False), ("r3", False)):
        box.put("t", name, qos=1 if critical else 0, critical=critical)
    assert [row.payload for row in box.peek(10)] == ["a1", "a2", "r2", "r3"]
    assert box.stats() | {"oldest_age_s": None} == {"queued": 4, "oldest_age_s": None, "dropped": 1,
                                                     "dropped_critical": 0}
    assert not caplog.records
    for name in ("a3", "a4", "a5"):
        box.put("t", name, qos=1, critical=True)
    assert [row.payload for row in box.peek(10)] == ["a2", "a3", "a4", "a5"]  # both risks, then the oldest alert
    stats = box.stats()
    assert (stats["dropped"], stats["dropped_critical"]) == (4, 1)
    assert "1 alert(s) dropped unsent, past the count bound" in caplog.text
    box.remove(box.peek(1)[0].id)
    box.close()
    reopened = Outbox(tmp_path / "outbox.db")  # what was queued survives a restart, in order
    assert [row.payload for row in reopened.peek(10)] == ["a3", "a4", "a5"]
    reopened.close()

    aging = Outbox(tmp_path / "aging.db", max_age_s=0.3)
    aging.put("t", "old alert", qos=1, critical=True)
    aging.put("t", "old risk", qos=0)
    time.sleep(0.4)
    aging.put("t", "new risk", qos=0)
    assert [row.payload for row in aging.peek(10)] == ["new risk"]
    stats = aging.stats()
    assert (stats["queued"], stats["dropped"], stats["dropped_critical"]) == (1, 2, 1)
    assert stats["oldest_age_s"] < within(0.3)
    aging.close()


def test_a_corrupt_or_unwritable_outbox_is_a_clear_error_naming_it(tmp_path):
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"not sqlite at all " * 300)
    with pytest.raises(OutboxError, match=f"{corrupt}: cannot use the MQTT outbox: file is not a database"):
        Outbox(corrupt)
    with pytest.raises(OutboxError, match=f"{corrupt}: cannot use the MQTT outbox"):
        MqttSink(MqttTarget.parse("mqtt://broker"), "cam1", outbox_path=corrupt)
    not_a_folder = corrupt / "outbox.db"  # its parent is a file: unwritable even for root
    with pytest.raises(OutboxError, match=f"{not_a_folder}: cannot open the MQTT outbox"):
        Outbox(not_a_folder)
    assert issubclass(OutboxError, CrashwatchError)


def test_a_second_monitor_on_the_same_outbox_is_refused_naming_the_first(tmp_path):
    first = Outbox(tmp_path / "outbox-front.sqlite")
    script = ("import sys; from pathlib import Path; from crashwatch.monitor.transports.outbox import Outbox, "
              "OutboxError\ntry:\n    Outbox(Path(sys.argv[1]))\nexcept OutboxError as err:\n    print(err)\n")
    try:
        second = subprocess.run([sys.executable, "-c", script, str(tmp_path / "outbox-front.sqlite")],
                                capture_output=True, text=True, timeout=60)
        assert "in use by another monitor (process" in second.stdout and f"process {os.getpid()} on" in second.stdout
        first.put("t", "still mine", qos=1, critical=True)  # the first goes on
    finally:
        first.close()
    again = Outbox(tmp_path / "outbox-front.sqlite")  # free once closed
    assert [row.payload for row in again.peek(5)] == ["still mine"]
    again.close()


def test_two_sinks_of_one_camera_name_are_two_clients_to_the_broker(tmp_path):
    target = MqttTarget.parse(f"mqtt://127.0.0.1:{free_port()}")
    sinks = [MqttSink(target, "front", outbox_path=tmp_path / f"o{i}.db") for i in range(2)]
    try:
        ids = {sink.client_id for sink in sinks}
    finally:
        for sink in sinks:
            sink.close(timeout=0.1)
    assert len(ids) == 2 and all(i.startswith("crashwatch-front-") for i in ids)


def test_a_second_live_monitor_of_one_camera_name_is_warned_about_and_a_dead_runs_status_is_not(broker, tmp_path,
                                                                                               caplog):
    dead = sink_for(broker, tmp_path, "front", status_period=0.1)
    dead.send(Topic.STATUS, envelope(Topic.STATUS, 1, "front", {"state": "a run that will be gone"}))
    watcher = Subscriber(broker, "crashwatch/front/status")
    watcher.wait_for(lambda got: got, 10, "the first run's status")
    dead.close()
    first = sink_for(broker, tmp_path, "front", status_period=0.2)  # the retained status is the dead run's
    try:
        wait_until(lambda: first.connected, 10, "the first monitor connected")
        first.send(Topic.STATUS, envelope(Topic.STATUS, 2, "front", {}))
        time.sleep(1.0)
        assert first.status()["last_error"] is None, "a dead run's retained status was taken for a live monitor"
        second = MqttSink(MqttTarget.parse(f"mqtt://127.0.0.1:{broker.port}"), "front",
                          outbox_path=tmp_path / "second-outbox.db", status_period=0.2)
        try:
            for seq in range(3, 30):
                first.send(Topic.STATUS, envelope(Topic.STATUS, seq, "front", {}))
                second.send(Topic.STATUS, envelope(Topic.STATUS, seq, "front", {}))
                if first.status()["last_error"] and second.status()["last_error"]:
                    break
                time.sleep(0.2)
            for sink, other in ((first, second), (second, first)):
                assert f"another monitor (MQTT client {other.client_id}) is publishing as camera 'front'" in \
                    sink.status()["last_error"]
            assert "give each camera its own name" in caplog.text
            online = [r.payload for r in watcher.on("crashwatch/front/status")]
            assert {first.client_id, second.client_id} <= {p["mqtt_client"] for p in online}
        finally:
            second.close()
    finally:
        first.close()
        watcher.close()
