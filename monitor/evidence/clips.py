"""Event clips: on an alert, the frames of the window that raised it and a few seconds after, as a video with
a JSON sidecar holding the clip's SHA-256 (signed with a ``Signer``). Written by a thread of its own so that a
slow disk never holds up the monitor; a failure (unwritable folder, full disk) is logged and reported in
``status``, and alerts go on being published."""

from __future__ import annotations

import json
import logging
import queue
import threading
from pathlib import Path
from typing import Any

from crashwatch.contract.bundle import sha256_of
from crashwatch.contract.video import VideoError, probe_clip
from crashwatch.contract.window import EPSILON
from crashwatch.monitor.evidence import disk
from crashwatch.monitor.evidence.codecs import VideoWriter
from crashwatch.monitor.evidence.proof import Signer
from crashwatch.monitor.evidence.risks import RiskTrail
from crashwatch.monitor.evidence.segments import safe_name
from crashwatch.monitor.frame import Frame
from crashwatch.monitor.messages import Alert

log = logging.getLogger(__name__)


class EventRecorder:
    """Collects frames for open events and writes each event when its post-roll is complete."""

    def __init__(self, folder: Path, camera: str, post_seconds: float = 3.0, signer: Signer | None = None) -> None:
        self.folder = folder
        self.camera = camera
        self.post_seconds = post_seconds
        self.signer = signer
        self.written = 0
        self.failed = 0
        self.last_error: str | None = None
        self._open: list[dict[str, Any]] = []
        self._events: dict[int, dict[str, Any]] = {}  # alert id -> its event, open, queued or written
        self._lock = threading.Lock()
        self._trail = RiskTrail()
        self.last_error = disk.check_folder(folder, "the events folder")
        # Events to write, or (with ``sidecar_only``) a written event whose sidecar is to be written again.
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()

    def path_for(self, alert: Alert) -> Path:
        """Where the clip of ``alert``'s episode goes (named in its start message)."""
        return self.folder / f"{safe_name(self.camera)}-alert{alert.alert_id:04d}-{alert.t:09.2f}s.mp4"

    def start(self, alert: Alert, window: list[Frame]) -> None:
        """Open an event with the window's frames, to be written at ``path_for(alert)``."""
        with self._lock:
            event = {"path": self.path_for(alert), "alert": alert.to_wire(), "frames": list(window),
                     "until": alert.t + self.post_seconds, "explanations": [], "sidecar": None,
                     "risks": self._trail.since(window[0].t)}
            self._open.append(event)
            self._events[alert.alert_id] = event

    def explained(self, alert_id: int, explanation: dict[str, Any]) -> None:
        """Add an explanation to the event's sidecar: written with it, or written again if it is out already."""
        with self._lock:
            event = self._events.get(alert_id)
            if event is None:
                return  # no clip was started for it (no frames buffered)
            event["explanations"].append(explanation)
            if event["sidecar"] is not None:
                self._queue.put({**event, "sidecar_only": True})

    def risk(self, t: float, probability: float) -> None:
        """Every stride's probability: open events keep theirs up to the end of the post-roll."""
        with self._lock:
            self._trail.add(t, probability)
            for event in self._open:
                if t <= event["until"] + EPSILON:
                    event["risks"].append([t, round(probability, 6)])

    def feed(self, frame: Frame) -> None:
        """Every captured frame passes here; events take what they need and are written when complete."""
        with self._lock:
            if not self._open:
                return
            done = []
            for event in self._open:
                if frame.t > event["frames"][-1].t:
                    event["frames"].append(frame)
                if frame.t >= event["until"]:
                    done.append(event)
            for event in done:
                self._open.remove(event)
                self._queue.put(event)

    def close(self) -> None:
        """Write the events still open (stopping mid post-roll keeps what there is), then stop the writer."""
        with self._lock:
            for event in self._open:
                self._queue.put(event)
            self._open.clear()
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            try:
                if event.get("sidecar_only"):
                    self._write_sidecar(event)
                    continue
                self._write(event)
                self.written += 1
            except Exception as err:  # any I/O failure: report and keep the monitor going
                self.failed += 1
                why = disk.describe(err, event["path"].parent) if isinstance(err, OSError) and err.errno else err
                self.last_error = f"{event['path']}: {why}"
                log.error("event clip not written: %s", self.last_error)

    def _write(self, event: dict[str, Any]) -> None:
        path: Path = event["path"]
        frames: list[Frame] = event["frames"]
        path.parent.mkdir(parents=True, exist_ok=True)
        fps, slots = clip_timing([f.t for f in frames])
        height, width = frames[0].image.shape[:2]
        writer = VideoWriter(path, "h264", fps, width, height)  # browsers play it
        try:
            for k, frame in enumerate(frames):
                following = slots[k + 1] if k + 1 < len(frames) else slots[k] + 1
                for _ in range(following - slots[k]):  # a frame the capture dropped: the one before it held
                    writer.write(frame.image)
        except OSError:
            writer.abandon()
            raise
        writer.close()
        # Read the clip back to know it is whole: a write the kernel took may still fail on the way to the disk.
        expected = slots[-1] + 1
        try:
            written = probe_clip(path).num_frames
        except VideoError as err:
            raise OSError(f"the clip cannot be read back ({err}); disk full?") from None
        if written != expected:
            raise OSError(f"only {written} of {expected} frames were written (disk full?)")
        with self._lock:
            event["sidecar"] = {
                "camera": self.camera, "clip": path.name, "alert": event["alert"], "fps": fps,
                "bytes": path.stat().st_size, "sha256": sha256_of(path),
                "frames": [{"id": f.id, "t": f.t, "captured_at": f.wall, "clip_t": slot / fps}
                           for f, slot in zip(frames, slots)],
                "risks": list(event["risks"]),
            }
        self._write_sidecar(event)
        event["frames"] = []  # kept for its explanations only: the images go
        log.info("event clip written: %s (%d frames, %.2f s at %.2f fps)", path, len(frames), expected / fps, fps)

    def _write_sidecar(self, event: dict[str, Any]) -> None:
        """The clip's sidecar with the explanations so far, signed."""
        with self._lock:
            sidecar = {**event["sidecar"], "explanations": list(event["explanations"])}
        if self.signer is not None:
            sidecar = self.signer.sign(sidecar)
        event["path"].with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")


def clip_timing(times: list[float]) -> tuple[float, list[int]]:
    """The frame rate to write a clip of frames taken at stream ``times`` at, and the clip frame each one
    starts at, so that the clip plays at the stream's own speed: the rate is the stream's (the median spacing,
    which frames dropped by the capture do not move), and a gap holds the frame before it. Each frame then
    shows within half a frame of its own time since the first."""
    gaps = sorted(b - a for a, b in zip(times, times[1:]) if b > a)
    fps = 1.0 / gaps[len(gaps) // 2] if gaps else 10.0
    slots, last = [], -1
    for t in times:
        last = max(last + 1, round((t - times[0]) * fps))
        slots.append(last)
    return fps, slots
