"""Which video codec the recording can write here: each codec's OpenCV fourcc and container, and a probe that
tries it."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from crashwatch.monitor.evidence.segments import RecordingError

# name -> (OpenCV fourcc, container). h264 where the installed OpenCV can encode it (browsers play it); the
# pip wheels cannot, so auto falls back to mp4v, which costs ~2 ms a 640x360 frame; vp8 (WebM, which browsers
# play too) costs ~10x that.
CODECS = {"h264": ("avc1", ".mp4"), "mp4v": ("mp4v", ".mp4"), "vp8": ("VP80", ".webm")}
CODEC_CHOICES = ("auto", *CODECS)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """FFmpeg prints each encoder it fails to open straight to the process's stderr: hide that while probing."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def probe_codec(name: str) -> str:
    """The codec to record with: ``name``, or for ``auto`` the first of h264, mp4v this OpenCV can write. It
    writes a test file in the system's temporary folder, not the recording's, whose disk may be full."""
    for candidate in (("h264", "mp4v") if name == "auto" else (name,)):
        fourcc, suffix = CODECS[candidate]
        with tempfile.TemporaryDirectory() as scratch, quiet_stderr():
            path = Path(scratch) / f"probe{suffix}"
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), 10.0, (64, 48))
            ok = writer.isOpened()
            if ok:
                writer.write(np.zeros((48, 64, 3), np.uint8))
            writer.release()
        if ok:
            return candidate
        if name != "auto":
            raise RecordingError(f"--record-codec {name}: this OpenCV build cannot encode it; try mp4v")
    raise RecordingError("this OpenCV build can encode neither H.264 nor MPEG-4 video")
