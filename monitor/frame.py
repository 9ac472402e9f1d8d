"""A captured frame: what the capture hands to the window, the recording and the event clips alike."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Frame:
    """One decoded frame with its stream time ``t`` (seconds, the stream's clock) and ``wall``, the
    ``time.time()`` at which it was captured (for latency)."""

    id: int
    t: float
    wall: float
    image: np.ndarray
