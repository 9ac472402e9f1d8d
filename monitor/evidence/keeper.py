"""What the loop keeps of an alert, through one interface over the ways evidence is kept.

With a loop recording, an alert's window and post-roll are locked out of the ring (``RecordedEvidence``);
without one, the window's frames are held in memory and written as a clip after the post-roll
(``HeldEvidence``); with neither, nothing is kept (``NoEvidence``). The loop feeds every frame and opens and
ends events through ``Evidence`` alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, Sequence

from crashwatch.contract.window import EPSILON
from crashwatch.monitor.evidence.clips import EventRecorder
from crashwatch.monitor.evidence.lock import EventLocker
from crashwatch.monitor.evidence.ring import LoopRecorder
from crashwatch.monitor.frame import Frame
from crashwatch.monitor.messages import Alert


class Evidence(Protocol):
    """An alert's evidence, kept while the monitor runs."""

    # Whether ``start`` needs the window's frames themselves: the loop's frame buffer then keeps every frame.
    holds_frames: bool

    def feed(self, frame: Frame) -> None:
        """Every captured frame passes here (in the capture's thread)."""

    def risk(self, t: float, probability: float) -> None:
        """Every stride's probability (before its alert messages): an event keeps those from its window to the
        end of its post-roll, its risk chart."""

    def start(self, alert: Alert, window_start: float, window_end: float, buffered: Sequence[Frame]) -> Alert:
        """An alert started on the window ``[window_start, window_end]``; ``buffered`` is what the frame
        buffer holds now. Returns the start to publish: with its ``clip`` named where evidence is kept."""

    def end(self, alert: Alert) -> None:
        """The alert ended: keep its post-roll."""

    def explained(self, alert_id: int, explanation: dict[str, Any]) -> None:
        """Add an explanation (``Explanation``'s wire form) to the alert's evidence, written and signed with it,
        whether its evidence is still open or complete."""

    def events(self) -> dict[str, Any] | None:
        """``status.events``: events kept and failed."""

    def recording(self) -> dict[str, Any] | None:
        """``status.recording``: the loop recording's state, None without one."""

    def close(self) -> None:
        """Write what is pending and stop."""


class NoEvidence:
    """Neither ``--record`` nor ``--events``: alerts are published, nothing is kept."""

    holds_frames = False

    def feed(self, frame: Frame) -> None:
        pass

    def risk(self, t: float, probability: float) -> None:
        pass

    def start(self, alert: Alert, window_start: float, window_end: float, buffered: Sequence[Frame]) -> Alert:
        return alert

    def end(self, alert: Alert) -> None:
        pass

    def explained(self, alert_id: int, explanation: dict[str, Any]) -> None:
        pass

    def events(self) -> dict[str, Any] | None:
        return None

    def recording(self) -> dict[str, Any] | None:
        return None

    def close(self) -> None:
        pass


class RecordedEvidence:
    """The loop recording, and events locked out of it: the event's folder and sidecar exist before its start
    is published."""

    holds_frames = False

    def __init__(self, recorder: LoopRecorder, locker: EventLocker) -> None:
        self.recorder = recorder
        self.locker = locker

    def feed(self, frame: Frame) -> None:
        self.recorder.feed(frame)

    def risk(self, t: float, probability: float) -> None:
        self.locker.risk(t, probability)

    def start(self, alert: Alert, window_start: float, window_end: float, buffered: Sequence[Frame]) -> Alert:
        path = self.locker.path_for(alert)
        alert = dataclasses.replace(alert, clip=str(path))
        self.locker.start(alert, path, window_start, window_end)
        return alert

    def end(self, alert: Alert) -> None:
        self.locker.end(alert)

    def explained(self, alert_id: int, explanation: dict[str, Any]) -> None:
        self.locker.explained(alert_id, explanation)

    def events(self) -> dict[str, Any] | None:
        return self.locker.stats()

    def recording(self) -> dict[str, Any] | None:
        return self.recorder.stats()

    def close(self) -> None:
        self.recorder.close()
        self.locker.close()


class HeldEvidence:
    """Event clips from frames held in memory: the window's frames still buffered, then the post-roll."""

    holds_frames = True

    def __init__(self, clips: EventRecorder) -> None:
        self.clips = clips

    def feed(self, frame: Frame) -> None:
        self.clips.feed(frame)

    def risk(self, t: float, probability: float) -> None:
        self.clips.risk(t, probability)

    def start(self, alert: Alert, window_start: float, window_end: float, buffered: Sequence[Frame]) -> Alert:
        # A slow head may find the window's oldest frames gone: the clip starts with those still buffered.
        window = [f for f in buffered if f.t >= window_start - EPSILON]
        if not window:
            return alert
        alert = dataclasses.replace(alert, clip=str(self.clips.path_for(alert)))
        self.clips.start(alert, window)
        return alert

    def end(self, alert: Alert) -> None:
        pass  # the post-roll runs from the start: the clip is written when it is over

    def explained(self, alert_id: int, explanation: dict[str, Any]) -> None:
        self.clips.explained(alert_id, explanation)

    def events(self) -> dict[str, Any] | None:
        return {"written": self.clips.written, "failed": self.clips.failed, "last_error": self.clips.last_error}

    def recording(self) -> dict[str, Any] | None:
        return None

    def close(self) -> None:
        self.clips.close()
