"""The events of an events folder: each alert's evidence (a held clip with its ``.json`` sidecar, or an event
folder of locked segments), found by the name its start message gave, listed with what a reviewer needs, and
the video a browser plays of it.

Evidence written as H.264, VP8 or AV1 plays in a browser as it is: a held clip or a one-segment event is served
itself, an event's segments are joined into ``clip.mp4`` (or ``.webm``) packet by packet, without decoding. Older
evidence in MPEG-4 part 2, which no browser decodes, is transcoded once to a VP8 ``clip.webm`` (``NAME.webm``
beside a clip) at most 480 px wide. Either copy is written to a temporary name and renamed, so a half-written
copy is never served; the evidence itself is left as it was.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from crashwatch.contract.errors import CrashwatchError
from crashwatch.contract.video import VideoError, VideoFile, bgr
from crashwatch.monitor.evidence.codecs import VideoWriter
from crashwatch.monitor.evidence.lock import SIDECAR, EventState, LockedEvent, UnreadableEvent
from crashwatch.monitor.evidence.segments import BROWSER_COPY, JOINED

log = logging.getLogger(__name__)

MAX_WIDTH = 480  # a transcoded copy's width: VP8 costs some 10 ms a frame at this size on one core
COPY_BITS = 1_000_000  # a viewing copy at most 480 px wide
PLAYABLE = {"h264", "vp8", "vp9", "av1", "libdav1d"}  # FFmpeg's decoders for what every current browser plays
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")


class ClipError(CrashwatchError):
    """An event the events folder does not hold (or not yet whole); the message names it."""


@dataclass(frozen=True)
class EventClip:
    """One alert's evidence in the events folder: a clip with its ``.json`` sidecar, or an event folder."""

    path: Path

    @classmethod
    def find(cls, events_dir: Path, name: str) -> "EventClip":
        """The event called ``name`` (the last part of an alert start's ``clip``), only ever inside
        ``events_dir``."""
        if not NAME.fullmatch(name) or ".." in name:
            raise ClipError(f"{name!r}: not the name of an event clip or folder")
        path = events_dir / name
        if not path.exists():
            raise ClipError(f"{name}: not in {events_dir}")
        return cls(path)

    @property
    def sidecar(self) -> Path:
        return self.path / SIDECAR if self.path.is_dir() else self.path.with_suffix(".json")

    def summary(self) -> dict[str, Any]:
        """What a reviewer's list shows of it, from its sidecar: ``name``, ``camera``, ``alert_id``, ``start``
        (stream seconds), ``started_at`` (wall clock of the alert's window's newest frame), ``peak``,
        ``threshold``, ``level``, ``state``, ``duration`` (null while open), the newest ready ``explanation``
        and ``risks`` (``[t, probability]`` per stride from the window to the post-roll's end; empty for
        evidence kept before 2026-12-06); ClipError where the sidecar cannot be read."""
        try:
            sidecar = json.loads(self.sidecar.read_text(encoding="utf-8"))
            alert = sidecar["alert"]
            if self.path.is_dir():
                frames = [f for segment in sidecar.get("segments", []) for f in segment["frames"]]
                walls = [(f["t"], f["wall"]) for f in frames]
                state, end = sidecar["state"], sidecar.get("end")
            else:
                walls = [(f["t"], f["captured_at"]) for f in sidecar["frames"]]
                state, end = "complete", None
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ClipError(f"{self.sidecar}: not an event sidecar ({err})") from None
        at = [wall for t, wall in walls if t <= alert["t"] + 1e-6]
        started_at = at[-1] if at else self.sidecar.stat().st_mtime
        explanations = [e for e in sidecar.get("explanations", []) if e.get("state") == "ready"]
        return {"name": self.path.name, "camera": sidecar["camera"], "alert_id": alert["alert_id"],
                "start": alert["start"], "started_at": started_at, "peak": alert["peak"],
                "threshold": alert["threshold"], "level": alert.get("level", "imminent"), "state": state,
                "duration": None if end is None else end.get("duration"),
                "explanation": explanations[-1] if explanations else None, "risks": sidecar.get("risks", [])}

    @property
    def browser_copy(self) -> Path:
        return self.path / BROWSER_COPY if self.path.is_dir() else self.path.with_suffix(".webm")

    def complete(self) -> bool:
        """Whether the monitor has finished it: a clip's sidecar is written once the clip is whole; an event
        folder's says ``recording`` until its post-roll is locked (or a restart recovered it)."""
        if not self.path.is_dir():
            return self.sidecar.is_file()
        try:
            return LockedEvent.read(self.path).state is not EventState.RECORDING
        except UnreadableEvent:
            return False

    def videos(self) -> list[Path]:
        """The video files it holds, in stream order."""
        if not self.path.is_dir():
            return [self.path]
        try:
            return [self.path / name for name in LockedEvent.read(self.path).videos()]
        except UnreadableEvent as err:
            raise ClipError(str(err)) from None

    def evidence_zip(self) -> bytes:
        """The evidence as the monitor wrote it, in a ZIP that unpacks to what ``crashwatch verify`` checks: an
        event folder (its sidecar and segments, not the browser copy), or a clip and its sidecar."""
        if not self.complete():
            raise ClipError(f"{self.path.name}: the monitor is still writing it")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # video does not compress
            for file, name in self.evidence_files():
                archive.write(file, name)
        return buffer.getvalue()

    def evidence_files(self) -> list[tuple[Path, str]]:
        """The evidence as the monitor wrote it, each file with the path it keeps beside the others for
        ``crashwatch verify``: an event folder's sidecar and segments under the folder's name (not the browser
        copy), or a clip and its sidecar."""
        return [(file, f"{self.path.name}/{file.name}" if self.path.is_dir() else file.name)
                for file in (self.sidecar, *self.videos())]

    def ensure_browser_copy(self) -> Path:
        """The video to serve a browser: the evidence itself where a browser plays it, else a copy made now
        (seconds for a long event: call it from a worker thread)."""
        if not self.complete():
            raise ClipError(f"{self.path.name}: the monitor is still writing it")
        videos = self.videos()
        joined = self.path / f"{JOINED}{videos[0].suffix}"  # an event folder's segments as one file
        for made in ((joined,) if self.path.is_dir() else ()) + (self.browser_copy,):
            if made.is_file():  # made for an earlier request: no video is opened again
                return made
        if joinable(videos, PLAYABLE):
            if len(videos) == 1:
                return videos[0]
            join(videos, joined)
            return joined
        transcode(videos, self.browser_copy)
        return self.browser_copy


def list_events(events_dir: Path) -> list[EventClip]:
    """Every event the folder holds, event folders and held clips, by name."""
    if not events_dir.is_dir():
        raise ClipError(f"{events_dir}: no such events folder")
    folders = [p.parent for p in events_dir.glob(f"*/{SIDECAR}")]
    clips = [p for p in events_dir.glob("*.mp4") if p.with_suffix(".json").is_file()]
    return [EventClip(p) for p in sorted(folders + clips, key=lambda p: p.name)]


def joinable(sources: list[Path], codecs: set[str]) -> bool:
    """Whether ``sources`` are all one of ``codecs`` with one frame size and one container, so that their
    packets make one video as they are."""
    try:
        kinds = set()
        for source in sources:
            with VideoFile(source) as video:
                kinds.add((video.codec, video.size, source.suffix))
    except VideoError as err:
        raise ClipError(str(err)) from None
    return len(kinds) == 1 and next(iter(kinds))[0] in codecs


def join(sources: list[Path], target: Path) -> None:
    """Write ``sources`` (``joinable``) one after the other as one video, packet by packet: no decoding, no
    loss; each part starts where the one before it ended."""
    partial = target.with_name(f".{target.stem}.partial{target.suffix}")
    try:
        with av.open(str(partial), "w") as output:
            stream, offset = None, 0.0  # seconds the parts so far last
            for source in sources:
                with av.open(str(source)) as part:
                    video = part.streams.video[0]
                    stream = stream or output.add_stream_from_template(video)
                    end = offset
                    for packet in part.demux(video):
                        if packet.pts is None or packet.dts is None:  # the demuxer's closing empty packet
                            continue
                        base = packet.time_base
                        shift = round(offset / base)
                        packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
                        end = max(end, float((packet.pts + (packet.duration or 0)) * base))
                        packet.stream = stream
                        output.mux(packet)
                    offset = end
        os.replace(partial, target)
    except av.FFmpegError as err:
        raise ClipError(f"{target}: cannot join {len(sources)} videos ({err.strerror or err})") from None
    finally:
        partial.unlink(missing_ok=True)
    log.info("video joined: %s (%d parts, %.1f s)", target, len(sources), offset)


def transcode(sources: list[Path], target: Path, codec: str = "vp8", max_width: int = MAX_WIDTH,
              bitrate: int = COPY_BITS) -> None:
    """Write ``sources`` one after the other as one video in ``codec`` (VP8 WebM for a browser, by default,
    at most ``max_width`` across) at the first one's frame rate; a source of another rate is resampled by
    holding or skipping frames, so every part plays for as long as it did."""
    partial = target.with_name(f".{target.stem}.partial{target.suffix}")
    writer: VideoWriter | None = None
    fps = 0.0
    written, offset = 0, 0.0
    try:
        for source in sources:
            with VideoFile(source) as video:
                last = -1
                for index, frame in video.frames():
                    if writer is None:
                        fps = video.fps
                        scale = min(1.0, max_width / frame.width)
                        writer = VideoWriter(partial, codec, fps, round(frame.width * scale / 2) * 2,
                                             round(frame.height * scale / 2) * 2, bitrate)
                    image = bgr(frame)
                    while written / fps < offset + (index + 1) / video.fps - 1e-6:
                        writer.write(image)
                        written += 1
                    last = index
                offset += (last + 1) / video.fps
        if writer is None:
            raise ClipError(f"{target.name}: its videos hold no frame")
        writer.close()
        writer = None
        os.replace(partial, target)
    except (VideoError, OSError) as err:
        raise ClipError(f"{target}: cannot write it ({err})") from None
    finally:
        if writer is not None:
            writer.abandon()
        partial.unlink(missing_ok=True)
    log.info("video written: %s (%d frames at %.2f fps)", target, written, fps)
