"""Home Assistant over MQTT, against Mosquitto and a real monitor: the camera appears through discovery, its
controls apply at once, bad values are refused with a reason, and what was set survives a restart. The
discovery payloads are checked against the options Home Assistant documents for each platform, and their
templates rendered with Jinja on real messages, as Home Assistant renders them."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from crashwatch.bench.process import free_port
from crashwatch.contract.bundle import Manifest
from crashwatch.monitor.transports.homeassistant import discovery
from tests.support.collector import Collector
from tests.support.media import write_video
from tests.support.mqtt_broker import Broker, Subscriber, need_mosquitto
from tests.support.shared import REPO

# The options Home Assistant documents for each MQTT platform (home-assistant.io/integrations/PLATFORM.mqtt/),
# those every MQTT entity takes, and those each platform requires.
COMMON = {"name", "unique_id", "device", "availability_topic", "payload_available", "payload_not_available",
          "origin", "entity_category", "json_attributes_topic", "json_attributes_template", "icon", "qos",
          "enabled_by_default", "availability", "availability_mode", "encoding", "object_id", "default_entity_id"}
PLATFORMS = {
    "sensor": ({"state_topic"}, {"state_topic", "value_template", "unit_of_measurement", "device_class", "state_class",
                                 "suggested_display_precision", "expire_after", "force_update", "options"}),
    "binary_sensor": ({"state_topic"}, {"state_topic", "value_template", "payload_on", "payload_off", "device_class",
                                        "expire_after", "force_update", "off_delay"}),
    "event": ({"state_topic", "event_types"}, {"state_topic", "event_types", "value_template", "device_class"}),
    "switch": ({"command_topic"}, {"command_topic", "state_topic", "payload_on", "payload_off", "state_on", "state_off",
                                   "value_template", "optimistic", "device_class", "retain"}),
    "number": ({"command_topic"}, {"command_topic", "state_topic", "min", "max", "step", "mode", "unit_of_measurement",
                                   "value_template", "command_template", "device_class", "optimistic", "retain"}),
}
DEVICE = {"identifiers", "name", "manufacturer", "model", "sw_version", "hw_version", "configuration_url",
          "connections", "suggested_area", "via_device", "serial_number", "model_id"}
SENSOR_STATE_CLASSES, BINARY_CLASSES = {"measurement", "total", "total_increasing"}, {"safety", "problem", "running"}


def test_discovery_payloads_follow_home_assistants_documented_options_and_render_on_real_messages():
    jinja2 = pytest.importorskip("jinja2")
    configs = discovery("homeassistant", "crashwatch/front", "front", risk_topic=False)
    assert len(configs) == 10 and len({c["unique_id"] for c in configs.values()}) == 10
    for topic, config in configs.items():
        prefix, component, node, key, tail = topic.split("/")
        assert (prefix, node, tail) == ("homeassistant", "crashwatch_front", "config")
        required, allowed = PLATFORMS[component]
        assert required <= set(config) <= allowed | COMMON, (topic, set(config) - allowed - COMMON)
        assert set(config["device"]) <= DEVICE and config["device"]["identifiers"] == ["crashwatch_front"]
        assert config.get("state_class", "measurement") in SENSOR_STATE_CLASSES
        assert component != "binary_sensor" or config.get("device_class", "safety") in BINARY_CLASSES
        assert config.get("entity_category", "config") in {"config", "diagnostic"}
        assert all(isinstance(config[k], (int, float)) for k in ("min", "max", "step") if k in config)

    env = jinja2.Environment()

    def render(key: str, value: dict) -> str:
        (config,) = [c for t, c in configs.items() if t.split("/")[3] == key]
        return env.from_string(config["value_template"]).render(value_json=value, value=json.dumps(value))

    assert render("risk", {"probability": 0.734, "source": {"state": "online"}}) == "0.734"
    assert render("alert", {"event": "start"}) == "ON" and render("alert", {"event": "end"}) == "OFF"
    event = json.loads(render("alert_event", {"event": "update", "peak": 0.91, "alert_id": 3}))
    assert event == {"event_type": "update", "peak": 0.91, "alert_id": 3}
    assert render("source", {"source": {"state": "reconnecting"}}) == "reconnecting"
    assert render("suspended", {"suspended": True, "until": 1.0}) == "ON"
    assert render("health", {"state": "degraded", "reasons": ["frozen"]}) == "ON"
    assert render("health", {"state": "ok", "reasons": []}) == "OFF"
    assert render("level", {"level": "caution", "reason": "r", "t": 1.0}) == "caution"
    (level,) = [c for t, c in configs.items() if t.split("/")[3] == "level"]
    assert json.loads(env.from_string(level["json_attributes_template"]).render(
        value_json={"level": "caution", "reason": "r", "t": 1.0})) == {"reason": "r", "t": 1.0}


def _monitor(bundle, broker: Broker, endpoint: str, tmp_path, clip) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "crashwatch", "monitor", "--bundle", str(bundle), "--source", str(clip),
                             "--camera", "front", "--pub", endpoint, "--loop", "--mqtt",
                             f"mqtt://127.0.0.1:{broker.port}", "--mqtt-outbox", str(tmp_path / "state/outbox.sqlite"),
                             "--alert-min-off", "0"], cwd=REPO, stderr=subprocess.PIPE, text=True)


@pytest.mark.timed
def test_a_camera_appears_in_home_assistant_and_obeys_its_controls_across_a_restart(tiny_bundle, tmp_path):
    need_mosquitto()
    broker = Broker(tmp_path / "broker").start()
    operator = Subscriber(broker, "#")
    clip = write_video(tmp_path / "drive.mp4", 100, fps=10)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    collector = Collector(endpoint, ("alert", "status"))
    base = "crashwatch/front"
    monitor = _monitor(tiny_bundle, broker, endpoint, tmp_path, clip)
    bundled = Manifest.read(tiny_bundle).threshold

    def newest(topic: str):
        got = operator.on(topic)
        return got[-1].payload if got else None

    def wait(predicate, what: str, timeout: float = 20) -> None:
        operator.wait_for(lambda _: predicate(), timeout, what)

    try:
        wait(lambda: len([m for m in operator.messages if m.topic.startswith("homeassistant/")]) >= 10,
             "the discovery configs")
        late = Subscriber(broker, "homeassistant/#")  # retained: Home Assistant started later finds them
        late.wait_for(lambda got: len(got) >= 10 and all(m.retain for m in got), 5, "retained discovery configs")
        late.close()
        wait(lambda: newest(f"{base}/alerts/state") == "ON" and newest(f"{base}/notifications/state") is not None,
             "the controls' states")
        assert newest(f"{base}/notifications/state") == {"suspended": False, "until": None}
        wait(lambda: newest(f"{base}/threshold/state") == float(f"{bundled:.4g}"), "the threshold in force")

        operator.publish(f"{base}/threshold/set", "0.99")  # above every probability of the tiny model: none open
        wait(lambda: newest(f"{base}/threshold/state") == 0.99, "the new threshold's state")
        wait(lambda: (newest(f"{base}/status") or {}).get("controls", {}).get("threshold_in_force") == 0.99
             and newest(f"{base}/status")["alert_active"] is False, "the threshold in force, no alert open", 30)
        operator.publish(f"{base}/threshold/set", "0.01")  # below every probability: an alert at once
        wait(lambda: any(m.payload["event"] == "start" and m.payload["threshold"] == 0.01
                         for m in operator.on(f"{base}/alert")), "an alert start at the new threshold")

        operator.publish(f"{base}/threshold/set", "lots")
        wait(lambda: operator.on(f"{base}/control/error"), "the refusal")
        refusal = newest(f"{base}/control/error")
        assert refusal["topic"] == f"{base}/threshold/set" and "send a probability" in refusal["reason"]

        operator.publish(f"{base}/alerts/set", "OFF")
        wait(lambda: any(m.payload.get("reason") == "alerts turned off" for m in operator.on(f"{base}/alert")),
             "the open alert ended by the switch")
        assert newest(f"{base}/alerts/state") == "OFF"
        ended = len(operator.on(f"{base}/alert"))
        time.sleep(3)
        assert len(operator.on(f"{base}/alert")) == ended, "an alert was raised while alerts were off"

        operator.publish(f"{base}/notifications/suspend", "5")
        wait(lambda: (newest(f"{base}/notifications/state") or {}).get("suspended") is True, "suspended")
        seen_zmq = len([m for m in collector.of("alert") if m["event"] == "start"])
        operator.publish(f"{base}/alerts/set", "ON")
        assert collector.wait_for(lambda c: len([m for m in c.of("alert") if m["event"] == "start"]) > seen_zmq, 20), \
            "no alert over ZeroMQ while notifications were suspended"
        time.sleep(1)
        assert len(operator.on(f"{base}/alert")) == ended, "an alert reached MQTT while notifications were suspended"
        operator.publish(f"{base}/notifications/suspend", "0")
        wait(lambda: newest(f"{base}/notifications/state") == {"suspended": False, "until": None}, "resumed")

        operator.publish(f"{base}/alerts/set", "OFF")
        wait(lambda: newest(f"{base}/alerts/state") == "OFF", "alerts off again")
        monitor.terminate()
        monitor.wait(timeout=20)
        operator.messages.clear()
        monitor = _monitor(tiny_bundle, broker, endpoint, tmp_path, clip)  # what was set is kept
        wait(lambda: [m.payload for m in operator.on(f"{base}/alerts/state") if not m.retain] == ["OFF"],
             "the kept switch after the restart")
        wait(lambda: 0.01 in [m.payload for m in operator.on(f"{base}/threshold/state") if not m.retain],
             "the kept threshold after the restart")
    finally:
        monitor.kill()
        collector.stop()
        operator.close()
        broker.stop()
    saved = json.loads((tmp_path / "state/controls-front.json").read_text())
    assert saved["alerts"] is False and saved["threshold"] == 0.01
