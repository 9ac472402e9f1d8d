"""What the dashboard knows, built from the monitors' own messages: per camera the newest status, risk and
preview, the risk of the last minute and whether it has gone silent; per alert its start, peak, duration, clip
and the risk around it.

One object reads the messages (the server's event loop calls ``apply`` for each and ``tick`` four times a
second), so ``/api/state``, the page and a program reading ``/ws`` see the same thing. Cameras are known by
name; the same name heard from a second endpoint is told apart as ``NAME@ENDPOINT``.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from crashwatch.monitor.messages import Alert, AlertEvent, Explanation, Health, Message, Preview, Risk, Status, Topic
from crashwatch.review.events import ClipError, EventClip

SCHEMA = "crashwatch.dashboard/1"
SILENT_AFTER_S = 2.0  # two missed heartbeats (a monitor sends status every second): on the page within 3 s
HISTORY_S = 60.0  # the risk a camera's chart shows
BEFORE_ALERT_S, AFTER_ALERT_S = 10.0, 5.0  # the risk kept around an alert, for its own chart
MAX_ALERTS = 200  # the oldest go first
MAX_ALERT_POINTS = 2400  # 20 minutes of 0.5 s strides: an alert that never ends does not grow without bound

Point = tuple[float, float, bool]  # stream seconds, probability, alert active


class ClipState:
    NONE = "none"  # the monitor runs without --events
    UNSERVED = "unserved"  # the dashboard runs without --events
    PENDING = "pending"  # the monitor is still writing it (or it is not in the events folder)
    READY = "ready"


@dataclass
class AlertRecord:
    """One alert episode as the page lists it."""

    key: str  # unique in this dashboard: a monitor's alert ids start again with each run
    camera: str
    alert_id: int
    started_at: float  # wall clock of the start message
    start: float  # stream seconds
    peak: float
    peak_at: float
    threshold: float
    clip: str | None  # its name in the events folder
    clip_state: str
    end: float | None = None
    duration: float | None = None
    reason: str | None = None
    risk: collections.deque[Point] = field(default_factory=lambda: collections.deque(maxlen=MAX_ALERT_POINTS))
    gathering: bool = True  # risk points still belong to it (until AFTER_ALERT_S past its end)
    explanation: dict[str, Any] | None = None  # the newest ``explanation`` message of it, as sent

    def to_json(self) -> dict[str, Any]:
        clip = None if self.clip is None else {
            "name": self.clip, "state": self.clip_state,
            "video": f"/events/{self.clip}/video", "sidecar": f"/events/{self.clip}/sidecar",
            "evidence": f"/events/{self.clip}/evidence"}
        return {"key": self.key, "camera": self.camera, "alert_id": self.alert_id, "started_at": self.started_at,
                "start": self.start, "peak": self.peak, "peak_at": self.peak_at, "threshold": self.threshold,
                "end": self.end, "duration": self.duration, "reason": self.reason, "active": self.end is None,
                "clip": clip, "risk": [list(p) for p in self.risk], "explanation": self.explanation}


@dataclass
class CameraView:
    """One camera as the page shows it; ``status``, ``risk`` and ``preview`` are the newest messages as sent."""

    id: str
    name: str
    endpoint: str
    heard: float  # monotonic time of its last message
    heard_at: float  # wall clock of it
    silent: bool = False
    status: dict[str, Any] | None = None
    risk: dict[str, Any] | None = None
    preview: dict[str, Any] | None = None
    health: dict[str, Any] | None = None
    history: collections.deque[Point] = field(default_factory=collections.deque)
    missed: dict[str, int] = field(default_factory=dict)  # topic -> messages lost on the way (seq gaps)
    received: dict[str, int] = field(default_factory=dict)  # topic -> messages heard (for the metrics)
    alerts: int = 0  # alert episodes heard (for the metrics: the list keeps only the newest)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "endpoint": self.endpoint, "silent": self.silent,
                "heard_at": self.heard_at, "status": self.status, "risk": self.risk, "preview": self.preview,
                "health": self.health, "history": [list(p) for p in self.history], "missed": self.missed}

    def reception(self) -> dict[str, Any]:
        """The ``camera`` event: whether it is heard, and what was lost on the way."""
        return {"type": "camera", "camera": self.id, "silent": self.silent, "heard_at": self.heard_at,
                "missed": self.missed}


class DashboardState:
    """The cameras and alerts heard on ``endpoints``; ``events_dir`` is where their clips are served from."""

    def __init__(self, endpoints: Sequence[str], events_dir: Path | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.events_dir = events_dir
        self.clock = clock
        self.endpoints: dict[str, dict[str, Any]] = {e: {"heard": False, "heard_at": None, "process": None}
                                                     for e in endpoints}
        self.cameras: dict[str, CameraView] = {}
        self.alerts: collections.deque[AlertRecord] = collections.deque(maxlen=MAX_ALERTS)
        self._open: dict[tuple[str, int], AlertRecord] = {}
        self._count = 0

    def apply(self, endpoint: str, message: Message) -> tuple[str | None, list[dict[str, Any]]]:
        """Take one message: the id of its camera (None for a fleet's ``process`` heartbeat) and the dashboard
        events it causes (a camera heard again, an alert record changed), to send beside it."""
        now, wall = self.clock(), time.time()
        self.endpoints[endpoint].update(heard=True, heard_at=wall)
        if message.topic == Topic.PROCESS.value:
            self.endpoints[endpoint]["process"] = message.wire
            return None, []
        camera = self._camera(endpoint, message.camera)
        camera.heard, camera.heard_at = now, wall
        camera.received[message.topic] = camera.received.get(message.topic, 0) + 1
        events = []
        if message.missed:
            camera.missed[message.topic] = camera.missed.get(message.topic, 0) + message.missed
        if camera.silent or message.missed:
            camera.silent = False
            events.append(camera.reception())
        body = message.body
        if isinstance(body, Status):
            camera.status = message.wire
        elif isinstance(body, Preview):
            camera.preview = message.wire
        elif isinstance(body, Health):
            camera.health = message.wire
        elif isinstance(body, Risk):
            camera.risk = message.wire
            events += self._risk(camera, body)
        elif isinstance(body, Alert):
            events.append({"type": "alert", "alert": self._alert(camera, body, message.sent_at).to_json()})
        elif isinstance(body, Explanation):
            record = self._explained(camera, body)
            if record is not None:
                record.explanation = message.wire
                events.append({"type": "alert", "alert": record.to_json()})
        return camera.id, events

    def tick(self) -> list[dict[str, Any]]:
        """The events time alone causes: a camera falling silent, a clip the monitor has finished writing."""
        now, events = self.clock(), []
        for camera in self.cameras.values():
            silent = now - camera.heard > SILENT_AFTER_S
            if silent != camera.silent:
                camera.silent = silent
                events.append(camera.reception())
        for record in self.alerts:
            if record.clip_state == ClipState.PENDING and self._clip_complete(record.clip):
                record.clip_state = ClipState.READY
                events.append({"type": "alert", "alert": record.to_json()})
        return events

    def snapshot(self) -> dict[str, Any]:
        """``/api/state``, and the first thing a websocket receives."""
        return {
            "schema": SCHEMA, "now": time.time(), "silent_after_s": SILENT_AFTER_S,
            "endpoints": {e: {**info, "cameras": [c.id for c in self.cameras.values() if c.endpoint == e]}
                          for e, info in self.endpoints.items()},
            "cameras": {c.id: c.to_json() for c in self.cameras.values()},
            "alerts": [r.to_json() for r in self.alerts],
        }

    def _camera(self, endpoint: str, name: str) -> CameraView:
        for camera in self.cameras.values():
            if camera.name == name and camera.endpoint == endpoint:
                return camera
        camera_id = name if name not in self.cameras else f"{name}@{endpoint}"
        camera = self.cameras[camera_id] = CameraView(camera_id, name, endpoint, self.clock(), time.time())
        return camera

    def _risk(self, camera: CameraView, risk: Risk) -> list[dict[str, Any]]:
        history, events = camera.history, []
        if history and risk.t < history[-1][0]:  # the monitor started again: its stream time too
            history.clear()
            for record in self._gathering(camera):
                record.gathering = False
                self._open.pop((camera.id, record.alert_id), None)
        point = (risk.t, risk.probability, risk.alert_active)
        history.append(point)
        while history[0][0] < risk.t - HISTORY_S:
            history.popleft()
        for record in self._gathering(camera):
            if record.end is not None and risk.t > record.end + AFTER_ALERT_S:
                record.gathering = False
                events.append({"type": "alert", "alert": record.to_json()})
            else:
                record.risk.append(point)
        return events

    def _gathering(self, camera: CameraView) -> list[AlertRecord]:
        return [r for r in self.alerts if r.camera == camera.id and r.gathering]

    def _alert(self, camera: CameraView, alert: Alert, sent_at: float) -> AlertRecord:
        key = (camera.id, alert.alert_id)
        record = self._open.get(key)
        if record is None or alert.event is AlertEvent.START:
            if record is not None:  # its monitor died in it and started again
                record.gathering = False
            self._count += 1
            camera.alerts += 1
            clip = None if alert.clip is None else Path(alert.clip).name
            state = ClipState.NONE if clip is None else \
                ClipState.UNSERVED if self.events_dir is None else ClipState.PENDING
            record = AlertRecord(f"{camera.id}:{self._count}", camera.id, alert.alert_id, sent_at, alert.start,
                                 alert.peak, alert.peak_at, alert.threshold, clip, state)
            record.risk.extend(p for p in camera.history if p[0] >= alert.start - BEFORE_ALERT_S)
            self._open[key] = record
            self.alerts.append(record)
        record.peak, record.peak_at = alert.peak, alert.peak_at
        if alert.event is AlertEvent.END:
            record.end, record.duration, record.reason = alert.t, alert.duration, alert.reason
            del self._open[key]
        return record

    def _explained(self, camera: CameraView, explanation: Explanation) -> AlertRecord | None:
        """The alert an explanation is of: the newest of its camera with its id (it may have ended since)."""
        return next((r for r in reversed(self.alerts) if r.camera == camera.id and r.alert_id == explanation.alert_id),
                    None)

    def _clip_complete(self, name: str) -> bool:
        try:
            return EventClip.find(self.events_dir, name).complete()
        except ClipError:  # not there yet
            return False
