"""Alerts over MQTT: a paho client fed from the durable outbox, for brokers and fleets beyond this machine.

Topics are ``PREFIX/CAMERA/{alert,explanation,level,risk,status,health,availability}``. An alert (and its
explanation) is written to the outbox (on disk)
before ``send`` returns and leaves it only once the broker has acknowledged it (QoS 1 PUBACK), so neither a
broker outage nor a crash of the monitor loses one; alerts go out strictly in order, one in flight at a time,
each stamped with ``delivered_at`` beside its original ``seq`` and ``sent_at``. Risk (only with
``publish_risk``) goes the same way at QoS 0 and is dropped first when the outbox is full. Status is not
queued: the latest is published, retained, at most every ``status_period``, naming this client
(``mqtt_client``). ``availability`` says ``online`` (retained) on every connect and ``offline`` on close, or
through the broker's last will when the monitor dies. The sink listens on its own status topic: a live status
there from another client is a second monitor publishing under this camera's name, and is warned about. Given the
camera's ``Controls``, it also announces the camera to Home Assistant (``homeassistant``: the discovery configs
and the controls' states, retained, on every connect), applies what is published to the control topics, and
holds back alert messages while notifications are suspended.

``send`` never blocks on the broker and never raises for it: the network is paho's thread, delivery is ours,
and a broker that cannot be reached, refuses us or fails TLS verification is one warning naming the broker
(redacted) and the reason, in ``status()['last_error']``, while the client keeps retrying (1 s doubling to
``RECONNECT_MAX_S``, 5 s).

The module is one class past 300 lines, ``MqttSink``: its delivery state (the row in flight, the announcement,
the status to send) is shared by paho's callbacks and the delivery thread, and reads best in one place; the
broker's URL and credentials are ``mqtt_target``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paho.mqtt.enums import MQTTErrorCode

from crashwatch.monitor.controls import Controls, ControlState
from crashwatch.monitor.messages import Topic
from crashwatch.monitor.transports import homeassistant
from crashwatch.monitor.transports.mqtt_target import PASSWORD_ENV, USERNAME_ENV, MqttError, MqttTarget
from crashwatch.monitor.transports.outbox import Outbox, OutboxError, Row

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0  # for the TCP connect and the TLS handshake, each
RECONNECT_MAX_S = 5  # retries double from 1 s to this: an alert waits at most this long after the broker returns
CREDENTIALS_HINT = (f"check the user name and password (in the URL, the password file, or {USERNAME_ENV} and "
                    f"{PASSWORD_ENV})")


def _check_topic_part(name: str, value: str, slash: bool) -> None:
    """A camera name or prefix that would change the topic's meaning (a wildcard, an extra level) is refused."""
    bad = set("+#\0") | (set() if slash else {"/"})
    if not value or bad & set(value) or value.startswith("/") or value.endswith("/"):
        forbidden = "'+' or '#'" if slash else "'/', '+' or '#'"
        raise MqttError(f"MQTT {name} {value!r}: must be non-empty, without {forbidden}, and not start or end "
                        "with '/'")


@dataclass
class _InFlight:
    """The outbox row handed to paho, waiting for its on_publish (PUBACK for QoS 1, written for QoS 0)."""

    mid: int
    row_id: int
    qos: int


@dataclass
class _Work:
    """What the delivery thread does next, taken under the lock and done outside it."""

    acked: _InFlight | None = None
    announce: bool = False  # say "online"
    offline: bool = False  # say "offline" (closing)
    status: dict[str, Any] | None = None
    peek: bool = False  # deliver the next outbox row
    controls: bool = False  # publish the controls' states (and, with announce, the discovery configs)

    def __bool__(self) -> bool:
        return bool(self.acked or self.announce or self.offline or self.status is not None or self.peek
                    or self.controls)


def why_not_connected(target: MqttTarget, err: BaseException | None) -> str:
    """A failure to connect to ``target`` in words."""
    where = f"{target.host}:{target.port}"
    if isinstance(err, ssl.SSLCertVerificationError):
        against = f"against {target.ca}" if target.ca else "against the system's CA store (give the CA file that " \
            "signed it)"
        return f"the broker's TLS certificate does not verify {against}: {err.verify_message}"
    if isinstance(err, ssl.SSLError):
        return f"TLS handshake failed: {err.reason or err}"
    if isinstance(err, socket.gaierror):
        return f"cannot resolve host {target.host!r}: {err.strerror}"
    if isinstance(err, ConnectionRefusedError):
        return f"connection refused by {where} (no broker listening there?)"
    if isinstance(err, TimeoutError):
        return f"no answer from {where} within {CONNECT_TIMEOUT_S:.0f} s"
    if isinstance(err, OSError):
        return f"cannot connect to {where}: {err.strerror or err}"
    return f"cannot connect to {where}"


def refusal(reason_code: Any) -> str:
    """The broker's refusal of a connection in words, with what to check for credentials."""
    hint = f"; {CREDENTIALS_HINT}" if str(reason_code) in ("Not authorized", "Bad user name or password") else ""
    return f"the broker refused the connection: {reason_code}{hint}"


def probe_broker(target: MqttTarget) -> str | None:
    """Connect once and leave (``crashwatch doctor``): None when the broker accepts this client, else why not."""
    client, _ = target.client("doctor")
    client.connect_timeout = CONNECT_TIMEOUT_S
    answered, codes = threading.Event(), []

    def on_connect(_client: Any, _data: Any, _flags: Any, code: Any, _props: Any) -> None:
        codes.append(code)
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(target.host, target.port, keepalive=10)
    except (OSError, ValueError) as err:
        return why_not_connected(target, err)
    client.loop_start()
    try:
        if not answered.wait(CONNECT_TIMEOUT_S):
            return f"no answer from {target.host}:{target.port} within {CONNECT_TIMEOUT_S:.0f} s"
        return refusal(codes[0]) if codes[0].is_failure else None
    finally:
        client.disconnect()
        client.loop_stop()


def default_outbox(camera: str) -> Path:
    """Where a camera's outbox lives unless told: the user's state folder, so that a restart from any working
    directory finds the alerts the last run left."""
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "crashwatch" / f"outbox-{camera}.sqlite"


class MqttSink:
    """Publishes one camera's messages to an MQTT broker through the outbox at ``outbox_path``."""

    name = "mqtt"

    def __init__(self, target: MqttTarget, camera: str, prefix: str = "crashwatch", *, outbox_path: Path,
                 publish_risk: bool = False, status_period: float = 5.0, keepalive: int = 10,
                 max_messages: int = 10000, max_age_s: float = 7 * 86400, controls: Controls | None = None,
                 discovery_prefix: str | None = homeassistant.DEFAULT_DISCOVERY) -> None:
        _check_topic_part("camera name", camera, slash=False)
        _check_topic_part("topic prefix", prefix, slash=True)
        self.target = target
        self.publish_risk = publish_risk
        self.status_period = status_period
        self.delivered = 0
        self.last_error: str | None = None
        self.camera = camera
        self._base = f"{prefix}/{camera}"
        self._outbox = Outbox(outbox_path, max_messages, max_age_s)
        self._unwritten = 0  # messages the outbox could not take (disk full, file damaged)
        self._unwritten_critical = 0
        self._reported: str | None = None  # the reason last logged: a reason is logged once until it changes
        self._cond = threading.Condition()
        self._connected = False
        self._epoch = 0  # connections lost so far: a QoS 0 publish racing a disconnect is sent again
        self._maybe_rows = True  # the outbox may hold undelivered rows (a restart delivers what was left)
        self._inflight: _InFlight | None = None
        self._acked: set[int] = set()
        self._announce = False
        self._status: dict[str, Any] | None = None
        self._status_at = float("-inf")
        self._closing = False
        self._said_offline = False
        self._deadline = float("inf")
        self.controls = controls
        self.discovery_prefix = discovery_prefix
        self.suppressed = 0  # alerts held back while notifications were suspended
        self._controls_due = False
        self._shown: tuple[ControlState, float | None] | None = None  # the controls' state last published
        self._in_force: float | None = None  # the threshold the monitor applies (from its status)
        if controls is not None:
            controls.listeners.append(self._controls_changed)

        # Unique to this process: a broker disconnects a client whose id another connection takes, and two
        # monitors of one camera name (on two hosts, or with two outboxes) must not knock each other off.
        self._client, self.client_id = target.client(camera)
        self._client.will_set(self._topic("availability"), "offline", qos=1, retain=True)
        self._client.reconnect_delay_set(1, RECONNECT_MAX_S)
        self._client.connect_timeout = CONNECT_TIMEOUT_S
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message
        self._client.connect_async(target.host, target.port, keepalive)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="mqtt-delivery", daemon=True)
        self._thread.start()

    def send(self, topic: Topic, message: dict[str, Any]) -> None:
        """Queue ``message`` for its topic; returns at once whatever the broker's state (an alert is on disk)."""
        if topic is Topic.STATUS:
            with self._cond:
                self._status = message
                self._in_force = (message.get("controls") or {}).get("threshold_in_force")
                self._controls_due |= self.controls is not None and self._shown is not None and \
                    self._shown[1] != self._in_force
                self._cond.notify_all()
            return
        alerting = topic in (Topic.ALERT, Topic.EXPLANATION)  # an explanation goes with its alert, kept alike
        if alerting and self.controls is not None and self.controls.state.suspended():
            with self._cond:
                self.suppressed += topic is Topic.ALERT
            return
        if topic is Topic.PREVIEW or (topic is Topic.RISK and not self.publish_risk):
            return  # previews are frames for a dashboard on the ZeroMQ link, not for a fleet's broker
        critical = alerting
        payload = json.dumps({**message, "sent_at": message.get("sent_at", time.time())})
        try:
            if topic in (Topic.HEALTH, Topic.LEVEL):  # states: retained, so a newcomer knows them at once
                self._outbox.put(self._topic(topic.value), payload, qos=1, retain=True)
            else:
                self._outbox.put(self._topic(topic.value), payload, qos=1 if critical else 0, critical=critical)
        except OutboxError as err:
            with self._cond:
                self._unwritten += 1
                self._unwritten_critical += critical
            self._problem(f"{topic.value} message dropped: {err}", retrying=False)
            return
        with self._cond:
            self._maybe_rows = True
            self._cond.notify_all()

    def status(self) -> dict[str, Any]:
        """The sink's state for the monitor's ``status`` message; credentials never appear in it."""
        try:
            stats = self._outbox.stats()
        except OutboxError as err:
            self._problem(str(err))
            stats = {"queued": None, "oldest_age_s": None, "dropped": self._outbox.dropped,
                     "dropped_critical": self._outbox.dropped_critical}
        with self._cond:
            return {"broker": self.target.display, "connected": self._connected, "queued": stats["queued"],
                    "oldest_age_s": stats["oldest_age_s"], "dropped": stats["dropped"] + self._unwritten,
                    "dropped_critical": stats["dropped_critical"] + self._unwritten_critical,
                    "delivered": self.delivered, "last_error": self.last_error,
                    "max_messages": self._outbox.max_messages, "max_age_s": self._outbox.max_age_s,
                    **({"alerts_suppressed": self.suppressed} if self.controls is not None else {})}

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._connected

    def close(self, timeout: float = 2.0) -> None:
        """Say ``offline``, deliver what is queued for up to ``timeout`` seconds, then disconnect. What is left
        stays in the outbox for the next start."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._deadline = time.monotonic() + timeout
            self._cond.notify_all()
        self._thread.join(timeout + 1.0)
        self._client.disconnect()
        self._client.loop_stop()
        self._outbox.close()

    def _topic(self, name: str) -> str:
        return f"{self._base}/{name}"

    # The delivery thread: one message in flight; all waiting is on the condition, no paho call under it.

    def _run(self) -> None:
        while (work := self._take_work()) is not None:
            try:
                self._do(work)
            except OutboxError as err:
                self._problem(str(err))
                with self._cond:  # a damaged or full disk: try again in a second, not in a busy loop
                    self._maybe_rows = True
                    self._cond.wait_for(lambda: self._closing, timeout=1.0)

    def _take_work(self) -> _Work | None:
        """Wait until there is something to do and take it; None once closing is done (all delivered, the
        broker gone, or the deadline passed)."""
        with self._cond:
            while True:
                now = time.monotonic()
                if work := self._due_work(now):
                    return work
                if self._closing and (not self._connected or now >= self._deadline or (
                        self._inflight is None and not self._maybe_rows and self._status is None)):
                    return None
                self._cond.wait(self._idle_timeout(now))

    def _due_work(self, now: float) -> _Work:
        work = _Work()
        if self._closing and not self._said_offline:
            # Before the flush, so that a flush cut short still leaves "offline" (a clean disconnect fires no
            # will), and from this thread, so that it cannot overtake an "online" of a reconnect.
            work.offline = self._said_offline = True
        if self._inflight is not None and self._inflight.mid in self._acked:  # even when closing unconnected
            work.acked, self._inflight = self._inflight, None
            self._acked.discard(work.acked.mid)
            self._maybe_rows = True
        if not self._connected or (self._closing and now >= self._deadline):
            return work
        work.announce, self._announce = self._announce and not self._closing, False
        if self.controls is not None and self._shown is not None and self._shown[0].suspended() and \
                not self._shown[0].suspended(now=time.time()):
            self._controls_due = True  # the suspension ran out: say so
        work.controls, self._controls_due = (self._controls_due or work.announce) and self.controls is not None \
            and not self._closing, False
        if self._status is not None and (self._closing or now - self._status_at >= self.status_period):
            work.status, self._status, self._status_at = self._status, None, now
        if self._inflight is None and self._maybe_rows:
            work.peek, self._maybe_rows = True, False
        return work

    def _idle_timeout(self, now: float) -> float | None:
        waits = []
        if self._shown is not None and self._shown[0].suspended():  # wake when the suspension runs out
            waits.append(self._shown[0].suspended_until - time.time())
        if self._status is not None and self._connected:
            waits.append(self._status_at + self.status_period - now)
        if self._closing:
            waits.append(self._deadline - now)
        return max(min(waits), 0.0) if waits else None

    def _do(self, work: _Work) -> None:
        if work.acked is not None:
            self._outbox.remove(work.acked.row_id)
            with self._cond:
                self.delivered += 1
        if work.offline:
            self._client.publish(self._topic("availability"), "offline", qos=1, retain=True)
        if work.announce:
            self._client.publish(self._topic("availability"), "online", qos=1, retain=True)
            if self.controls is not None and self.discovery_prefix is not None:
                configs = homeassistant.discovery(self.discovery_prefix, self._base, self.camera, self.publish_risk)
                for topic, config in configs.items():
                    self._client.publish(topic, json.dumps(config), qos=1, retain=True)
        if work.controls and self.controls is not None:
            with self._cond:
                in_force = self._in_force
            state = self.controls.state
            for topic, payload in homeassistant.states(state, in_force).items():
                self._client.publish(self._topic(topic), payload, qos=1, retain=True)
            with self._cond:
                self._shown = (state, in_force)
        if work.status is not None:
            status = {**work.status, "mqtt_client": self.client_id}
            self._client.publish(self._topic("status"), json.dumps(status), qos=0, retain=True)
        if work.peek:
            rows = self._outbox.peek(1)
            if rows:
                self._publish_row(rows[0])

    def _publish_row(self, row: Row) -> None:
        message = json.loads(row.payload)
        message["delivered_at"] = time.time()
        with self._cond:
            epoch = self._epoch
        info = self._client.publish(row.topic, json.dumps(message), qos=row.qos, retain=row.retain)
        with self._cond:
            lost = row.qos == 0 and (info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._epoch != epoch)
            if lost and info.mid not in self._acked:
                # A QoS 0 publish the connection took with it: sent again on the next connect. (paho keeps a
                # QoS 1 message itself and sends it again on reconnect, so that one stays in flight.)
                self._maybe_rows = True
            else:
                self._inflight = _InFlight(info.mid, row.id, row.qos)
                self._acked &= {info.mid}  # an earlier status's on_publish is of no more interest
            self._cond.notify_all()

    # paho's callbacks, on its network thread: state changes under the condition, nothing slow.

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._problem(refusal(reason_code))
            return
        with self._cond:
            self._connected = True
            self._announce = True
            self._maybe_rows = True
            self._reported = None
            self._cond.notify_all()
        client.subscribe(self._topic("status"), qos=0)  # a second monitor of this name shows itself there
        if self.controls is not None:
            for setter in homeassistant.SETTERS:
                client.subscribe(self._topic(setter), qos=1)
        log.info("%s: connected", self.target.display)

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this from inside its `except OSError` around the connect, and passes no exception: the one
        # being handled is the reason.
        self._problem(why_not_connected(self.target, sys.exc_info()[1]))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            was_connected, self._connected = self._connected, False
            self._epoch += 1
            if self._inflight is not None and self._inflight.qos == 0 and self._inflight.mid not in self._acked:
                self._inflight = None  # paho drops unsent QoS 0 packets on reconnect
                self._maybe_rows = True
            closing = self._closing
            self._cond.notify_all()
        if was_connected and not closing:
            detail = "" if str(reason_code) in ("Success", "Unspecified error") else f": {reason_code}"
            self._problem(f"connection lost{detail}")

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        """Marks ``mid`` done; the delivery thread, waiting for it, takes its row out of the outbox. Not here:
        paho calls this holding its message lock, which an fsync would hold up, and a PUBACK can come before
        ``publish`` has returned the mid to us."""
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()

    def _controls_changed(self, state: ControlState) -> None:
        with self._cond:
            self._controls_due = True
            self._cond.notify_all()

    def _on_message(self, client, userdata, message) -> None:
        """A control set by the operator; or a live status of this camera's name from another client: two
        monitors mix their messages. (A retained status may be a dead run's, waiting for its last will.)"""
        setter = message.topic[len(self._base) + 1:]
        if setter in homeassistant.SETTERS and self.controls is not None:
            self._apply(self.controls, setter, message.payload)
            return
        if message.retain:
            return
        try:
            other = json.loads(message.payload).get("mqtt_client")
        except (ValueError, AttributeError):
            other = "unknown"
        if other != self.client_id:
            self._problem(f"another monitor (MQTT client {other}) is publishing as camera "
                          f"{self.camera!r} under {self._base}: alerts, status and availability of "
                          "the two mix; give each camera its own name", retrying=False)

    def _apply(self, controls: Controls, setter: str, payload: bytes) -> None:
        """Apply a control; a bad value is refused with the reason, on ``PREFIX/CAMERA/control/error`` and in
        the log, and nothing changes."""
        text = payload.decode("utf-8", errors="replace")
        try:
            homeassistant.SETTERS[setter](controls, text)
        except ValueError as err:
            log.warning("MQTT %s/%s: refused: %s", self._base, setter, err)
            self._client.publish(self._topic(homeassistant.CONTROL_ERROR),
                                 json.dumps({"topic": self._topic(setter), "payload": text, "reason": str(err)}), qos=1)
            return
        log.warning("MQTT %s/%s: %s, set by the operator", self._base, setter, text)

    def _problem(self, reason: str, retrying: bool = True) -> None:
        with self._cond:
            self.last_error = reason
            new, self._reported = reason != self._reported, reason
        if new:
            log.warning("MQTT %s: %s%s", self.target.display, reason,
                        "; retrying in the background" if retrying else "")
