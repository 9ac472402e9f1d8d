"""Reading the monitor's messages: a SUB socket, gap detection from ``seq``, and one readable line each."""

from __future__ import annotations

import json
import time
from typing import Any, Iterator

import zmq

from monitor.security import ClientCurve


class Subscriber:
    """Connects to a monitor's publisher and yields ``(topic, message)``; counts ``seq`` gaps per topic."""

    def __init__(self, endpoint: str, topics: tuple[str, ...] = (), context: zmq.Context | None = None,
                 curve: ClientCurve | None = None) -> None:
        self._socket = (context or zmq.Context.instance()).socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            curve.apply(self._socket)
        for topic in topics or ("",):
            self._socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._socket.connect(endpoint)
        self._last_seq: dict[str, int] = {}
        self.gaps: dict[str, int] = {}

    def receive(self, timeout: float | None = None) -> tuple[str, dict[str, Any]] | None:
        """The next message, or None after ``timeout`` seconds without one."""
        if timeout is not None and not self._socket.poll(int(timeout * 1000)):
            return None
        topic, payload = self._socket.recv_multipart()
        name, message = topic.decode(), json.loads(payload)
        last = self._last_seq.get(name)
        if last is not None and message["seq"] != last + 1:
            self.gaps[name] = self.gaps.get(name, 0) + message["seq"] - last - 1
        self._last_seq[name] = message["seq"]
        return name, message

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        while True:
            item = self.receive(timeout=None)
            if item is not None:
                yield item

    def close(self) -> None:
        self._socket.close()


def describe(topic: str, m: dict[str, Any]) -> str:
    """One line a person can read."""
    clock = time.strftime("%H:%M:%S", time.localtime(m.get("sent_at", time.time())))
    head = f"{clock} {m.get('camera', '?')} #{m.get('seq')}"
    if topic == "risk":
        bar = "#" * int(round(m["probability"] * 20))
        flag = " ALERT" if m.get("alert_active") else ""
        return (f"{head} risk  t={m['t']:8.2f}s p={m['probability']:.3f} [{bar:<20}]{flag} "
                f"model {m['timings']['model_ms']:.0f} ms, latency {m['latency_ms']:.0f} ms")
    if topic == "alert":
        text = f"{head} ALERT {m['event'].upper()} #{m['alert_id']} t={m['t']:.2f}s peak {m['peak']:.3f}"
        if m["event"] == "end":
            text += f" after {m['duration']:.1f} s ({m.get('reason', '')})"
        if m.get("clip"):
            text += f" clip {m['clip']}"
        return text
    if topic == "status":
        s = m["source"]
        lat = m.get("model_ms") or {}
        lag = m.get("lag_s")
        return (f"{head} status {s['name']} {s['state']}"
                + (f" (retry in {s['backoff_s']:.1f} s, outage {s['outage_s']:.1f} s)" if s["state"] == "reconnecting" else "")
                + f", {m['capture_fps']:.1f} fps, strides {m['strides']} (skipped {m['strides_skipped']}),"
                + f" dropped {m['frames_dropped']}, lag {'n/a' if lag is None else f'{lag:.2f} s'}"
                + (f", model p50 {lat['p50']:.0f} ms p99 {lat['p99']:.0f} ms" if lat else ""))
    return f"{head} {topic} {json.dumps(m)}"
