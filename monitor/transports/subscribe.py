"""Reading the monitor's messages: a SUB socket, gap detection from ``seq``, and one readable line each."""

from __future__ import annotations

import json
import time
from typing import Iterator

import zmq

from crashwatch.monitor.messages import Alert, AlertEvent, Message, Preview, ProcessStatus, Risk, Status
from crashwatch.monitor.transports.curve import ClientCurve
from crashwatch.monitor.transports.zeromq import check_endpoint


class Subscriber:
    """Connects to a monitor's publisher and yields each ``Message``; counts ``seq`` gaps per topic."""

    def __init__(self, endpoint: str, topics: tuple[str, ...] = (), context: zmq.Context | None = None,
                 curve: ClientCurve | None = None) -> None:
        self.endpoint = check_endpoint(endpoint, connect=True)
        self._socket = (context or zmq.Context.instance()).socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            curve.apply(self._socket)
        for topic in topics or ("",):
            self._socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._socket.connect(self.endpoint)
        self._last_seq: dict[str, int] = {}
        self.gaps: dict[str, int] = {}

    def receive(self, timeout: float | None = None) -> Message | None:
        """The next message, or None after ``timeout`` seconds without one."""
        if timeout is not None and not self._socket.poll(int(timeout * 1000)):
            return None
        message = Message.decode(*self._socket.recv_multipart())
        last = self._last_seq.get(message.topic)
        if last is not None and message.seq != last + 1:
            self.gaps[message.topic] = self.gaps.get(message.topic, 0) + message.seq - last - 1
        self._last_seq[message.topic] = message.seq
        return message

    def __iter__(self) -> Iterator[Message]:
        while True:
            item = self.receive(timeout=None)
            if item is not None:
                yield item

    def close(self) -> None:
        self._socket.close()


def describe(message: Message) -> str:
    """One line a person can read."""
    clock = time.strftime("%H:%M:%S", time.localtime(message.sent_at))
    head = f"{clock} {message.camera} #{message.seq}"
    body = message.body
    if isinstance(body, Risk):
        bar = "#" * int(round(body.probability * 20))
        flag = (" partial" if body.partial else "") + (" ALERT" if body.alert_active else "") + \
            (" LATE" if body.late else "")
        return (f"{head} risk  t={body.t:8.2f}s p={body.probability:.3f} [{bar:<20}]{flag} "
                f"model {body.model_ms:.0f} ms, latency {body.latency_ms:.0f} ms")
    if isinstance(body, Alert):
        text = f"{head} ALERT {body.event.value.upper()} #{body.alert_id} t={body.t:.2f}s peak {body.peak:.3f}"
        if body.event is AlertEvent.END:
            text += f" after {body.duration:.1f} s ({body.reason or ''})"
        if body.clip:
            text += f" clip {body.clip}"
        return text
    if isinstance(body, Status):
        s, lat, lag, calls = body.source, body.model_ms or {}, body.lag_s, body.model_calls or {}
        model = f", model {body.model['name']} {body.model['precision']} #{body.model['hash']}" + (
            " (demo)" if body.model["demo"] else "") if body.model else ""
        return (f"{head} status {s['name']} {s['state']}"
                + (f" (retry in {s['backoff_s']:.1f} s, outage {s['outage_s']:.1f} s)" if s["state"] == "reconnecting" else "")
                + f", {body.capture_fps:.1f} fps, strides {body.strides} (skipped {body.strides_skipped}),"
                + f" dropped {body.frames_dropped}, lag {'n/a' if lag is None else f'{lag:.2f} s'}"
                + (f", model p50 {lat['p50']:.0f} ms p99 {lat['p99']:.0f} ms" if lat else "") + model
                + (f", MODEL CALLS FAILING ({calls['source']})" if calls.get("state") == "failing" else ""))
    if isinstance(body, ProcessStatus):
        cameras = ", ".join(f"{name} {c['state']} ({c['strides']} strides)" for name, c in body.cameras.items())
        batches = ", ".join(f"{name} x{b['mean_batch']}" for name, b in body.batches.items() if b["mean_batch"])
        memory = "n/a" if body.memory_mb is None else f"{body.memory_mb:.0f} MB"
        return f"{head} process {cameras}; batches {batches or 'none yet'}; memory {memory}"
    if isinstance(body, Preview):
        kilobytes = len(body.jpeg) * 3 // 4000  # base64 text to bytes
        return f"{head} preview t={body.t:.2f}s frame {body.frame_id} {body.width}x{body.height} ({kilobytes} kB)"
    return f"{head} {message.topic} {json.dumps(message.wire)}"

