"""Preview frames for a dashboard (``crashwatch monitor --preview``): a small JPEG of the newest frame on the
``preview`` topic, at most twice a second.

It hangs on the capture's per-frame hooks and encodes the frame at hand: shrinking to 320 px and a JPEG at
quality 70 take under 2 ms (a 720p frame), and the wall-clock rate limit keeps that to twice a second however
fast a file is replayed, so the capture does not feel it and the model never sees it. A preview is a few
kilobytes of JSON, against the PUB socket's high-water mark like every message: a dashboard that stalls loses
previews, never holds up the monitor.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from crashwatch.monitor.frame import Frame, small_jpeg
from crashwatch.monitor.messages import Preview

PREVIEW_WIDTH = 320
PREVIEW_QUALITY = 70
PREVIEW_PERIOD_S = 0.5


class Previewer:
    """Turns every ``PREVIEW_PERIOD_S``-th second's frame into a ``Preview`` and hands it to ``publish``."""

    def __init__(self, publish: Callable[[Preview], Any], width: int = PREVIEW_WIDTH, quality: int = PREVIEW_QUALITY,
                 period: float = PREVIEW_PERIOD_S) -> None:
        self.publish = publish
        self.width = width
        self.quality = quality
        self.period = period
        self._due = float("-inf")

    def feed(self, frame: Frame) -> None:
        """A captured frame (the capture's thread); published when the last preview is ``period`` old."""
        now = time.monotonic()
        if now < self._due:
            return
        self._due = now + self.period
        encoded = small_jpeg(frame.image, self.width, self.quality)
        if encoded is not None:
            width, height, jpeg = encoded
            self.publish(Preview(frame_id=frame.id, t=frame.t, captured_at=frame.wall, width=width, height=height,
                                 jpeg=jpeg))
