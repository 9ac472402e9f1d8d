"""Where frames come from: a webcam (an index or a device path), an rtsp:// or http(s):// URL, or a video file,
all opened with OpenCV, and a capture thread that never waits for the model.

The capture thread stamps each frame with its stream time ``t`` (media time for a file, seconds since the
first frame by the monotonic clock for a live source) and its wall-clock capture time, and pushes it into a
``FrameBuffer`` bounded in time. A file is replayed at its own frame rate (frames are skipped, and counted, if
the reader falls behind) and ends the run; frames of a damaged stretch that cannot be decoded are skipped,
counted and reported once per stretch, and the replay goes on (a file is only over at the frame count its
header gives); a live source that drops, or is not there yet (a webcam that enumerates late), is reopened with
exponential backoff, the outage reported through ``CaptureStats``.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from crashwatch.contract.errors import CrashwatchError
from crashwatch.contract.video import VideoError  # noqa: F401  (quiets FFmpeg before any capture opens)
from crashwatch.monitor.frame import Frame
from crashwatch.monitor.pipeline.buffer import FrameBuffer
from crashwatch.monitor.pipeline.diagnose import diagnose
from crashwatch.monitor.redact import redact_url

log = logging.getLogger(__name__)

LIVE_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
# Retries of a source that has streamed come at most this far apart, so that a short outage ends as soon as
# the source is back; one that never sent a frame backs off to ``backoff_max``.
BACKOFF_AFTER_ONLINE = 1.0
WEBCAM_ABSENT = "not found or busy (not plugged in, not enumerated yet, or in use)"
MAX_DAMAGED_S = 30.0  # a file that decodes nothing for this long past a damaged stretch is taken to end there


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


def open_capture(spec: SourceSpec, open_timeout_s: float = 5.0) -> cv2.VideoCapture | None:
    """An opened capture, or None if the source does not answer. OpenCV's own warnings (one per failed
    attempt) are silenced: the outage is reported once, in the log and in ``status``."""
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    if spec.kind == "webcam":
        capture = cv2.VideoCapture(spec.target) if isinstance(spec.target, int) else \
            cv2.VideoCapture(str(spec.target), cv2.CAP_V4L2)
    elif spec.kind == "stream":
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(open_timeout_s * 1000)]
        capture = cv2.VideoCapture(str(spec.target), cv2.CAP_FFMPEG, params)
    else:
        capture = cv2.VideoCapture(str(spec.target))
    if not capture.isOpened():
        capture.release()
        return None
    return capture


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
        capture = open_capture(self.spec)
        if capture is None:
            raise SourceError(f"{self.spec.display}: OpenCV cannot open it as a video")
        fps = capture.get(cv2.CAP_PROP_FPS)
        if not fps or fps <= 0 or fps > 1000:
            capture.release()
            raise SourceError(f"{self.spec.display}: unusable frame rate in its header ({fps})")
        self.source_fps = fps
        self.stats.state = "online"
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)  # the header's: decoding may stop short of it
        index, damaged_from = 0, None
        try:
            while not self.stop_event.is_set():
                t = offset + index / fps
                # Read first, then wait for the frame's time: a frame that does not decode costs no waiting.
                skip = self.realtime and (time.monotonic() - start) - t > 1.0 / fps  # fell behind: skip, as a live camera would
                ok, image = (capture.grab(), None) if skip else capture.read()
                if not ok or (image is None and not skip):
                    # The end, or a damaged stretch: the header's frame count says which (a stretch that never
                    # ends is taken for the end after MAX_DAMAGED_S).
                    if index >= count - 1 or (damaged_from is not None and index - damaged_from > MAX_DAMAGED_S * fps):
                        break
                    damaged_from = index if damaged_from is None else damaged_from
                    index += 1
                    continue
                if damaged_from is not None:
                    self._damaged(damaged_from, index, offset, fps)
                    damaged_from = None
                if skip:
                    if self.stats.dropped == 0:
                        log.warning("%s: reading and decoding fall behind the frame rate (%.1f fps): frames "
                                    "are dropped, counted in status as frames_dropped", self.spec.display, fps)
                    self.stats.dropped += 1
                elif image is not None:  # always, once read: the failed read went above
                    if self.realtime:
                        self.stop_event.wait(max(0.0, t - (time.monotonic() - start)))
                    self._emit(t, image)
                index += 1
        finally:
            capture.release()
        if self.stop_event.is_set():
            log.info("%s: stopped after %d frames", self.spec.display, index)
        else:
            log.info("%s: end of file after %d frames", self.spec.display, index)
        return index / fps

    def _damaged(self, first: int, end: int, offset: float, fps: float) -> None:
        """Frames ``first`` to ``end`` (excluded) could not be decoded, and decoding went on after them: counted,
        and said once."""
        self.stats.damaged += end - first
        log.warning("%s: %d frame(s) from %.2f s to %.2f s could not be decoded (the file is damaged there): skipped, "
                    "the replay goes on", self.spec.display, end - first, offset + first / fps,
                    offset + (end - 1) / fps)

    def _run_live(self) -> None:
        origin: float | None = None
        backoff = self.backoff_initial
        while not self.stop_event.is_set():
            capture = self._open_interruptibly()
            if self.stop_event.is_set():
                if capture is not None:
                    capture.release()
                break
            if capture is None:
                found = diagnose(str(self.spec.target)) if self.spec.kind == "stream" else None
                if found is not None and found.lasting:  # a wrong password is as wrong in a second
                    backoff = self.backoff_max
                reason = found.reason if found is not None else WEBCAM_ABSENT if self.spec.kind == "webcam" else None
                why = f"cannot open {self.spec.display}" + (f": {reason}" if reason else "")
                backoff = self._outage(why, backoff)
                continue
            fps = capture.get(cv2.CAP_PROP_FPS)
            self.source_fps = fps if fps and 0 < fps < 1000 else self.source_fps
            if self.stats.state == "reconnecting":
                log.warning("%s: back online after %.1f s", self.spec.display, self.stats.came_back())
                self.buffer.clear()  # a window must not span the outage
            self.stats.state, self.stats.backoff_s = "online", 0.0
            backoff = self.backoff_initial
            try:
                while not self.stop_event.is_set():
                    ok, image = capture.read()
                    if not ok or image is None:
                        break
                    now = time.monotonic()
                    origin = now if origin is None else origin
                    self._emit(now - origin, image)
            finally:
                capture.release()
            if not self.stop_event.is_set():
                backoff = self._outage(f"{self.spec.display} stopped sending frames", backoff)
        self.stats.state = "stopped"

    def _open_interruptibly(self) -> cv2.VideoCapture | None:
        """``open_capture`` in a helper thread, so that a stop during a blocking open (a camera that accepts the
        connection and never answers holds it for the open timeout) is obeyed at once. A capture that opens
        after it was given up is released by the helper."""
        lock, given_up, opened = threading.Lock(), threading.Event(), []

        def work() -> None:
            capture = open_capture(self.spec, self.open_timeout_s)
            with lock:
                if given_up.is_set():
                    if capture is not None:
                        capture.release()
                else:
                    opened.append(capture)

        helper = threading.Thread(target=work, name="capture-open", daemon=True)
        helper.start()
        while helper.is_alive() and not self.stop_event.wait(0.05):
            pass
        with lock:
            if not opened:
                given_up.set()
                return None
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
