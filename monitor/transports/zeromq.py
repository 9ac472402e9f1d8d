"""Alerts over ZeroMQ, and to any further sinks (MQTT): an XPUB socket fed by one sender thread.

Every message is two frames, ``[topic, payload]``, laid out by ``crashwatch.monitor.messages`` (a per-topic ``seq`` lets a
subscriber of one topic still detect gaps). ZeroMQ sockets are not
thread-safe, so all sends happen in the sender thread; other threads enqueue. The sender also emits the
``status`` heartbeat every second, so it keeps its rhythm however slow the model is. Publishing never blocks:
past the send high-water mark a slow subscriber's messages are dropped by ZeroMQ, and the monitor goes on. Each
message, stamped, is also handed to every ``Sink``, whose ``send`` must return at once whatever its far end
does (the MQTT sink puts alerts in its on-disk outbox and delivers them from a thread of its own).

A subscription reaches a publisher some milliseconds after the subscriber connects, and ZeroMQ drops what is
sent before (its "slow joiner"), so a subscriber waiting for a monitor to start lost its first alert. The
socket is therefore an XPUB, which hands each subscription to the sender thread, and ``LastValues`` (the
ZeroMQ guide's last-value cache) resends at once what a newcomer must know: each camera's newest heartbeat and
health, and every open alert, marked ``replay``. The resend reaches every subscriber of the topic; readers drop the
copies they already have (``crashwatch.monitor.transports.subscribe``).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any, Callable, Protocol, Sequence

import zmq

from crashwatch.contract.errors import CrashwatchError
from crashwatch.monitor.messages import AlertEvent, Body, Topic, envelope
from crashwatch.monitor.transports.curve import ServerCurve

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


class PublisherError(CrashwatchError):
    """The endpoint cannot be bound; the message names it."""


SCHEMES = ("tcp://", "ipc://", "inproc://")
SUBSCRIPTION_POLL_S = 0.05  # how soon a newcomer's subscription is answered with the current state
SUBSCRIBE = 1  # the first byte of a subscription message on an XPUB socket (0 is an unsubscription)


class Sink(Protocol):
    """A further transport for the monitor's messages (``crashwatch.monitor.transports.mqtt.MqttSink``)."""

    name: str

    def send(self, topic: Topic, message: dict[str, Any]) -> None:
        """Take a stamped message; never blocks, never raises for trouble at the far end."""

    def status(self) -> dict[str, Any]:
        """Its state for the ``status`` message."""

    def close(self) -> None:
        """Deliver what it can in a bounded time, keep the rest for the next start."""


def check_endpoint(endpoint: str, connect: bool = False) -> str:
    """``endpoint`` as ZeroMQ takes it, or PublisherError saying what is wrong with it. With ``connect`` (a
    subscriber's side) a bare ``host:port`` is taken as ``tcp://host:port``. ZeroMQ itself would bind a
    port above 65535 modulo 2^16, that is another port, and connect to nothing without a word."""
    if connect and "://" not in endpoint:
        endpoint = f"tcp://{endpoint}"
    if not endpoint.startswith(SCHEMES):
        raise PublisherError(f"{endpoint}: not a ZeroMQ endpoint; give tcp://HOST:PORT (or ipc://PATH)")
    if endpoint.startswith("tcp://"):
        host, _, port = endpoint[len("tcp://"):].rpartition(":")
        if not host:
            raise PublisherError(f"{endpoint}: no port; give tcp://HOST:PORT")
        if not (port.isdigit() and 1 <= int(port) <= 65535) and not (port == "*" and not connect):
            raise PublisherError(f"{endpoint}: port {port!r} is not a number from 1 to 65535")
    return endpoint


def is_loopback(endpoint: str) -> bool:
    """True for ipc:// and inproc:// and for tcp:// on a loopback address."""
    if not endpoint.startswith("tcp://"):
        return True
    host = endpoint[len("tcp://"):].rsplit(":", 1)[0]
    return host in LOOPBACK_HOSTS or host.startswith("127.")


class Channel:
    """One camera's messages on a publisher: its per-topic ``seq``, its ``status`` heartbeat and its sinks. Many
    cameras share one socket, each with its own channel."""

    def __init__(self, publisher: "Publisher", camera: str, status: Callable[[], Body] | None,
                 sinks: Sequence[Sink]) -> None:
        self.publisher = publisher
        self.camera = camera
        self.status = status
        self.sinks = list(sinks)
        self.sent = 0
        self.dropped = 0
        self._seq = {topic: 0 for topic in Topic}
        self._lock = threading.Lock()

    def publish(self, body: Body) -> dict[str, Any]:
        """Stamp and enqueue a message on its body's topic; returns it as it will be sent."""
        topic = body.TOPIC
        with self._lock:
            self._seq[topic] += 1
            message = envelope(topic, self._seq[topic], self.camera, body.to_wire())
        self.publisher.enqueue(self, topic, message)
        return message

    def delivery(self) -> dict[str, Any]:
        return {"publisher": {"sent": self.sent, "dropped": self.dropped},
                "sinks": {sink.name: sink.status() for sink in self.sinks} or None}

    def close(self, final_status: bool = True) -> None:
        """Send what is queued (and a last status), stop the heartbeat, close the sinks."""
        if final_status and self.status is not None:
            self.publish(self.status())
        self.publisher.detach(self)
        for sink in self.sinks:
            sink.close()


class LastValues:
    """The messages a subscriber joining now must receive at once: per channel the newest ``status``,
    ``process`` heartbeat, ``health`` and warning ``level``, and each open alert's start and newest update (gone
    with its end)."""

    NEWEST = (Topic.STATUS, Topic.PROCESS, Topic.HEALTH, Topic.LEVEL)

    def __init__(self) -> None:
        self._newest: dict[tuple[Channel, Topic], dict[str, Any]] = {}
        self._alerts: dict[tuple[Channel, int], list[dict[str, Any]]] = {}

    def keep(self, channel: Channel, topic: Topic, message: dict[str, Any]) -> None:
        if topic in self.NEWEST:
            self._newest[(channel, topic)] = message
        elif topic is Topic.ALERT:
            key = (channel, message["alert_id"])
            event = AlertEvent(message["event"])
            if event is AlertEvent.START:
                self._alerts[key] = [message]
            elif event is AlertEvent.UPDATE and key in self._alerts:
                self._alerts[key][1:] = [message]
            else:
                self._alerts.pop(key, None)

    def keep_only(self, channels: Sequence[Channel]) -> None:
        """Forget the channels that were closed."""
        self._newest = {key: m for key, m in self._newest.items() if key[0] in channels}
        self._alerts = {key: m for key, m in self._alerts.items() if key[0] in channels}

    def matching(self, prefix: bytes) -> list[tuple[Topic, dict[str, Any]]]:
        """What a subscription to topics starting with ``prefix`` must be sent, oldest first."""
        kept = [(topic, m) for (_, topic), m in self._newest.items()]
        kept += [(Topic.ALERT, m) for messages in self._alerts.values() for m in messages]
        return sorted(((topic, m) for topic, m in kept if topic.value.encode().startswith(prefix)),
                      key=lambda item: item[1]["sent_at"])


class Publisher:
    """Binds an XPUB socket and sends whatever its channels enqueue, plus each channel's heartbeat every
    ``period``. Given a ``camera``, it opens that camera's channel itself and ``publish``/``close`` are its."""

    def __init__(self, endpoint: str, camera: str | None = None, status: Callable[[], Body] | None = None,
                 period: float = 1.0, hwm: int = 1000, context: zmq.Context | None = None,
                 curve: ServerCurve | None = None, sinks: Sequence[Sink] = ()) -> None:
        self.endpoint = endpoint = check_endpoint(endpoint)
        self._period = period
        self._context = context or zmq.Context.instance()
        self._socket = self._context.socket(zmq.XPUB)
        self._socket.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscriber's subscription, not only a topic's first
        self._socket.setsockopt(zmq.SNDHWM, hwm)
        self._socket.setsockopt(zmq.LINGER, 500)
        self._authenticator = None
        if curve is not None:
            try:
                self._authenticator = curve.apply(self._socket, self._context)
            except Exception:
                self._socket.close(0)
                raise
        try:
            self._socket.bind(endpoint)
        except zmq.ZMQError as err:
            self._socket.close(0)
            if self._authenticator is not None:
                self._authenticator.stop()
            for sink in sinks:
                sink.close()
            hint = " (is another monitor running there?)" if err.errno == zmq.EADDRINUSE else ""
            raise PublisherError(f"{endpoint}: cannot bind the publisher: {err.strerror}{hint}") from None
        if not is_loopback(endpoint) and curve is None:
            log.warning("publishing on %s, reachable beyond this machine, without encryption: anyone who can "
                        "connect reads every alert (see `crashwatch keys` and --curve-secret)", endpoint)
        self._queue: queue.SimpleQueue[tuple[Channel, Topic, dict[str, Any]] | threading.Event | None] = \
            queue.SimpleQueue()
        self._channels: list[Channel] = []
        self._lock = threading.Lock()
        self._last = LastValues()  # the sender thread's alone
        self.default = self.channel(camera, status, sinks) if camera is not None else None
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._thread.start()

    def channel(self, camera: str, status: Callable[[], Body] | None = None, sinks: Sequence[Sink] = ()) -> Channel:
        """Open ``camera``'s channel; its heartbeat starts with the next beat."""
        channel = Channel(self, camera, status, sinks)
        with self._lock:
            self._channels.append(channel)
        return channel

    def enqueue(self, channel: Channel, topic: Topic, message: dict[str, Any]) -> None:
        self._queue.put((channel, topic, message))

    def detach(self, channel: Channel) -> None:
        """Stop ``channel``'s heartbeat once what it enqueued so far is sent (waits at most 2 s)."""
        with self._lock:
            if channel in self._channels:
                self._channels.remove(channel)
        if self._thread.is_alive():
            done = threading.Event()
            self._queue.put(done)
            done.wait(timeout=2.0)

    # The single camera's channel, for a publisher opened with ``camera``: the publisher is then its outlet.

    def publish(self, body: Body) -> dict[str, Any]:
        return self._camera().publish(body)

    def delivery(self) -> dict[str, Any]:
        return self._camera().delivery()

    def _camera(self) -> Channel:
        if self.default is None:
            raise ValueError("a publisher opened without a camera publishes through its channels")
        return self.default

    def close(self, final_status: bool = True) -> None:
        """Close every channel (each sends what is queued and a last status), then the socket."""
        with self._lock:
            channels = list(self._channels)
        for channel in channels:
            channel.close(final_status)
        self._queue.put(None)
        self._thread.join(timeout=2.0)
        self._socket.close()
        if self._authenticator is not None:
            self._authenticator.stop()

    def _send(self, channel: Channel, topic: Topic, message: dict[str, Any]) -> None:
        message["sent_at"] = time.time()
        if self._transmit(topic, message):
            channel.sent += 1
        else:
            channel.dropped += 1
        self._last.keep(channel, topic, message)
        for sink in channel.sinks:
            try:
                sink.send(topic, message)
            except Exception:  # a sink's bug must not silence ZeroMQ or the heartbeat
                log.exception("the %s sink failed to take a %s message", sink.name, topic.value)

    def _transmit(self, topic: Topic, message: dict[str, Any]) -> bool:
        try:
            self._socket.send_multipart([topic.value.encode(), json.dumps(message).encode()], flags=zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def _welcome(self) -> None:
        """Answer each new subscription with the current state, marked as a replay (not again to the sinks)."""
        while self._socket.poll(0, zmq.POLLIN):
            subscription = self._socket.recv()
            if subscription[:1] == bytes([SUBSCRIBE]):
                for topic, message in self._last.matching(subscription[1:]):
                    self._transmit(topic, {**message, "replay": True, "replayed_at": time.time()})

    def _beat(self) -> None:
        with self._lock:
            beats = [(c, c.status) for c in self._channels if c.status is not None]
        for channel, status in beats:
            channel.publish(status())

    def _run(self) -> None:
        next_beat = time.monotonic()
        while True:
            if time.monotonic() >= next_beat:
                self._beat()
                next_beat += self._period
                if next_beat < time.monotonic():  # we were held up: no burst of catch-up beats
                    next_beat = time.monotonic() + self._period
            self._welcome()
            try:
                item = self._queue.get(timeout=min(max(next_beat - time.monotonic(), 0.0), SUBSCRIPTION_POLL_S))
            except queue.Empty:
                continue
            if item is None:
                break
            self._handle(item)
        while True:  # drain what came in behind the stop marker
            try:
                self._handle(self._queue.get_nowait())
            except queue.Empty:
                break

    def _handle(self, item: tuple[Channel, Topic, dict[str, Any]] | threading.Event | None) -> None:
        """Send a message, or tell a detaching channel that what it enqueued before is sent."""
        if isinstance(item, threading.Event):
            with self._lock:
                self._last.keep_only(self._channels)
            item.set()
        elif item is not None:
            self._send(*item)
