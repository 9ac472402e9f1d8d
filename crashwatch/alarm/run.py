"""``crashwatch alarm run``'s loop: messages from a reader (ZeroMQ or MQTT) into the alarm, its repeats, its
control socket, until stopped."""

from __future__ import annotations

import threading
from typing import Protocol

from crashwatch.alarm.control import ControlSocket
from crashwatch.alarm.unit import Alarm
from crashwatch.monitor.messages import Message
from crashwatch.monitor.transports.mqtt_subscribe import AVAILABILITY

TICK_S = 0.05  # repeats and mutes are taken this often; a level change wakes the loop at once


class Reader(Protocol):
    def receive(self, timeout: float | None = None) -> Message | None: ...

    def close(self) -> None: ...


def run_alarm(reader: Reader, alarm: Alarm, control: ControlSocket | None, camera: str | None,
              stop: threading.Event) -> None:
    """Feed ``alarm`` what ``reader`` receives of ``camera`` (None: every camera) until ``stop`` is set."""
    while not stop.is_set():
        message = reader.receive(timeout=TICK_S)
        if message is not None and (camera is None or message.camera == camera):
            if message.topic == AVAILABILITY and message.wire.get(AVAILABILITY) == "offline":
                alarm.lose(message.camera, "its monitor went offline (MQTT last will)")
            else:
                alarm.take(message)
        alarm.tick()
        if control is not None:
            control.poll()
