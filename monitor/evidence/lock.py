"""Event lock: an alert's evidence taken out of the loop recording into an event folder, so that it survives the
ring, a crash and a power cut.

On an alert ``start`` the event's sidecar (``event.json``: camera, the alert with its model, the window that
raised it) is written atomically before anything else, in the monitor's thread, so every published start has
one. Then, in the recorder's thread, the open segment is cut so the window's newest frames are in a closed
file, and every segment from the window's start on is hard-linked (or copied, across file systems) into the
folder, the sidecar rewritten after each; segments that close later are linked until the alert's end plus the
post-roll. A monitor that dies leaves the folder consistent: the sidecar lists what is linked, with every
frame's stream and wall time. At the next start ``recover`` links what the dead run closed after its last
link and marks the event ``interrupted``. A stretch of the window or post-roll the recorder could not write
(a full or failing disk) is listed under ``missing`` with why, and the event ends ``incomplete``. Each segment
is listed with its SHA-256 and its link of the chain, and with a ``Signer`` every save of the sidecar is signed
(``crashwatch.monitor.evidence.proof``).
"""

from __future__ import annotations

import enum
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crashwatch.contract.errors import CrashwatchError
from crashwatch.contract.window import EPSILON
from crashwatch.monitor.evidence import disk
from crashwatch.monitor.evidence.durable import fsync, write_json
from crashwatch.monitor.evidence.proof import CHAIN_SEED, SIGNATURE, Signer, link
from crashwatch.monitor.evidence.ring import LoopRecorder
from crashwatch.monitor.evidence.risks import RiskTrail
from crashwatch.monitor.evidence.segments import Segment, safe_name
from crashwatch.monitor.messages import Alert

log = logging.getLogger(__name__)

SIDECAR = "event.json"


class EventState(str, enum.Enum):
    RECORDING = "recording"  # the alert or its post-roll goes on
    COMPLETE = "complete"  # linked up to the end of the post-roll
    INCOMPLETE = "incomplete"  # up to the end of the post-roll, but stretches of it could not be recorded
    STOPPED = "stopped"  # the monitor was stopped before the post-roll ended
    INTERRUPTED = "interrupted"  # the monitor died; a later start linked what that run had closed


class UnreadableEvent(CrashwatchError):
    """An event folder whose sidecar cannot be read; the message names it."""


@dataclass
class LockedEvent:
    """What ``event.json`` holds."""

    camera: str
    session: str  # the recording run whose segments it takes
    alert: dict[str, Any]  # the start message's body
    window_start: float
    window_end: float
    state: EventState = EventState.RECORDING
    until: float | None = None  # stream time the post-roll ends at, known once the alert ends
    end: dict[str, Any] | None = None  # the end message's body
    segments: list[dict[str, Any]] = field(default_factory=list)  # Segment fields and its ``chain`` link, in order
    errors: list[str] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)  # stretches not recorded: from, to (stream s), why
    explanations: list[dict[str, Any]] = field(default_factory=list)  # ``Explanation`` wire forms, as they came
    risks: list[list[float]] = field(default_factory=list)  # [t, probability] of each stride, window to post-roll
    updated_at: float = 0.0

    def wants(self, segment: Segment) -> bool:
        """Whether ``segment`` belongs in this event: its run, and overlapping the window to the post-roll."""
        if segment.session != self.session or any(s["name"] == segment.name for s in self.segments):
            return False
        return self.overlaps(segment.t_start, segment.t_end)

    def overlaps(self, t_start: float, t_end: float) -> bool:
        """Whether stream seconds ``t_start`` to ``t_end`` reach into the window to the post-roll."""
        return t_end > self.window_start + EPSILON and (self.until is None or t_start < self.until)

    def covered_until(self) -> float | None:
        """The stream time up to which the event is accounted for, recorded or known lost."""
        ends = ([self.segments[-1]["frames"][-1]["t"]] if self.segments else []) + [m["to"] for m in self.missing]
        return max(ends, default=None)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LockedEvent":
        """The event of a sidecar (its signature, checked by ``crashwatch verify``, is not part of it)."""
        return cls(**{**{k: v for k, v in data.items() if k != SIGNATURE}, "state": EventState(data["state"])})

    @classmethod
    def read(cls, folder: Path) -> "LockedEvent":
        """The sidecar of the event ``folder``; an unreadable or malformed one raises ``UnreadableEvent``."""
        try:
            return cls.from_json(json.loads((folder / SIDECAR).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UnreadableEvent(f"{folder / SIDECAR}: not an event sidecar ({err})") from None

    def videos(self) -> list[str]:
        """The names of the segment files it holds, in stream order."""
        return [segment["name"] for segment in self.segments]


class EventLocker:
    """Locks alerts' segments from ``recorder`` into folders under ``folder``."""

    def __init__(self, folder: Path, camera: str, recorder: LoopRecorder, post_seconds: float = 3.0,
                 signer: Signer | None = None) -> None:
        self.folder = folder
        self.camera = camera
        self.recorder = recorder
        self.post_seconds = post_seconds
        self.signer = signer
        self.locked = 0  # events started
        self.complete = 0
        self.incomplete = 0  # ended with stretches the recorder could not write
        self.recovered = 0
        self.failed = 0
        self.last_error: str | None = None
        self._open: dict[int, tuple[Path, LockedEvent]] = {}  # alert id -> folder, event (recorder's thread)
        self._folders: dict[int, Path] = {}  # alert id -> folder, of every event this run started
        self._trail = RiskTrail()  # the recorder's thread's
        self._unsaved: dict[Path, LockedEvent] = {}  # sidecars a full disk kept from being written
        self.last_error = disk.check_folder(folder, "the events folder")
        self.recover()
        recorder.listeners.append(self)

    def path_for(self, alert: Alert) -> Path:
        """The event's folder, named for the camera, the wall-clock time and the alert (unique across runs)."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        return self.folder / f"{safe_name(self.camera)}-{stamp}-alert{alert.alert_id:04d}"

    # -- the monitor's thread -------------------------------------------------------------------------------

    def start(self, alert: Alert, path: Path, window_start: float, window_end: float) -> None:
        """Write the event's sidecar now, then lock the window's segments in the recorder's thread."""
        event = LockedEvent(self.camera, self.recorder.session, alert.to_wire(), window_start, window_end)
        try:
            path.mkdir(parents=True, exist_ok=True)
            self._save(path, event)
        except OSError as err:
            self._fail(f"{path}: the event sidecar cannot be written ({disk.describe(err, path)})")
            return
        self.locked += 1
        self._folders[alert.alert_id] = path
        self.recorder.call(lambda: self._begin(alert.alert_id, path, event))

    def risk(self, t: float, probability: float) -> None:
        """Every stride's probability, kept by the open events (in the recorder's thread; saved with their next
        change)."""
        self.recorder.call(lambda: self._risk(t, probability))

    def explained(self, alert_id: int, explanation: dict[str, Any]) -> None:
        """Add an explanation to the event's sidecar (in the recorder's thread, after what is queued there)."""
        self.recorder.call(lambda: self._explain(alert_id, explanation))

    def end(self, alert: Alert) -> None:
        """The alert ended: lock segments until its post-roll is over."""
        until = alert.t + self.post_seconds
        self.recorder.call(lambda: self._finish(alert.alert_id, until, alert.to_wire()))

    def close(self) -> None:
        """Called after the recorder closed: events whose post-roll the stop cut short say so."""
        self._save_again()
        for path, event in self._open.values():
            event.state = EventState.STOPPED
            self._save(path, event)
            log.info("event %s: the monitor stopped before its post-roll ended; kept what was recorded", path.name)
        self._open.clear()

    def stats(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "locked": self.locked, "open": len(self._open), "complete": self.complete,
                "incomplete": self.incomplete, "recovered": self.recovered, "failed": self.failed,
                "last_error": self.last_error}

    # -- the recorder's thread ------------------------------------------------------------------------------

    def _risk(self, t: float, probability: float) -> None:
        self._trail.add(t, probability)
        for _, event in self._open.values():
            if event.until is None or t <= event.until + EPSILON:
                event.risks.append([t, round(probability, 6)])

    def _begin(self, alert_id: int, path: Path, event: LockedEvent) -> None:
        event.risks = self._trail.since(event.window_start)
        self._open[alert_id] = (path, event)
        for segment in list(self.recorder.segments):
            if event.wants(segment):
                self._link(path, event, segment)
        self._save(path, event)
        self.recorder.cut()  # the window's newest frames are in the open segment: close it, it is linked then

    def _finish(self, alert_id: int, until: float, end: dict[str, Any]) -> None:
        if alert_id not in self._open:
            return
        path, event = self._open[alert_id]
        event.until, event.end = until, end
        self._settle(alert_id)

    def _explain(self, alert_id: int, explanation: dict[str, Any]) -> None:
        if alert_id in self._open:
            path, event = self._open[alert_id]
        elif alert_id in self._folders:  # settled already: its sidecar is read back, added to and signed again
            path = self._folders[alert_id]
            try:
                event = LockedEvent.read(path)
            except UnreadableEvent as err:
                self._fail(f"the explanation of alert {alert_id} cannot be added: {err}")
                return
        else:
            return  # its event could not be started (reported then)
        event.explanations.append(explanation)
        self._save(path, event)

    def segment_closed(self, segment: Segment) -> None:
        self._save_again()
        for alert_id, (path, event) in list(self._open.items()):
            if event.wants(segment):
                self._link(path, event, segment)
                self._save(path, event)
            self._settle(alert_id)

    def stretch_lost(self, t_start: float, t_end: float, why: str) -> None:
        for alert_id, (path, event) in list(self._open.items()):
            if event.overlaps(t_start, t_end):
                event.missing.append({"from": round(t_start, 4), "to": round(t_end, 4), "why": why})
                self._save(path, event)
                log.warning("event %s: stream %.2f to %.2f s could not be recorded: %s", path.name, t_start, t_end,
                            why)
            self._settle(alert_id)

    def _settle(self, alert_id: int) -> None:
        """End an event accounted for up to the end of its post-roll: complete, or incomplete where stretches
        of it could not be recorded."""
        path, event = self._open[alert_id]
        covered = event.covered_until()
        if event.until is None or covered is None or covered < event.until - EPSILON:
            return
        event.state = EventState.INCOMPLETE if event.missing else EventState.COMPLETE
        self._save(path, event)
        del self._open[alert_id]
        if event.missing:
            self.incomplete += 1
            log.warning("event %s incomplete: %d segments, %d stretches not recorded (%s)", path.name,
                        len(event.segments), len(event.missing), event.missing[-1]["why"])
        else:
            self.complete += 1
            log.info("event %s complete: %d segments", path.name, len(event.segments))

    def _link(self, path: Path, event: LockedEvent, segment: Segment) -> None:
        source = self.recorder.dir / segment.name
        target = path / segment.name
        try:
            if not target.exists():
                try:
                    os.link(source, target)
                except OSError:  # another file system, or links not allowed: copy
                    shutil.copyfile(source, target)
                    fsync(target)
                fsync(path)
            previous = event.segments[-1].get("chain", "") if event.segments else CHAIN_SEED
            event.segments.append({**asdict(segment), "chain": link(previous, segment.name, segment.sha256)})
        except OSError as err:
            message = f"{target}: cannot lock the segment ({err.strerror or err})"
            event.errors.append(message)
            self._fail(message)

    def _save(self, path: Path, event: LockedEvent) -> None:
        """Write the sidecar; one that cannot be written now (a full disk) is written again at the next chance:
        a segment closing, a stretch lost, the stop."""
        event.updated_at = time.time()
        document = event.to_json()
        try:
            write_json(path / SIDECAR, self.signer.sign(document) if self.signer is not None else document)
        except OSError as err:
            self._unsaved[path] = event
            self._fail(f"{path / SIDECAR}: cannot be written ({disk.describe(err, path)})")
        else:
            self._unsaved.pop(path, None)

    def _save_again(self) -> None:
        for path, event in list(self._unsaved.items()):
            self._save(path, event)

    def _fail(self, message: str) -> None:
        self.failed += 1
        self.last_error = message
        log.error("event: %s", message)

    # -- start ----------------------------------------------------------------------------------------------

    def recover(self) -> None:
        """Finish the events a dead run left ``recording``: link the segments it closed after its last link."""
        for sidecar in sorted(self.folder.glob(f"*/{SIDECAR}")):
            try:
                event = LockedEvent.read(sidecar.parent)
            except UnreadableEvent as err:
                log.warning("event: %s; left alone", err)
                continue
            if event.state is not EventState.RECORDING or event.camera != self.camera:
                continue
            before = len(event.segments)
            for segment in self.recorder.segments:
                if event.wants(segment):
                    self._link(sidecar.parent, event, segment)
            event.state = EventState.INTERRUPTED
            self._save(sidecar.parent, event)
            self.recovered += 1
            log.warning("event %s was interrupted (the monitor stopped without finishing it): %d segments locked "
                        "now, %d in all, up to stream time %.2f s", sidecar.parent.name, len(event.segments) - before,
                        len(event.segments), event.segments[-1]["frames"][-1]["t"] if event.segments else event.window_end)
