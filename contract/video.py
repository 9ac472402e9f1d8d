"""Reading frames from video files with FFmpeg's own API (PyAV), with errors that name the file.

A frame's index is its slot on the header's frame-rate timeline, taken from its presentation timestamp: the
frame rate is what every decoder agrees on, and the timestamps say where a frame belongs when frames before it
are missing. A stretch that does not decode (a file damaged in the middle: FFmpeg's decoder refuses its packets,
or marks the frames it patched up as corrupt) leaves a gap in the indices and decoding goes on after it;
readers of a frame inside such a gap get the last whole frame before it, as a camera's dropped frame holds the
one before. ``probe_clip`` decodes the whole file: the frame count in headers is not trusted (truncated files
claim more frames than decode).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import av
import numpy as np

from crashwatch.contract.errors import CrashwatchError

log = logging.getLogger(__name__)
av.logging.set_level(None)  # FFmpeg's own lines (one per damaged packet) stay off the terminal: we say it once


class VideoError(CrashwatchError):
    """A video that cannot be used, with the reason; the message always names the file."""


@dataclass(frozen=True)
class ClipInfo:
    """What a clip really holds: its frame-rate timeline up to the last frame that decodes, and its size."""

    path: Path
    fps: float
    num_frames: int
    width: int
    height: int
    # Stretches (first, last index) inside the timeline whose frames do not decode: a file damaged there.
    damaged: tuple[tuple[int, int], ...] = ()

    @property
    def duration(self) -> float:
        """Seconds from the first frame to just after the last one."""
        return self.num_frames / self.fps

    @property
    def damaged_frames(self) -> int:
        return sum(last - first + 1 for first, last in self.damaged)

    def timestamps(self) -> list[float]:
        return [i / self.fps for i in range(self.num_frames)]


class VideoFile:
    """An open video file: its first video stream, its frame rate, and its whole frames in order."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError(f"{self.path}: no such video file")
        if self.path.stat().st_size == 0:
            raise VideoError(f"{self.path}: the file is empty")
        try:
            self._container = av.open(str(self.path))
        except (av.FFmpegError, UnicodeDecodeError) as err:
            raise VideoError(f"{self.path}: not a video FFmpeg can read ({_reason(err)})") from None
        if not self._container.streams.video:
            self._container.close()
            raise VideoError(f"{self.path}: it holds no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else 0.0
        if not 0 < self.fps <= 1000:
            self._container.close()
            raise VideoError(f"{self.path}: the frame rate in its header is unusable ({self.fps})")
        self.header_frames = int(self._stream.frames or 0)
        self.codec = self._stream.codec_context.name  # FFmpeg's decoder name: h264, vp8, av1, libdav1d, mpeg4
        self.size = (self._stream.width, self._stream.height)

    def __enter__(self) -> "VideoFile":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def frames(self) -> Iterator[tuple[int, av.VideoFrame]]:
        """``(index, frame)`` for each frame that decodes whole, indices increasing; a gap is a damaged stretch.
        Convert with ``bgr(frame)`` only the frames you need (conversion costs more than decoding)."""
        origin: float | None = None
        last = -1
        for packet in self._demux():
            try:
                decoded = packet.decode()
            except av.error.InvalidDataError:  # a damaged packet: its frame is missing
                continue
            for frame in decoded:
                if frame.is_corrupt:  # patched up by the decoder over missing data: not evidence of anything
                    continue
                if frame.time is None:
                    index = last + 1
                else:
                    origin = frame.time if origin is None else origin
                    index = max(last + 1, round((frame.time - origin) * self.fps))
                last = index
                yield index, frame

    def _demux(self) -> Iterator[av.Packet]:
        try:
            yield from self._container.demux(self._stream)
        except av.FFmpegError as err:  # the container itself breaks off (truncated): what decoded stands
            log.debug("%s: demuxing stopped: %s", self.path, _reason(err))


def bgr(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as a BGR uint8 array, the layout OpenCV and the preprocessing take."""
    return frame.to_ndarray(format="bgr24")


def _reason(err: BaseException) -> str:
    return getattr(err, "strerror", None) or str(err)


def probe_clip(path: str | Path) -> ClipInfo:
    """Decode ``path`` once and say what it holds: its timeline up to the last frame that decodes, and the
    stretches inside it that do not. Raises VideoError."""
    with VideoFile(path) as video:
        indices, size = [], None
        for index, frame in video.frames():
            indices.append(index)
            size = size or (frame.width, frame.height)
        if size is None:
            raise VideoError(f"{video.path}: no frame decodes")
        damaged = tuple((a + 1, b - 1) for a, b in zip(indices, indices[1:]) if b - a > 1)
        if indices[0] > 0:
            damaged = ((0, indices[0] - 1), *damaged)
        if video.header_frames > indices[-1] + 1 and not damaged:
            log.debug("%s: header claims %d frames, %d decode", video.path, video.header_frames, indices[-1] + 1)
        return ClipInfo(path=video.path, fps=video.fps, num_frames=indices[-1] + 1, width=size[0], height=size[1],
                        damaged=damaged)


def iter_frames(path: str | Path, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    """The frames at ``indices`` (any order, repeats allowed) as ``(index, BGR uint8 array)``, each once, in
    the file's order: one pass over the file, holding one frame at a time. An index in a damaged stretch gets
    the last whole frame before it; one past the last frame that decodes is an error."""
    wanted = sorted(set(indices))
    if not wanted:
        return
    if wanted[0] < 0:
        raise ValueError(f"negative frame index {wanted[0]}")
    with VideoFile(path) as video:
        position, previous = 0, None  # previous: the last whole frame, converted only if a gap needs it
        for index, frame in video.frames():
            while position < len(wanted) and wanted[position] < index:  # inside a damaged stretch
                if previous is None:
                    raise VideoError(f"{video.path}: frame {wanted[position]} does not decode (nor any before it)")
                yield wanted[position], bgr(previous)
                position += 1
            if position == len(wanted):
                return
            if wanted[position] == index:
                yield index, bgr(frame)
                position += 1
            previous = frame
        if position < len(wanted):
            raise VideoError(f"{video.path}: frame {wanted[position]} does not decode (the file ends before it)")


def read_frames(path: str | Path, indices: Sequence[int]) -> list[np.ndarray]:
    """Decode the frames at ``indices`` (any order, repeats allowed) as BGR uint8 arrays."""
    found = dict(iter_frames(path, indices))
    return [found[i] for i in indices]
