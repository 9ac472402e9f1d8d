"""Loop recording, as every dashcam does it: the camera stream written continuously to disk as short segments,
each playable on its own once closed, kept in a ring bounded by size and age.

A thread of its own writes, so a slow disk never holds up the capture (frames beyond a few seconds of backlog
are dropped from the recording and counted). Each closed segment gets a JSON sidecar with every frame's
stream and wall-clock time, written atomically after the video is closed, fsynced and read back, so a segment
with a sidecar is whole; a video without one is the segment that was open when the monitor died, removed at
the next start. ``index.jsonl`` beside them maps stream and wall-clock time to files for readers (event
locking, a dashboard). Listeners (the event locker) hear of each segment as it closes, and of each stretch
that could not be recorded, in the recorder's thread and before the ring drops anything, and may run work in
that thread with ``call``.

A disk is never a reason to stop watching: a recording folder that is full, read-only, missing or unwritable
at start or later makes the recording ``unavailable`` (said once, in ``stats()['state']`` and
``last_error``) while the monitor scores and alerts as before; it is tried again every ``RETRY_S`` and
recording resumes when it can. Before each segment the ring keeps ``min_free`` bytes free on its disk by
deleting its oldest segments (events hold hard links to theirs).
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import queue
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from crashwatch.contract.bundle import sha256_of
from crashwatch.contract.video import VideoError, probe_clip
from crashwatch.monitor.evidence import disk
from crashwatch.monitor.evidence.codecs import CODECS, DEFAULT_BITS, VideoWriter, probe_codec
from crashwatch.monitor.evidence.durable import append_line, fsync, write_json
from crashwatch.monitor.evidence.segments import (
    INDEX,
    KeepPolicy,
    RecordingError,
    Segment,
    SegmentListener,
    safe_name,
)
from crashwatch.monitor.frame import Frame

log = logging.getLogger(__name__)

GAP_SECONDS = 1.0  # a longer gap between frames (an outage) ends the segment instead of holding a frame
LOSSLESS_BACKLOG_FRAMES = 64  # frames a file replay may run ahead of the recorder before the capture waits
FPS_PROBE_FRAMES = 5  # frames the first segment waits for to measure the stream's rate
RETRY_S = 5.0  # an unavailable recording folder is tried again this often
MIN_ROOM = 64 * 1024  # less free than this is a full disk: not tried until there is more
NEARLY_FULL = 2**20  # a write that failed with less free than this failed for want of space
MIN_FREE = "256MB"  # the default free-space floor: a few minutes of 720p above whatever else fills the disk
# ``--events`` without ``--record``: the events folder's own ring, long enough for any window and post-roll.
EVENTS_RING = ".ring"
EVENTS_RING_KEEP = KeepPolicy(max_bytes=256 * 2**20, max_age_s=600.0)


@dataclass
class _OpenSegment:
    path: Path
    number: int
    fps: float
    size: tuple[int, int]  # height, width
    writer: VideoWriter
    frames: list[dict[str, float]] = field(default_factory=list)
    last_slot: int = -1
    last_image: np.ndarray | None = None

    @property
    def t0(self) -> float:
        return self.frames[0]["t"]


class LoopRecorder:
    """Writes ``camera``'s frames as segments of at most ``segment_seconds`` in ``folder/CAMERA/``."""

    def __init__(self, folder: Path, camera: str, keep: KeepPolicy, codec: str = "auto",
                 segment_seconds: float = 2.0, backlog_seconds: float = 5.0, lossless: bool = False,
                 nominal_fps: Callable[[], float | None] | None = None, min_free: int = disk.parse_size(MIN_FREE),
                 bitrate: int = DEFAULT_BITS) -> None:
        if not (math.isfinite(segment_seconds) and 0.2 <= segment_seconds <= 60):
            raise RecordingError(f"segment length {segment_seconds} s: give 0.2 to 60 seconds")
        self.dir = folder / safe_name(camera)
        self.camera = camera
        self.keep = keep
        self.min_free = min_free
        self.codec = probe_codec(codec)
        self.suffix = CODECS[self.codec].suffix
        self.bitrate = bitrate
        self.segment_seconds = segment_seconds
        self.backlog_seconds = backlog_seconds
        self.lossless = lossless
        self.nominal_fps = nominal_fps  # the source's declared frame rate, where it has one
        now = time.time()
        self.session = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}Z"
        self.segments: list[Segment] = []
        self.listeners: list[SegmentListener] = []
        self.deleted = 0
        self.failed = 0
        self.frames_dropped = 0
        self.frames_unrecorded = 0  # frames passed over while the folder was unavailable
        self.last_error: str | None = None
        self.available = False
        self._tried_at = 0.0  # monotonic
        self._lost: list[float] | None = None  # the stretch not recorded so far: [first t, last t]
        self._floor_warned = False
        self._number = 0
        self._open: _OpenSegment | None = None
        self._pending: list[Frame] = []  # the first frames, held until the stream's rate is known
        self._gaps: list[float] = []  # the latest spacings between frames, for the segments' frame rate
        self._last_t: float | None = None
        self._index_deleted = 0
        self._queue: queue.Queue[Frame | Callable[[], None] | None] = queue.Queue()
        self._open_folder()
        if not CODECS[self.codec].browsers_play:
            log.info("recording %s to %s as %s: players such as VLC and mpv play it, the dashboard makes a copy "
                     "browsers play", camera, self.dir, self.codec)
        self._thread = threading.Thread(target=self._run, name=f"recorder-{camera}", daemon=True)
        self._thread.start()

    # -- called from other threads --------------------------------------------------------------------------

    def feed(self, frame: Frame) -> None:
        """Every captured frame passes here (from the capture thread). Live, it never blocks: past
        ``backlog_seconds`` of frames waiting for a slow disk, frames are dropped from the recording (counted);
        a file replay (``lossless``) waits instead, as it may run faster than real time."""
        if self.lossless:
            while self._queue.qsize() >= LOSSLESS_BACKLOG_FRAMES and self._thread.is_alive():
                time.sleep(0.005)
        else:
            spacing = statistics.median(self._gaps) if self._gaps else 0.1
            if self._queue.qsize() * spacing > self.backlog_seconds:
                self.frames_dropped += 1
                return
        self._queue.put(frame)

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the recorder's thread after the frames fed so far."""
        self._queue.put(fn)

    def close(self) -> None:
        """Close the open segment (its frames are kept) and stop the writer."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def stats(self) -> dict[str, Any]:
        segments = list(self.segments)
        return {"dir": str(self.dir), "state": "recording" if self.available else "unavailable",
                "codec": self.codec, "session": self.session, "keep": self.keep.describe(),
                "segments": len(segments), "bytes": sum(s.bytes for s in segments),
                "oldest_age_s": round(time.time() - segments[0].wall_start, 1) if segments else None,
                "free_bytes": disk.free_bytes(self.dir), "min_free_bytes": self.min_free,
                "deleted": self.deleted, "failed": self.failed, "frames_dropped": self.frames_dropped,
                "frames_unrecorded": self.frames_unrecorded, "last_error": self.last_error}

    # -- the recorder's thread ------------------------------------------------------------------------------

    def cut(self) -> None:
        """Close the open segment now (in the recorder's thread: from a function given to ``call``)."""
        self._close_open()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                if isinstance(item, Frame):
                    self._write(item)
                else:
                    item()
            except Exception as err:  # a disk that fails: report it and keep recording what can be
                self._fail(str(err))
        while True:  # what came in behind the stop marker
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None and not isinstance(item, Frame):
                item()
        self._flush_pending()
        self._close_open()
        self._report_lost()

    def _fail(self, error: str) -> None:
        """A segment not written: counted, and the recording unavailable until the folder is tried again."""
        self.failed += 1
        self._unavailable(error)

    def _unavailable(self, why: str) -> None:
        """Said once per reason (a full disk would fail every segment); tried again after ``RETRY_S``."""
        if why != self.last_error:
            log.warning("recording to %s unavailable: %s. Scoring and alerts go on; trying again every %g s",
                        self.dir, why, RETRY_S)
        self.available, self.last_error, self._tried_at = False, why, time.monotonic()
        segment, self._open = self._open, None  # a segment opened on the failing disk is not kept
        if segment is not None:
            segment.writer.abandon()
            segment.path.unlink(missing_ok=True)
            if segment.frames:
                self._tell_lost(segment.t0, segment.frames[-1]["t"], why)

    def _tell_lost(self, t_start: float, t_end: float, why: str) -> None:
        for listener in self.listeners:
            listener.stretch_lost(t_start, t_end, why)

    def _unwritten(self, what: str) -> OSError:
        """A write that failed without an errno: a full disk where it is nearly full, else ``what``."""
        free = disk.free_bytes(self.dir)
        if free is not None and free < NEARLY_FULL:
            return OSError(errno.ENOSPC, "No space left on device", str(self.dir))
        return OSError(what)

    def _why(self, err: OSError) -> str:
        return disk.describe(err, self.dir) if err.errno is not None else str(err)

    def _open_folder(self) -> bool:
        """Make the folder usable (create it, take up earlier runs' segments, rewrite the index); where the
        disk does not allow it, the recording is unavailable until a later try succeeds."""
        try:
            disk.make_writable(self.dir)
            free = disk.free_bytes(self.dir)
            if free is not None and free < MIN_ROOM:
                raise OSError(errno.ENOSPC, "No space left on device", str(self.dir))
            self._recover()
        except OSError as err:
            self._unavailable(disk.describe(err, self.dir))
            return False
        self._report_lost()  # while ``last_error`` still says why
        if self.last_error is not None:
            log.warning("recording to %s resumed (it was unavailable: %s)", self.dir, self.last_error)
        self.available, self.last_error = True, None
        return True

    def _pass_over(self, frame: Frame) -> None:
        """A frame the unavailable folder cannot take: counted, and its time added to the stretch lost."""
        self.frames_unrecorded += 1
        if self._lost is None:
            self._lost = [frame.t, frame.t]
        self._lost[1] = frame.t
        if self._lost[1] - self._lost[0] >= self.segment_seconds:  # events waiting on it hear of it in time
            self._report_lost()

    def _report_lost(self) -> None:
        lost, self._lost = self._lost, None
        if lost is not None:
            self._tell_lost(lost[0], lost[1], self.last_error or "the recording was unavailable")

    def _write(self, frame: Frame) -> None:
        """Take a frame; the first few wait until the stream's frame rate is known."""
        if not self.available and (time.monotonic() - self._tried_at < RETRY_S or not self._open_folder()):
            self._pass_over(frame)
            return
        if self._last_t is not None and 0 < frame.t - self._last_t <= GAP_SECONDS:
            self._gaps.append(frame.t - self._last_t)
            del self._gaps[:-60]
        self._last_t = frame.t
        if self._number == 0 and len(self._gaps) < FPS_PROBE_FRAMES - 1:  # no segment yet
            self._pending.append(frame)
            return
        try:
            self._flush_pending()
            self._append(frame)
        except OSError as err:  # a segment that cannot be opened on this disk
            self._fail(self._why(err))
            self._pass_over(frame)

    def _flush_pending(self) -> None:
        held, self._pending = self._pending, []
        for frame in held:
            self._append(frame)

    def _append(self, frame: Frame) -> None:
        segment = self._open
        if segment is not None:
            slot = max(segment.last_slot + 1, round((frame.t - segment.t0) * segment.fps))
            if frame.image.shape[:2] != segment.size or slot >= round(self.segment_seconds * segment.fps) \
                    or frame.t - segment.frames[-1]["t"] > GAP_SECONDS or frame.t < segment.frames[-1]["t"]:
                self._close_open()
                segment = None
                if not self.available:  # closing it failed: nothing more goes to this disk until tried again
                    self._pass_over(frame)
                    return
        if segment is None:
            segment = self._open = self._start_segment(frame)
            slot = 0
        if segment.last_image is not None:  # frames the capture dropped: the one before held
            for _ in range(slot - segment.last_slot - 1):
                segment.writer.write(segment.last_image)
        segment.writer.write(frame.image)
        segment.frames.append({"id": frame.id, "t": frame.t, "wall": frame.wall, "clip_t": slot / segment.fps})
        segment.last_slot, segment.last_image = slot, frame.image

    def _start_segment(self, frame: Frame) -> _OpenSegment:
        self._keep_floor()
        nominal = self.nominal_fps() if self.nominal_fps is not None else None
        if nominal:  # the source's own rate: arrival times of a live stream come in bursts
            fps = round(nominal, 3)
        else:
            fps = round(1.0 / statistics.median(self._gaps), 3) if self._gaps else 10.0
        self._number += 1
        path = self.dir / f"{self.session}-{self._number:06d}{self.suffix}"
        height, width = frame.image.shape[:2]
        try:
            writer = VideoWriter(path, self.codec, fps, width, height, self.bitrate)
        except OSError as err:
            path.unlink(missing_ok=True)
            raise err if err.errno else self._unwritten(str(err)) from None
        return _OpenSegment(path, self._number, fps, (height, width), writer)

    def _close_open(self) -> None:
        segment, self._open = self._open, None
        if segment is None:
            return
        try:
            segment.writer.close()
            if not segment.frames:
                segment.path.unlink(missing_ok=True)
                return
            fsync(segment.path)
            # Read the file back to know it is whole: a write the kernel took may still fail on the way to the disk.
            expected = segment.last_slot + 1
            try:
                written = probe_clip(segment.path).num_frames
            except VideoError as err:
                written, unreadable = 0, str(err)
            else:
                unreadable = ""
            if written != expected:
                raise self._unwritten(
                    f"{segment.path.name}: {unreadable or f'only {written} of {expected} frames were written'}")
            closed = Segment(segment.path.name, self.session, segment.number, segment.fps, self.codec,
                             segment.path.stat().st_size, segment.frames, sha256_of(segment.path))
            self._prune(incoming=closed.bytes)
            write_json(segment.path.with_suffix(".json"), asdict(closed))
            append_line(self.dir / INDEX, closed.summary())
        except OSError as err:
            segment.path.unlink(missing_ok=True)
            why = self._why(err)
            self._fail(why)
            self._tell_lost(segment.t0, segment.frames[-1]["t"], why)
            return
        self.segments.append(closed)
        for listener in self.listeners:
            listener.segment_closed(closed)

    def _prune(self, incoming: int) -> None:
        """Make room for a closed segment of ``incoming`` bytes: drop the oldest while the ring would be over
        its size, and those over its age. Events hold hard links to what they locked (taken when their alert
        started and as each segment closed), so an event's evidence outlives the ring's copy."""
        now = time.time()
        total = sum(s.bytes for s in self.segments) + incoming
        while self.segments:
            oldest = self.segments[0]
            over_size = self.keep.max_bytes is not None and total > self.keep.max_bytes
            over_age = self.keep.max_age_s is not None and now - oldest.wall_end > self.keep.max_age_s
            if not (over_size or over_age):
                break
            total -= oldest.bytes
            self._delete_oldest()
        if self._index_deleted > max(100, len(self.segments)):
            self._write_index()

    def _keep_floor(self) -> None:
        """Delete the oldest segments while the disk has less than ``min_free`` bytes free; say once when the
        ring is empty and the floor still not kept (locked evidence and other files fill the disk)."""
        free = disk.free_bytes(self.dir)
        while free is not None and free < self.min_free and self.segments:
            self._delete_oldest()
            free = disk.free_bytes(self.dir)
        short = free is not None and free < self.min_free
        if short and not self._floor_warned:
            log.warning("recording: %d bytes free on %s, under the %d kept free, with no segment of the ring left to "
                        "delete: locked evidence and other files fill the disk", free, disk.mount_of(self.dir),
                        self.min_free)
        self._floor_warned = short

    def _delete_oldest(self) -> None:
        oldest = self.segments.pop(0)
        for path in (self.dir / oldest.name, (self.dir / oldest.name).with_suffix(".json")):
            path.unlink(missing_ok=True)
        self.deleted += 1
        self._index_deleted += 1
        append_line(self.dir / INDEX, {"deleted": oldest.name})

    def _write_index(self) -> None:
        temp = self.dir / f".{INDEX}.tmp"
        temp.write_text("".join(json.dumps(s.summary()) + "\n" for s in self.segments), encoding="utf-8")
        fsync(temp)
        os.replace(temp, self.dir / INDEX)
        self._index_deleted = 0

    # -- start ----------------------------------------------------------------------------------------------

    def _recover(self) -> None:
        """Take up the segments earlier runs closed; remove what a run killed mid-write left."""
        closed: dict[str, Segment] = {}
        for sidecar in self.dir.glob("*.json"):
            try:
                segment = Segment.from_json(json.loads(sidecar.read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("recording: %s is not a segment sidecar; left alone", sidecar)
                continue
            if (self.dir / segment.name).is_file():
                closed[segment.name] = segment
        for path in self.dir.iterdir():
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
            elif path.suffix in (".mp4", ".webm") and path.name not in closed:
                log.warning("recording: removed %s, the segment being written when the monitor stopped", path.name)
                path.unlink(missing_ok=True)
        self.segments = sorted(closed.values(), key=lambda s: (s.wall_start, s.number))
        if self.segments:
            log.info("recording: %d segments from earlier runs kept in %s", len(self.segments), self.dir)
        self._write_index()
