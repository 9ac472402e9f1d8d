"""The monitor's messages: topics, schema version, alert event kinds, and one type per topic.

Every producer builds a message through the type of its topic and every reader (subscriber, demo,
evaluation, benchmarks) reads it back through the same type, so the wire layout is written here only, as
openpilot's ``fill_model_msg`` is the one place that knows its message. On the wire a message is two ZeroMQ
frames, ``[topic, JSON]``; the JSON is ``envelope``'s header (``schema``, a per-topic ``seq``, ``camera``,
``sent_at``) followed by the body's fields. A message resent to a subscriber that joined late (the newest
heartbeat, an open alert) is the same message with ``replay: true`` and ``replayed_at`` added. A new field
goes into its type's dataclass, ``to_wire`` and ``from_wire``; a change that breaks readers bumps
``SCHEMA_VERSION``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, ClassVar, Protocol, TypeVar, Union

SCHEMA_VERSION = 1


class Topic(str, Enum):
    RISK = "risk"
    ALERT = "alert"
    STATUS = "status"
    PROCESS = "process"  # a monitor of many cameras: the shared model's batches and the process's memory
    PREVIEW = "preview"  # with --preview: a small JPEG of the newest frame, at most twice a second
    HEALTH = "health"  # whether the camera can see: on each change
    LEVEL = "level"  # the warning level (none, caution, imminent): on each change
    EXPLANATION = "explanation"  # why an alert started or rose: each frame's share, where in the frame


TOPIC_NAMES = tuple(topic.value for topic in Topic)


class AlertEvent(str, Enum):
    """What an ``alert`` message says of its episode."""

    START = "start"
    UPDATE = "update"  # the peak rose by the policy's update step
    END = "end"


class Level(str, Enum):
    """The graded warning a stride stands at (``crashwatch.monitor.pipeline.levels``): ``imminent`` is an open
    alert, ``caution`` the grade below it (a lower threshold, or the risk rising fast towards the alert's)."""

    NONE = "none"
    CAUTION = "caution"
    IMMINENT = "imminent"

    @property
    def rank(self) -> int:
        return LEVELS.index(self)


LEVELS = (Level.NONE, Level.CAUTION, Level.IMMINENT)


class FlatMessage:
    """A message whose wire form is its fields as they are (``ProcessStatus``, ``Preview``, ``Health``)."""

    def to_wire(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_wire(cls: type[FlatT], m: dict[str, Any]) -> FlatT:
        return cls(**_own_fields(cls, m))


FlatT = TypeVar("FlatT", bound=FlatMessage)


def schema_of(topic: Topic) -> str:
    return f"crashwatch.{topic.value}/{SCHEMA_VERSION}"


def envelope(topic: Topic, seq: int, camera: str, body: dict[str, Any]) -> dict[str, Any]:
    """The message as sent: the header, then the body's fields."""
    return {"schema": schema_of(topic), "seq": seq, "camera": camera, "sent_at": time.time(), **body}


@dataclass(frozen=True)
class Risk:
    """One stride's answer: the window scored, its probability, and what it cost."""

    TOPIC: ClassVar[Topic] = Topic.RISK

    t: float  # stream seconds of the window's end
    window_start: float
    frame_ids: list[int]
    frame_times: list[float]
    probability: float
    threshold: float
    alert_active: bool
    encode_ms: float
    score_ms: float
    frames_encoded: int
    partial: bool  # the window reaches back before the stream's first frame (padded with it, as in training)
    captured_at: float  # wall clock of the newest frame's capture
    latency_ms: float  # from that capture to building this message
    effective_stride_s: float | None = None  # since the previous window (None for the first after a start)
    stride_reason: str | None = None  # why that is longer than the stride; None when it is not
    late: bool = False  # latency_ms past the window's frame spacing (``status.realtime.late_after_s``)
    level: Level = Level.NONE  # the warning level after this stride

    @property
    def model_ms(self) -> float:
        return self.encode_ms + self.score_ms

    def to_wire(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "window": {"start": self.window_start, "end": self.t},
            "frame_ids": self.frame_ids,
            "frame_times": self.frame_times,
            "probability": self.probability,
            "threshold": self.threshold,
            "alert_active": self.alert_active,
            "partial": self.partial,
            "timings": {"encode_ms": self.encode_ms, "score_ms": self.score_ms, "model_ms": self.model_ms,
                        "frames_encoded": self.frames_encoded},
            "captured_at": self.captured_at,
            "latency_ms": self.latency_ms,
            "effective_stride_s": self.effective_stride_s,
            "stride_reason": self.stride_reason,
            "late": self.late,
            "level": self.level.value,
        }

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> "Risk":
        timings = m["timings"]
        return cls(t=m["t"], window_start=m["window"]["start"], frame_ids=m["frame_ids"],
                   frame_times=m["frame_times"], probability=m["probability"], threshold=m["threshold"],
                   alert_active=m["alert_active"], encode_ms=timings["encode_ms"], score_ms=timings["score_ms"],
                   frames_encoded=timings["frames_encoded"], partial=m.get("partial", False), captured_at=m["captured_at"],
                   latency_ms=m["latency_ms"], effective_stride_s=m.get("effective_stride_s"),
                   stride_reason=m.get("stride_reason"), late=m.get("late", False),
                   level=Level(m.get("level", Level.NONE.value)))


@dataclass(frozen=True)
class Alert:
    """One event of an alert episode (``AlertTracker`` makes them); a start names the ``model`` and, when the
    monitor records events, the event ``clip``; ``duration`` and ``reason`` come with the end."""

    TOPIC: ClassVar[Topic] = Topic.ALERT

    event: AlertEvent
    alert_id: int
    start: float  # stream seconds the episode started at
    t: float  # stream seconds of this event
    probability: float | None  # None when the stream ended under an open alert
    peak: float
    peak_at: float
    threshold: float
    duration: float | None = None
    reason: str | None = None
    clip: str | None = None
    model: dict[str, Any] | None = None  # with the start: the model that raised it (as in ``Status.model``)
    camera_degraded: list[str] | None = None  # raised while the camera could not see well: why (``Health``)
    caution_since: float | None = None  # with the start: stream seconds of the caution that came before it
    level: Level = Level.IMMINENT  # an alert is the imminent level, whatever its event

    _OPTIONAL: ClassVar[tuple[str, ...]] = ("duration", "reason", "clip", "model", "camera_degraded", "caution_since")

    def to_wire(self) -> dict[str, Any]:
        body = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._OPTIONAL}
        body["event"], body["level"] = self.event.value, self.level.value
        body.update({key: getattr(self, key) for key in self._OPTIONAL if getattr(self, key) is not None})
        return body

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> "Alert":
        return cls(**{**_own_fields(cls, m), "event": AlertEvent(m["event"]),
                      "level": Level(m.get("level", Level.IMMINENT.value))})


@dataclass(frozen=True)
class Status:
    """The heartbeat: the source's state, capture, strides, lag, model latency, and the sinks' counters."""

    TOPIC: ClassVar[Topic] = Topic.STATUS

    source: dict[str, Any]  # kind, name, state, outages, reconnect_attempts, backoff_s, outage_s, outages_total_s,
    #                         last_error
    capture_fps: float
    frames_captured: int
    frames_dropped: int
    strides: int
    strides_skipped: int
    stride_s: float
    lag_s: float | None
    model_ms: dict[str, float] | None  # p50, p90, p99
    alert_active: bool
    level: str | None = None  # the warning level now (``Level``)
    model: dict[str, Any] | None = None  # name, precision, threshold, hash, demo, runtime, zero_shot
    #                                       (``RiskModel.identity``)
    publisher: dict[str, int] | None = None  # sent, dropped
    events: dict[str, Any] | None = None  # written, failed, last_error (locked, open, complete... with
    #                                        --record); only with --events or --record
    effective_stride_s: float | None = None  # between the last two windows scored
    stride_reason: str | None = None  # why that is longer than ``stride_s``; None when it is not
    recording: dict[str, Any] | None = None  # ``LoopRecorder.stats``; only with --record
    sinks: dict[str, dict[str, Any]] | None = None  # per further transport (``mqtt``): its ``status()``
    model_calls: dict[str, Any] | None = None  # failed model calls: state (ok, failing), failures, failing_since,
    #                                            source (the URL and model called), last_error, last_error_at
    realtime: dict[str, Any] | None = None  # whether this machine holds real time with the bundle: holds,
    #                                         encode_ms, score_ms, spacing_s, stride_s, late_after_s, reasons
    probability: float | None = None  # the newest window's (None before the first)
    camera_health: dict[str, Any] | None = None  # whether the camera can see: state (ok, degraded), reasons, since,
    #                                              baseline
    controls: dict[str, Any] | None = None  # with --mqtt: alerts, threshold, suspended_until (the operator's),
    #                                         threshold_in_force
    frames_damaged: int = 0  # frames of a file that could not be decoded (a damaged stretch), skipped
    explanations: dict[str, int] | None = None  # done, skipped, failed (None with --explain off)

    def to_wire(self) -> dict[str, Any]:
        body = {f.name: getattr(self, f.name) for f in fields(self)}
        for optional in ("events", "recording", "sinks", "controls"):
            if body[optional] is None:
                del body[optional]
        return body

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> "Status":
        return cls(**_own_fields(cls, m))


@dataclass(frozen=True)
class ProcessStatus(FlatMessage):
    """The heartbeat of a monitor of many cameras (``crashwatch monitor --config``), beside each camera's own
    ``status``: its cameras' states, the shared model's batches, and the process's memory."""

    TOPIC: ClassVar[Topic] = Topic.PROCESS

    cameras: dict[str, dict[str, Any]]  # name -> state, strides, strides_skipped, effective_stride_s
    batches: dict[str, dict[str, Any]]  # vision, head -> calls, batches, mean_batch, max_batch, ms_per_batch,
    #                                     queue_depth, batched_rows
    memory_mb: float | None  # resident set size
    model: dict[str, Any] | None = None


@dataclass(frozen=True)
class Preview(FlatMessage):
    """A small JPEG of the camera's newest frame (``crashwatch monitor --preview``), for a dashboard's live view.
    The JPEG travels base64 in the JSON, so every topic keeps the same two-frame layout and one decoder."""

    TOPIC: ClassVar[Topic] = Topic.PREVIEW

    frame_id: int
    t: float  # stream seconds of the frame
    captured_at: float  # wall clock of its capture
    width: int
    height: int
    jpeg: str  # the JPEG file's bytes, base64


@dataclass(frozen=True)
class Health(FlatMessage):
    """Whether the camera can see (``crashwatch.monitor.pipeline.health``), sent when that changes: ``ok``, or
    ``degraded`` with the checks that fail (black, blinded, frozen, blurred, obstructed, tilted)."""

    TOPIC: ClassVar[Topic] = Topic.HEALTH

    state: str  # ok, degraded
    reasons: list[str]
    since: float  # wall clock of this change
    t: float  # stream seconds of the frame that changed it
    figures: dict[str, float]  # what the checks measured on that frame


@dataclass(frozen=True)
class LevelChange:
    """The warning level changed (``crashwatch.monitor.pipeline.levels``): what a cab unit sounds
    (``crashwatch alarm``). ``captured_at`` is the capture of the newest frame of the window that changed it, so
    a listener can measure the whole way from the camera to its speaker."""

    TOPIC: ClassVar[Topic] = Topic.LEVEL

    level: Level
    previous: Level
    t: float  # stream seconds of the window's end
    probability: float | None  # None when the stream ended
    reason: str  # why, in words: the threshold crossed, the rise, the alert that opened or ended
    captured_at: float | None  # wall clock of the newest frame's capture (None when no window changed it)
    caution_threshold: float
    alert_threshold: float
    alert_id: int | None = None  # with imminent: the alert it is

    def to_wire(self) -> dict[str, Any]:
        body = {f.name: getattr(self, f.name) for f in fields(self)}
        body["level"], body["previous"] = self.level.value, self.previous.value
        return body

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> "LevelChange":
        return cls(**{**_own_fields(cls, m), "level": Level(m["level"]), "previous": Level(m["previous"])})


@dataclass(frozen=True)
class Explanation(FlatMessage):
    """Why an alert started (or rose, with its ``update``): computed after the alert was published, off the
    scoring path (``crashwatch.monitor.explain``). ``frames``: each frame of the window, oldest first, with
    ``logit_without`` (the window's logit with that frame withheld, positions unchanged) and ``share`` (the
    logit less it: how much that frame raised the risk); ``telling`` indexes the frame with the largest share.
    ``region``: on that frame, a grid of cells, each the logit's drop when the cell's information is withheld
    (``method`` says how), its ``peak`` cell and the ``box`` of the strongest connected region, relative to the
    frame (None with a ``note`` when the evidence is spread out or too weak). ``state`` is ``ready``, or
    ``skipped``/``failed`` with ``reason`` (an explanation still running, a model call that failed)."""

    TOPIC: ClassVar[Topic] = Topic.EXPLANATION

    alert_id: int
    event: str  # the alert event explained: start or update
    t: float  # stream seconds of the window's end
    state: str  # ready, skipped, failed
    reason: str | None = None  # why it was skipped or failed
    logit: float | None = None
    probability: float | None = None
    frames: list[dict[str, Any]] | None = None  # index, frame_id, t, logit_without, share
    telling: int | None = None  # the most telling frame's index in ``frames``
    region: dict[str, Any] | None = None  # method, rows, cols, cells (None: masked), peak, box, note
    frame_jpeg: str | None = None  # the most telling frame as a small JPEG, base64 (``Preview``'s way)
    compute_ms: float | None = None  # what the explanation took
    ready_after_ms: float | None = None  # from the alert's publication to this message


def _own_fields(cls: type, wire: dict[str, Any]) -> dict[str, Any]:
    """The wire fields that are ``cls``'s (the header, and fields of a newer minor version, are left out)."""
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in wire.items() if key in names}


Body = Union[Risk, Alert, Status, ProcessStatus, Preview, Health, LevelChange, Explanation]
BODIES: dict[Topic, Any] = {Topic.RISK: Risk, Topic.ALERT: Alert, Topic.STATUS: Status,
                            Topic.PROCESS: ProcessStatus, Topic.PREVIEW: Preview, Topic.HEALTH: Health,
                            Topic.LEVEL: LevelChange, Topic.EXPLANATION: Explanation}


class Outlet(Protocol):
    """Where one camera's messages go: the loop publishes every message through it and closes it when it stops.
    The transports implement it (a ZeroMQ channel with its further sinks); a replay collects instead."""

    def publish(self, body: Body) -> object:
        """Send (or keep) one message; never waits for a far end."""

    def close(self) -> None:
        """Deliver what is pending and stop."""

    def delivery(self) -> dict[str, Any]:
        """What ``status`` reports of the delivery: ``publisher`` counts and ``sinks`` states (None for none)."""


class CollectingOutlet:
    """An outlet that keeps every message body it is given, in order, for a replay or a benchmark that reads
    them in the process rather than over a socket."""

    def __init__(self) -> None:
        self.bodies: list[Body] = []

    def publish(self, body: Body) -> object:
        self.bodies.append(body)
        return body

    def close(self) -> None:
        pass

    def delivery(self) -> dict[str, Any]:
        return {"publisher": None, "sinks": None}


@dataclass(frozen=True)
class Message:
    """A message as a subscriber receives it: the header, the wire JSON, and the typed body (None for a
    topic or schema this crashwatch does not know). ``replay``: resent for a subscriber that joined late;
    ``missed``: how many messages of its camera and topic this subscriber lost just before it."""

    topic: str
    seq: int
    camera: str
    sent_at: float
    wire: dict[str, Any] = field(repr=False)
    body: Body | None
    replay: bool = False
    missed: int = 0

    @classmethod
    def decode(cls, topic: bytes, payload: bytes) -> "Message":
        name, wire = topic.decode(), json.loads(payload)
        body = None
        if name in Topic._value2member_map_ and wire.get("schema") == schema_of(Topic(name)):
            body = BODIES[Topic(name)].from_wire(wire)
        return cls(name, wire["seq"], wire.get("camera", "?"), wire.get("sent_at", time.time()), wire, body,
                   replay=wire.get("replay") is True)
