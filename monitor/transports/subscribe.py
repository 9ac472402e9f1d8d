"""Reading the monitor's messages: a SUB socket, gap detection from ``seq``, and one readable line each."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Iterator

import zmq

from crashwatch.monitor.messages import (
    Alert,
    AlertEvent,
    Explanation,
    Health,
    LevelChange,
    Message,
    Preview,
    ProcessStatus,
    Risk,
    Status,
)
from crashwatch.monitor.transports.curve import ClientCurve
from crashwatch.monitor.transports.zeromq import check_endpoint


class Subscriber:
    """Connects to a monitor's publisher and yields each ``Message``, each marked with the messages of its
    camera and topic lost just before it (``gaps`` adds them up, keyed ``CAMERA/TOPIC``).

    A publisher resends its current state to every subscriber when one joins (``replay``); a copy of what this
    subscriber already has is dropped here, so readers see each message once. A ``seq`` that starts again
    without a replay is a monitor that restarted, not a loss; nor are the updates a replay leaves out. An
    alert's update or end whose start this subscriber never saw counts as one lost message, whatever the
    ``seq``: it joined too late for the start."""

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
        self._last_seq: dict[tuple[str, str], int] = {}
        self._alerts_started: set[tuple[str, int]] = set()
        self.gaps: dict[str, int] = {}

    def receive(self, timeout: float | None = None) -> Message | None:
        """The next message, or None after ``timeout`` seconds without one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = -1 if deadline is None else max(int((deadline - time.monotonic()) * 1000), 0)
            if not self._socket.poll(wait):
                return None
            message = self._account(Message.decode(*self._socket.recv_multipart()))
            if message is not None:
                return message

    def _account(self, message: Message) -> Message | None:
        """``message`` with what was lost before it, or None for a replayed copy of one already here."""
        key = (message.camera, message.topic)
        last = self._last_seq.get(key)
        if last is not None and message.seq <= last:
            if message.replay:
                return None
            last = None  # the monitor started again
            self._alerts_started = {a for a in self._alerts_started if a[0] != message.camera}
        self._last_seq[key] = message.seq
        # a replay is the current state, not the stream: the updates it leaves out are not losses
        missed = 0 if last is None or message.replay else message.seq - last - 1
        alert = message.body
        if isinstance(alert, Alert):
            if alert.event is AlertEvent.START:
                self._alerts_started.add((message.camera, alert.alert_id))
            elif (message.camera, alert.alert_id) not in self._alerts_started:
                missed = max(missed, 1)
                self._alerts_started.add((message.camera, alert.alert_id))
        if missed:
            name = f"{message.camera}/{message.topic}"
            self.gaps[name] = self.gaps.get(name, 0) + missed
            message = dataclasses.replace(message, missed=missed)
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
    head = f"{clock} {message.camera} #{message.seq}" + (" (replay)" if message.replay else "")
    text = _describe_body(head, message)
    if message.missed:
        text += f"  [{message.missed} earlier {message.topic} message(s) of {message.camera} missed]"
    return text


def explained(e: Explanation) -> str:
    """What an explanation says, in one line: the most telling frame, each frame's share, where in the frame."""
    if e.state != "ready" or e.frames is None or e.telling is None:
        return f"{e.state} ({e.reason})"
    region = e.region or {}
    where = f"box {region['box']}" if region.get("box") else region.get("note")
    shares = " ".join(f"{f['share']:+.2f}" for f in e.frames)
    ready = "" if e.ready_after_ms is None else f"; ready {e.ready_after_ms:.0f} ms after the alert"
    return (f"the frame at {e.frames[e.telling]['t']:.2f} s raised the risk most (shares of the logit, oldest first: "
            f"{shares}); where ({region.get('method')} map): {where}{ready}")


def _describe_body(head: str, message: Message) -> str:
    body = message.body
    if isinstance(body, Risk):
        bar = "#" * int(round(body.probability * 20))
        flag = (" partial" if body.partial else "") + (" ALERT" if body.alert_active else " CAUTION"
                                                        if body.level.value == "caution" else "") + \
            (" LATE" if body.late else "")
        return (f"{head} risk  t={body.t:8.2f}s p={body.probability:.3f} [{bar:<20}]{flag} "
                f"model {body.model_ms:.0f} ms, latency {body.latency_ms:.0f} ms")
    if isinstance(body, Alert):
        text = f"{head} ALERT {body.event.value.upper()} #{body.alert_id} t={body.t:.2f}s peak {body.peak:.3f}"
        if body.event is AlertEvent.END:
            lasted = "" if body.duration is None else f" after {body.duration:.1f} s"
            text += f"{lasted} ({body.reason or 'ended'})"
        if body.camera_degraded:
            text += f" [camera degraded: {', '.join(body.camera_degraded)}]"
        if body.clip:
            text += f" clip {body.clip}"
        return text
    if isinstance(body, Status):
        s, lat, lag, calls = body.source, body.model_ms or {}, body.lag_s, body.model_calls or {}
        model = f", model {body.model['name']} {body.model['precision']} #{body.model['hash']}" \
            f" threshold {body.model['threshold']:.3f}" + (
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
    if isinstance(body, Health):
        why = f": {', '.join(body.reasons)}" if body.reasons else ""
        return f"{head} HEALTH {body.state.upper()}{why} at t={body.t:.2f}s"
    if isinstance(body, LevelChange):
        return f"{head} LEVEL {body.previous.value} -> {body.level.value.upper()} at t={body.t:.2f}s: {body.reason}"
    if isinstance(body, Explanation):
        return f"{head} EXPLANATION #{body.alert_id} {body.event}: {explained(body)}"
    if isinstance(body, Preview):
        kilobytes = len(body.jpeg) * 3 // 4000  # base64 text to bytes
        return f"{head} preview t={body.t:.2f}s frame {body.frame_id} {body.width}x{body.height} ({kilobytes} kB)"
    return f"{head} {message.topic} {json.dumps(message.wire)}"

