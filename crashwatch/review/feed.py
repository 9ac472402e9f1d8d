"""Verdicts to MQTT: each event's standing verdict on ``PREFIX/CAMERA/review/EVENT``, retained (QoS 1), so a
fleet's systems (and Home Assistant) know every event's state, the newest on each change.

The dashboard keeps a connection and publishes every verdict as it is given, and on each (re)connection all
standing verdicts again, so a broker that was away, or lost its retained messages, is brought up to date;
``crashwatch review set --mqtt`` publishes its one verdict and waits for the broker's acknowledgement.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Callable

import paho.mqtt.client as paho

from crashwatch.monitor.transports.mqtt_target import MqttTarget
from crashwatch.review.events import ClipError, EventClip
from crashwatch.review.verdicts import Verdict, VerdictStore

log = logging.getLogger(__name__)

DELIVERY_TIMEOUT_S = 5.0


def topic(prefix: str, camera: str, event: str) -> str:
    return f"{prefix}/{camera}/review/{event}"


def payload(camera: str, verdict: Verdict, count: int) -> str:
    """The retained message: the standing verdict, its camera, and how many verdicts the event has had."""
    return json.dumps({**verdict.to_json(), "camera": camera, "verdicts": count})


def standing(events_dir: Path, store: VerdictStore) -> list[tuple[str, Verdict, int]]:
    """(camera, standing verdict, verdicts given) of every reviewed event the folder still holds."""
    rows = []
    for name, verdict in store.current().items():
        try:
            camera = EventClip.find(events_dir, name).summary()["camera"]
        except ClipError:
            continue
        rows.append((camera, verdict, len(store.history(name))))
    return rows


class ReviewFeed:
    """A connection to the broker that publishes verdicts; ``standing`` gives (camera, verdict, count) of every
    reviewed event, published again at each connection."""

    def __init__(self, target: MqttTarget, prefix: str,
                 standing: Callable[[], list[tuple[str, Verdict, int]]] = list) -> None:
        self.target, self.prefix, self.standing = target, prefix, standing
        self.connected = threading.Event()
        self._client, _ = target.client("review")
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *args: self.connected.clear()
        self._client.reconnect_delay_set(1, 5)
        self._client.connect_async(target.host, target.port, keepalive=10)
        self._client.loop_start()

    def publish(self, camera: str, verdict: Verdict, count: int) -> paho.MQTTMessageInfo:
        return self._client.publish(topic(self.prefix, camera, verdict.event), payload(camera, verdict, count),
                                    qos=1, retain=True)

    def publish_and_wait(self, camera: str, verdict: Verdict, count: int, timeout: float = DELIVERY_TIMEOUT_S) -> bool:
        """Publish once connected and wait for the broker's acknowledgement; False if it did not come in time."""
        if not self.connected.wait(timeout):
            return False
        info = self.publish(camera, verdict, count)
        info.wait_for_publish(timeout)
        return info.is_published()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:  # type: ignore[no-untyped-def]
        if reason.is_failure:
            log.warning("review feed: %s refused the connection (%s)", self.target.display, reason)
            return
        self.connected.set()
        standing = self.standing()
        for camera, verdict, count in standing:
            self.publish(camera, verdict, count)
        log.info("review feed: connected to %s, %d standing verdict(s) published", self.target.display, len(standing))
