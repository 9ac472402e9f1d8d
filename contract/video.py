"""Reading frames from video files with OpenCV, with errors that name the file.

Clip timestamps are ``index / fps``: container timestamps from OpenCV are unreliable on the truncated and
re-encoded clips real datasets hold, while the frame rate in the header is what every decoder agrees on.
The frame count in the header is not trusted either (truncated files claim more frames than decode), so
``probe_clip`` counts the frames that really decode.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

# FFmpeg inside OpenCV prints each decoder error straight to the process's stderr, which a user reads as a
# crash; the project says what happened in its own words (a damaged stretch, an outage). OpenCV reads this when
# it first opens a video, so it is set on import, before any capture.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402
import numpy as np

from crashwatch.contract.errors import CrashwatchError

log = logging.getLogger(__name__)


class VideoError(CrashwatchError):
    """A video that cannot be used, with the reason; the message always names the file."""


@dataclass(frozen=True)
class ClipInfo:
    """What a clip really holds: decodable frames, their rate and size."""

    path: Path
    fps: float
    num_frames: int
    width: int
    height: int
    # Stretches (first, last frame) that do not decode with frames that do after them: a file damaged in the
    # middle, whose ``num_frames`` ends at the first damage.
    damaged: tuple[tuple[int, int], ...] = ()

    @property
    def duration(self) -> float:
        """Seconds from the first frame to just after the last one."""
        return self.num_frames / self.fps

    def timestamps(self) -> list[float]:
        return [i / self.fps for i in range(self.num_frames)]


def _open(path: Path) -> cv2.VideoCapture:
    if not path.is_file():
        raise VideoError(f"{path}: no such video file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: the file is empty")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"{path}: OpenCV cannot open it as a video (not a video, or an unsupported codec)")
    return capture


def probe_clip(path: str | Path) -> ClipInfo:
    """Open ``path``, count the frames that decode from the first on, note damaged stretches after them, and
    return what it holds. Raises VideoError."""
    path = Path(path)
    capture = _open(path)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        claimed = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        ok, first = capture.read()
        if not ok or first is None:
            raise VideoError(f"{path}: no frame decodes")
        if not fps or fps <= 0 or fps > 1000:
            raise VideoError(f"{path}: the frame rate in its header is unusable ({fps})")
        count = 1
        while capture.grab():
            count += 1
        # Read on to the header's count: frames that decode after the failure that ended the loop (at ``count``).
        damaged: list[tuple[int, int]] = []
        stretch: int | None = count
        for index in range(count + 1, claimed):
            if capture.grab():
                if stretch is not None:
                    damaged.append((stretch, index - 1))
                    stretch = None
            elif stretch is None:
                stretch = index
    finally:
        capture.release()
    if claimed > count and not damaged:
        log.debug("%s: header claims %d frames, %d decode", path, claimed, count)
    return ClipInfo(path=path, fps=float(fps), num_frames=count, width=first.shape[1], height=first.shape[0],
                    damaged=tuple(damaged))


def iter_frames(path: str | Path, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    """The frames at ``indices`` (any order, repeats allowed) as ``(index, BGR uint8 array)``, each once, in
    the file's order: one pass over the file, holding one frame at a time."""
    path = Path(path)
    wanted = sorted(set(indices))
    if not wanted:
        return
    if wanted[0] < 0:
        raise ValueError(f"negative frame index {wanted[0]}")
    capture = _open(path)
    try:
        index = -1
        for target in wanted:
            while index < target:
                if not capture.grab():
                    raise VideoError(f"{path}: frame {target} does not decode (the file ends at frame {index})")
                index += 1
            ok, frame = capture.retrieve()
            if not ok or frame is None:
                raise VideoError(f"{path}: frame {target} does not decode")
            yield target, frame
    finally:
        capture.release()


def read_frames(path: str | Path, indices: Sequence[int]) -> list[np.ndarray]:
    """Decode the frames at ``indices`` (any order, repeats allowed) as BGR uint8 arrays."""
    found = dict(iter_frames(path, indices))
    return [found[i] for i in indices]
