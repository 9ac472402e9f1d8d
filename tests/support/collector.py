"""Helpers for monitor tests: a subscriber collecting in a thread."""

from __future__ import annotations

import threading
import time

import zmq

from crashwatch.monitor.transports.subscribe import Subscriber


class Collector(threading.Thread):
    """Receives everything from an endpoint until stopped; ``(topic, wire JSON)`` in arrival order."""

    def __init__(self, endpoint: str, topics: tuple[str, ...] = (), curve=None) -> None:
        super().__init__(daemon=True)
        self.subscriber = Subscriber(endpoint, topics, context=zmq.Context.instance(), curve=curve)
        self.messages: list[tuple[str, dict]] = []
        self.halt = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.halt.is_set():
            message = self.subscriber.receive(timeout=0.1)
            if message is not None:
                self.messages.append((message.topic, message.wire))

    def of(self, topic: str) -> list[dict]:
        return [m for t, m in list(self.messages) if t == topic]

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=2)
        self.subscriber.close()
