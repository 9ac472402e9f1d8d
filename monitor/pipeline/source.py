"""Where frames come from: a video file or an rtsp:// or http(s):// URL, read with FFmpeg's own API (PyAV), or a
webcam (an index or a device path) through OpenCV, which opens V4L2, DirectShow and AVFoundation alike; and a
capture thread that never waits for the model.

Each frame carries its stream time ``t`` and its wall-clock arrival. A file's frames are timed by their slot on
its frame-rate timeline, a stream's by its presentation timestamps (so the burst a camera sends on connection,
or network jitter, does not squeeze the frames' times), a webcam's by arrival. A file is replayed at its own
frame rate (frames are skipped, and counted, if the reader falls behind) and ends the run; a damaged stretch is
skipped, counted and said once, and the replay goes on. A live source that drops, or is not there yet (a webcam
that enumerates late), is reopened with exponential backoff, the outage and FFmpeg's reason for it reported
through ``CaptureStats``.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from crashwatch.contract.errors import CrashwatchError
from crashwatch.contract.video import VideoError, VideoFile, bgr
from crashwatch.monitor.frame import Frame
from crashwatch.monitor.pipeline.buffer import FrameBuffer
from crashwatch.monitor.pipeline.live import LiveSource, SourceDown, open_live
from crashwatch.monitor.redact import redact_url

log = logging.getLogger(__name__)

LIVE_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
# Retries of a source that has streamed come at most this far apart, so that a short outage ends as soon as
# the source is back; one that never sent a frame backs off to ``backoff_max``.
BACKOFF_AFTER_ONLINE = 1.0
PTS_JUMP_S = 5.0  # timestamps that leap this much further than arrival (a camera's restart) are re-anchored


class SourceError(CrashwatchError):
    """A source that cannot be used at all (bad scheme, missing file); names the source."""


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # "webcam", "stream" or "file"
    target: str | int
    display: str  # for logs and messages: never holds credentials

    @property
    def live(self) -> bool:
        return self.kind != "file"


def parse_source(source: str) -> SourceSpec:
    """``0`` or a device path (``/dev/video0``, ``/dev/v4l/by-id/...``) -> webcam; ``rtsp://...``/``http(s)://...``
    -> stream; anything else must be a video file. A webcam need not be there yet: one that enumerates late (a
    USB camera after boot) is waited for as a stream that is down."""
    text = source.strip()
    if text.isdigit():
        return SourceSpec("webcam", int(text), f"webcam {int(text)}")
    if text.startswith("/dev/"):
        return SourceSpec("webcam", text, f"webcam {text}")
    if "://" in text:
        if not text.lower().startswith(LIVE_SCHEMES):
            raise SourceError(f"{redact_url(text)}: unsupported URL scheme; use rtsp://, rtsps://, http:// or https://")
        return SourceSpec("stream", text, redact_url(text))
    path = Path(text)
    if path.is_dir():
        raise SourceError(f"{path}: a folder, not a video file (give one file, a webcam index or a stream URL)")
    if not path.is_file():
        raise SourceError(f"{path}: no such video file (nor a webcam index or a stream URL)")
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: the file is empty")
    return SourceSpec("file", str(path), str(path))


@dataclass
class CaptureStats:
    """What the status heartbeat reports about the source."""

    state: str = "starting"  # starting, online, reconnecting, ended (the file ran out), stopped (asked to), failed
    frames: int = 0
    dropped: int = 0
    damaged: int = 0  # frames of a file that could not be decoded (a damaged stretch), skipped
    outages: int = 0
    reconnect_attempts: int = 0
    backoff_s: float = 0.0
    outage_started: float | None = None
    outages_s: float = 0.0  # seconds offline in outages that have ended
    last_error: str | None = None
    fps: float = 0.0
    _recent: collections.deque = field(default_factory=lambda: collections.deque(maxlen=60))

    def tick(self, wall: float) -> None:
        self.frames += 1
        self._recent.append(wall)
        if len(self._recent) >= 2 and self._recent[-1] > self._recent[0]:
            self.fps = (len(self._recent) - 1) / (self._recent[-1] - self._recent[0])

    def outage_s(self) -> float:
        """Seconds the outage going on has lasted (0 when online)."""
        return time.monotonic() - self.outage_started if self.outage_started is not None else 0.0

    def went_offline(self) -> None:
        self.outages += 1
        self.outage_started = time.monotonic()
        self.fps = 0.0  # no frame arrives: the rate is nothing, not the last one measured
        self._recent.clear()

    def came_back(self) -> float:
        """End the outage; returns how long it lasted."""
        lasted = self.outage_s()
        self.outages_s += lasted
        self.outage_started = None
        return lasted


class StreamClock:
    """A live frame's stream time: seconds since the run's first frame by arrival, except that within one
    connection frames follow the stream's own timestamps from the first frame's arrival on (a burst on
    connection or jitter keeps its true spacing). Timestamps that run backwards or leap ahead of arrival by
    more than ``PTS_JUMP_S`` (a camera that restarted its clock) are anchored again; times never run back."""

    def __init__(self) -> None:
        self._origin: float | None = None  # monotonic time of the run's first frame
        self._anchor: float | None = None  # stream time minus presentation time, within this connection
        self._last: tuple[float, float] | None = None  # the last frame's presentation time and arrival
        self._t = -1.0

    def connected(self) -> None:
        self._anchor, self._last = None, None

    def time(self, pts: float | None) -> float:
        now = time.monotonic()
        self._origin = now if self._origin is None else self._origin
        arrival = now - self._origin
        if pts is None:
            t = arrival
        else:
            if self._anchor is None or self._last is None or not \
                    0 < pts - self._last[0] <= (now - self._last[1]) + PTS_JUMP_S:
                self._anchor = max(arrival, self._t + 1e-3) - pts
            self._last = (pts, now)
            t = pts + self._anchor
        self._t = max(t, self._t + 1e-6)
        return self._t


class Capture(threading.Thread):
    """Reads ``spec`` into ``buffer`` until stopped, the file ends, or (live) the source fails for good."""

    def __init__(self, spec: SourceSpec, buffer: FrameBuffer, stop: threading.Event,
                 on_frame: Sequence[Callable[[Frame], None]] = (), realtime: bool = True, loop: bool = False,
                 backoff_initial: float = 0.5, backoff_max: float = 10.0, open_timeout_s: float = 5.0) -> None:
        super().__init__(name="capture", daemon=True)
        self.spec = spec
        self.buffer = buffer
        self.stop_event = stop
        self.on_frame = list(on_frame)  # each called with every frame, in order (recording, events, preview)
        self.realtime = realtime
        self.loop = loop
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.open_timeout_s = open_timeout_s
        self.stats = CaptureStats()
        self.source_fps: float | None = None
        self._next_id = 0

    def run(self) -> None:
        try:
            if self.spec.live:
                self._run_live()
            else:
                self._run_file()
        except SourceError as err:  # a user's mistake: one clear line, reported by the monitor's summary
            self.stats.state, self.stats.last_error = "failed", str(err)
        except Exception as err:  # the capture thread must report, never vanish silently
            log.exception("capture of %s failed", self.spec.display)
            self.stats.state, self.stats.last_error = "failed", str(err)
        finally:
            self.buffer.close()

    def _emit(self, t: float, image: np.ndarray) -> None:
        frame = Frame(self._next_id, t, time.time(), image)
        self._next_id += 1
        self.stats.tick(frame.wall)
        self.buffer.push(frame)
        for hook in self.on_frame:
            hook(frame)

    def _run_file(self) -> None:
        """Replay the file (again and again with ``loop``; stream time keeps running across passes)."""
        offset = 0.0
        start = time.monotonic()
        while not self.stop_event.is_set():
            duration = self._replay_once(offset, start)
            if not self.loop or duration == 0.0:
                break
            offset += duration
        self.stats.state = "stopped" if self.stop_event.is_set() else "ended"

    def _replay_once(self, offset: float, start: float) -> float:
        """One pass over the file from stream time ``offset``; returns the pass's duration in seconds."""
        try:
            video = VideoFile(str(self.spec.target))
        except VideoError as err:
            raise SourceError(str(err)) from None
        fps = self.source_fps = video.fps
        self.stats.state = "online"
        last = -1
        try:
            for index, decoded in video.frames():
                if self.stop_event.is_set():
                    break
                if index > last + 1:
                    self._damaged(last + 1, index, offset, fps)
                last = index
                t = offset + index / fps
                if self.realtime and (time.monotonic() - start) - t > 1.0 / fps:  # fell behind: skip, as a camera would
                    if self.stats.dropped == 0:
                        log.warning("%s: reading and decoding fall behind the frame rate (%.1f fps): frames "
                                    "are dropped, counted in status as frames_dropped", self.spec.display, fps)
                    self.stats.dropped += 1
                    continue
                image = bgr(decoded)
                if self.realtime:
                    self.stop_event.wait(max(0.0, t - (time.monotonic() - start)))
                self._emit(t, image)
        finally:
            video.close()
        if self.stop_event.is_set():
            log.info("%s: stopped after %d frames", self.spec.display, last + 1)
        else:
            log.info("%s: end of file after %d frames", self.spec.display, last + 1)
        return (last + 1) / fps

    def _damaged(self, first: int, end: int, offset: float, fps: float) -> None:
        """Frames ``first`` to ``end`` (excluded) could not be decoded, and decoding went on after them: counted,
        and said once."""
        self.stats.damaged += end - first
        log.warning("%s: %d frame(s) from %.2f s to %.2f s could not be decoded (the file is damaged there): skipped, "
                    "the replay goes on", self.spec.display, end - first, offset + first / fps,
                    offset + (end - 1) / fps)

    def _run_live(self) -> None:
        clock = StreamClock()
        backoff = self.backoff_initial
        while not self.stop_event.is_set():
            source = self._open_interruptibly()
            if self.stop_event.is_set():
                if not isinstance(source, SourceDown):
                    source.close()
                break
            if isinstance(source, SourceDown):
                if source.lasting:  # a wrong password is as wrong in a second
                    backoff = self.backoff_max
                backoff = self._outage(f"cannot open {self.spec.display}: {source.reason}", backoff)
                continue
            self.source_fps = source.fps or self.source_fps
            if self.stats.state == "reconnecting":
                log.warning("%s: back online after %.1f s", self.spec.display, self.stats.came_back())
                self.buffer.clear()  # a window must not span the outage
            self.stats.state, self.stats.backoff_s = "online", 0.0
            backoff = self.backoff_initial
            clock.connected()
            try:
                for pts, image in source.frames():
                    if self.stop_event.is_set():
                        break
                    self._emit(clock.time(pts), image)
            except SourceDown as down:
                if not self.stop_event.is_set():
                    backoff = self._outage(down.reason, backoff)
            finally:
                source.close()
        self.stats.state = "stopped"

    def _open_interruptibly(self) -> LiveSource | SourceDown:
        """``open_live`` in a helper thread, so that a stop during a blocking open (a camera that accepts the
        connection and never answers holds it for the open timeout) is obeyed at once. A source that opens
        after it was given up is closed by the helper."""
        lock, given_up, opened = threading.Lock(), threading.Event(), []

        def work() -> None:
            try:
                source: LiveSource | SourceDown = open_live(self.spec.kind, self.spec.target, self.spec.display,
                                                            self.open_timeout_s)
            except SourceDown as down:
                source = down
            with lock:
                if given_up.is_set():
                    if not isinstance(source, SourceDown):
                        source.close()
                else:
                    opened.append(source)

        helper = threading.Thread(target=work, name="capture-open", daemon=True)
        helper.start()
        while helper.is_alive() and not self.stop_event.wait(0.05):
            pass
        with lock:
            if not opened:
                given_up.set()
                return SourceDown("stopped while opening")
            return opened[0]

    def _outage(self, why: str, backoff: float) -> float:
        """Report, wait ``backoff`` (interruptible) and return the next backoff: doubling up to
        ``backoff_max``, but at most ``BACKOFF_AFTER_ONLINE`` for a source that has streamed."""
        if self.stats.state != "reconnecting":
            self.stats.went_offline()
            log.warning("%s; reconnecting", why)
        elif why != self.stats.last_error:  # the reason changed (a camera booting: refused, then 401)
            log.warning("%s; still reconnecting", why)
        self.stats.state, self.stats.last_error = "reconnecting", why
        self.stats.reconnect_attempts += 1
        self.stats.backoff_s = backoff
        self.stop_event.wait(backoff)
        streamed = self.stats.frames > 0
        ceiling = min(self.backoff_max, BACKOFF_AFTER_ONLINE) if streamed else self.backoff_max
        return min(backoff * 2, ceiling)
