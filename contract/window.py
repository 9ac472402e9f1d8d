"""Which frames make up a window: the sampling part of the training/serving contract.

A window is the last ``seconds`` of video ending at time ``end``. It holds ``num_frames`` frames whose nominal
times are spaced evenly from ``end - seconds`` to ``end``. For each nominal time we take the newest frame
captured at or before it, never a later one, because a live monitor cannot see the future. The trainer uses
this on a decoded clip and the monitor on its live buffer, so both feed the model the same frames.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class WindowSpec:
    """Length of a window in seconds and how many frames it holds."""

    seconds: float
    num_frames: int

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ValueError(f"window seconds must be positive, got {self.seconds}")
        if self.num_frames < 1:
            raise ValueError(f"a window needs at least one frame, got {self.num_frames}")

    @property
    def spacing(self) -> float:
        """Seconds between two nominal frame times (the whole window for a single frame)."""
        return self.seconds / (self.num_frames - 1) if self.num_frames > 1 else self.seconds

    def nominal_times(self, end: float) -> list[float]:
        """Nominal capture times of the window's frames, oldest first, the last one at ``end``."""
        if self.num_frames == 1:
            return [end]
        start = end - self.seconds
        return [start + k * self.spacing for k in range(self.num_frames)]

    def relative_times(self) -> list[float]:
        """Nominal frame times relative to the window start: what the prompt's timestamps say."""
        return [t + self.seconds for t in self.nominal_times(0.0)] if self.num_frames > 1 else [0.0]


# Float slack when comparing a frame's timestamp with a nominal time, so that a frame stamped 0.1 s at
# 10 fps is not lost to 0.30000000000000004-style rounding.
EPSILON = 1e-6


def pick_frame(timestamps: Sequence[float], nominal: float) -> int:
    """The index into ``timestamps`` (sorted, seconds, not empty) of the frame a window takes for the nominal
    time ``nominal``: the newest at or before it, or the first frame where all are later (a clip shorter than
    the window is padded by repeating its first frame)."""
    return max(bisect.bisect_right(timestamps, nominal + EPSILON) - 1, 0)


def pick_frames(timestamps: Sequence[float], end: float, window: WindowSpec) -> list[int]:
    """Indices into ``timestamps`` (sorted, seconds) of the frames that make up the window ending at ``end``;
    ValueError when there are no frames at all."""
    if not timestamps:
        raise ValueError("cannot sample a window from zero frames")
    return [pick_frame(timestamps, t) for t in window.nominal_times(end)]


def arrived(nominal: float, newest: float) -> bool:
    """Whether the frame for ``nominal`` is known once the newest frame is at ``newest``: a later frame can no
    longer be the newest at or before it."""
    return nominal <= newest + EPSILON


def grid_at_or_after(t: float, step: float) -> float:
    """The first multiple of ``step`` at or after ``t``: where windows end (a stride grid) and where nominal frame
    times lie (a lattice of the frame spacing), anchored to the stream clock."""
    return math.ceil((t - EPSILON) / step) * step


def grid_at_or_before(t: float, step: float) -> float:
    """The last multiple of ``step`` at or before ``t``."""
    return math.floor((t + EPSILON) / step) * step
