"""Home Assistant over MQTT: the discovery messages that make a camera appear as a device with no YAML, and the
control topics it is driven by, in Frigate's manner (``PREFIX/CAMERA/alerts/set`` and ``.../state``).

Discovery follows Home Assistant's MQTT discovery (``DISCOVERY/COMPONENT/NODE/OBJECT/config``, retained), one
config per entity, all sharing one ``device`` and the camera's availability topic. The entities read the
monitor's own topics, so nothing is published twice: the risk and the source state from the retained
``status``, the alert binary sensor and the alert event from ``alert``, the controls' states from their
``state`` topics. Templates are plain Jinja (``value_json``), which Home Assistant renders.
"""

from __future__ import annotations

import json
from typing import Any

from crashwatch.contract import __version__
from crashwatch.monitor.controls import MAX_SUSPEND_MIN, Controls, ControlState

DEFAULT_DISCOVERY = "homeassistant"

# Control topics under PREFIX/CAMERA: what is set, and where its state is published (retained).
ALERTS_SET, ALERTS_STATE = "alerts/set", "alerts/state"
THRESHOLD_SET, THRESHOLD_STATE = "threshold/set", "threshold/state"
SUSPEND_SET, SUSPEND_STATE = "notifications/suspend", "notifications/state"
CONTROL_ERROR = "control/error"
SETTERS = {ALERTS_SET: Controls.set_alerts, THRESHOLD_SET: Controls.set_threshold, SUSPEND_SET: Controls.suspend}


def states(state: ControlState, threshold_in_force: float | None) -> dict[str, str]:
    """Each control's state topic (under PREFIX/CAMERA) and its payload."""
    threshold = state.threshold if state.threshold is not None else threshold_in_force
    return {ALERTS_STATE: "ON" if state.alerts else "OFF",
            THRESHOLD_STATE: "" if threshold is None else f"{threshold:.4g}",
            SUSPEND_STATE: json.dumps({"suspended": state.suspended(), "until": state.suspended_until or None})}


def discovery(discovery_prefix: str, base: str, camera: str, risk_topic: bool) -> dict[str, dict[str, Any]]:
    """Every entity's discovery topic and config for the camera publishing under ``base`` (PREFIX/CAMERA);
    ``risk_topic``: risk messages are published (``--mqtt-risk``), so the risk sensor follows every stride."""
    node = f"crashwatch_{camera}"
    device = {"identifiers": [node], "name": f"crashwatch {camera}", "manufacturer": "crashwatch",
              "model": "dashcam crash-risk monitor", "sw_version": __version__}
    common = {"device": device, "availability_topic": f"{base}/availability", "payload_available": "online",
              "payload_not_available": "offline", "origin": {"name": "crashwatch", "sw_version": __version__}}

    def entity(component: str, key: str, name: str, **config: Any) -> tuple[str, dict[str, Any]]:
        return (f"{discovery_prefix}/{component}/{node}/{key}/config",
                {"name": name, "unique_id": f"{node}_{key}", **common, **config})

    risk_source = f"{base}/risk" if risk_topic else f"{base}/status"
    entities = [
        entity("sensor", "risk", "Crash risk", state_topic=risk_source, state_class="measurement",
               value_template="{{ value_json.probability }}", suggested_display_precision=3),
        entity("binary_sensor", "alert", "Collision alert", state_topic=f"{base}/alert", device_class="safety",
               value_template="{{ 'OFF' if value_json.event == 'end' else 'ON' }}", payload_on="ON", payload_off="OFF"),
        entity("event", "alert_event", "Alert", state_topic=f"{base}/alert", event_types=["start", "update", "end"],
               value_template='{"event_type": "{{ value_json.event }}", "peak": {{ value_json.peak }}, '
                              '"alert_id": {{ value_json.alert_id }}}'),
        entity("sensor", "level", "Warning level", state_topic=f"{base}/level", device_class="enum",
               options=["none", "caution", "imminent"], value_template="{{ value_json.level }}",
               json_attributes_topic=f"{base}/level",
               json_attributes_template="{{ {'reason': value_json.reason, 't': value_json.t} | tojson }}"),
        entity("binary_sensor", "health", "Camera cannot see", state_topic=f"{base}/health", device_class="problem",
               value_template="{{ 'ON' if value_json.state == 'degraded' else 'OFF' }}", payload_on="ON",
               payload_off="OFF", json_attributes_topic=f"{base}/health",
               json_attributes_template="{{ {'reasons': value_json.reasons} | tojson }}"),
        entity("sensor", "source", "Camera source", state_topic=f"{base}/status", entity_category="diagnostic",
               value_template="{{ value_json.source.state }}", json_attributes_topic=f"{base}/status",
               json_attributes_template="{{ value_json.source | tojson }}"),
        entity("switch", "alerts", "Alerts", command_topic=f"{base}/{ALERTS_SET}", state_topic=f"{base}/{ALERTS_STATE}",
               payload_on="ON", payload_off="OFF", entity_category="config"),
        entity("number", "threshold", "Alert threshold", command_topic=f"{base}/{THRESHOLD_SET}",
               state_topic=f"{base}/{THRESHOLD_STATE}", min=0.01, max=1.0, step=0.01, mode="box",
               entity_category="config"),
        entity("number", "suspend", "Suspend alert notifications", command_topic=f"{base}/{SUSPEND_SET}",
               min=0, max=MAX_SUSPEND_MIN, step=1, unit_of_measurement="min", mode="box", entity_category="config"),
        entity("binary_sensor", "suspended", "Alert notifications suspended", state_topic=f"{base}/{SUSPEND_STATE}",
               value_template="{{ 'ON' if value_json.suspended else 'OFF' }}", payload_on="ON", payload_off="OFF",
               json_attributes_topic=f"{base}/{SUSPEND_STATE}", entity_category="diagnostic"),
    ]
    return dict(entities)
