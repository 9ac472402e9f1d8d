"""A captured frame: what the capture hands to the window, the recording and the event clips alike."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Frame:
    """One decoded frame with its stream time ``t`` (seconds, the stream's clock) and ``wall``, the
    ``time.time()`` at which it was captured (for latency)."""

    id: int
    t: float
    wall: float
    image: np.ndarray


def small_jpeg(image: np.ndarray, width: int, quality: int) -> tuple[int, int, str] | None:
    """A BGR frame shrunk to at most ``width`` pixels across, as a JPEG: (width, height, the file's bytes in
    base64, as messages carry it); None if it cannot be encoded."""
    height, full = image.shape[:2]
    if full > width:
        height = max(1, round(height * width / full))
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return (image.shape[1], height, base64.b64encode(jpeg.tobytes()).decode("ascii")) if ok else None
