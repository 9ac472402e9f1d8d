"""Reading a monitor's messages from an MQTT broker (``PREFIX/CAMERA/TOPIC``), as ``subscribe.Subscriber``
reads them from ZeroMQ: ``receive`` gives each ``Message`` in turn, a retained one (the broker's copy of an
earlier state) marked ``replay``. A camera's ``availability`` (``online``,
``offline``: the broker's last will when its monitor dies) comes as a message of topic ``availability`` with
``wire == {"availability": STATE}`` and no body."""

from __future__ import annotations

import dataclasses
import logging
import queue
import time

from crashwatch.monitor.messages import Message
from crashwatch.monitor.transports.mqtt_target import MqttTarget

log = logging.getLogger(__name__)

AVAILABILITY = "availability"


class MqttSubscriber:
    """Subscribes to ``topics`` of ``camera`` (``+``: every camera) under ``prefix`` and queues what comes."""

    def __init__(self, target: MqttTarget, prefix: str, topics: tuple[str, ...], camera: str = "+",
                 client_name: str = "reader") -> None:
        self.target = target
        self._queue: queue.Queue[Message] = queue.Queue()
        self._subscriptions = [f"{prefix}/{camera}/{topic}" for topic in (*topics, AVAILABILITY)]
        self.connected = False
        self._client, _ = target.client(client_name)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 5)
        self._client.connect_async(target.host, target.port, keepalive=10)
        self._client.loop_start()

    def receive(self, timeout: float | None = None) -> Message | None:
        """The next message, or None after ``timeout`` seconds without one."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.connected = False  # a disconnection asked for, not one to warn of
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            log.warning("%s refused the connection: %s", self.target.display, reason)
            return
        self.connected = True
        log.info("connected to %s", self.target.display)
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        if self.connected:
            log.warning("lost %s (%s): reconnecting", self.target.display, reason)
        self.connected = False

    def _on_message(self, client, userdata, message) -> None:
        parts = message.topic.split("/")
        topic, camera = parts[-1], parts[-2]
        try:
            if topic == AVAILABILITY:
                state = message.payload.decode(errors="replace")
                self._queue.put(Message(topic, 0, camera, time.time(), {AVAILABILITY: state}, None,
                                        replay=bool(message.retain)))
            else:
                decoded = Message.decode(topic.encode(), message.payload)
                self._queue.put(dataclasses.replace(decoded, replay=True) if message.retain else decoded)
        except (ValueError, KeyError, TypeError) as err:
            log.warning("%s: not a crashwatch message (%s)", message.topic, err)
