"""Which windows of a clip the model learns from, and their labels.

Research behaviour: one window ending at the clip's end, labelled with the line's label. A streaming model
should also learn what the build-up looks like and when it is not yet dangerous, so where a clip says when its
collision happens (``event_time``), or is a normal clip (label 0: every window is safe), ``windows_per_clip``
windows are drawn with evenly spaced ends; a window is positive when the event falls within ``horizon``
seconds after its end. Windows of a crash clip never end after its event: what follows is not a prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.window import WindowGeometry
from train.data import Clip


@dataclass(frozen=True)
class WindowSample:
    """A window of a clip (ending at ``end`` seconds) and its label. The label never reaches the model's input."""

    clip: Clip
    end: float
    label: int


def clip_end_window(clip: Clip) -> WindowSample:
    """The research sample: the window ending at the clip's last frame, with the line's label."""
    return WindowSample(clip, clip.info.timestamps()[-1], clip.label)


def training_windows(clip: Clip, geometry: WindowGeometry, horizon: float, per_clip: int) -> list[WindowSample]:
    """The windows drawn from one clip for training (see module docstring)."""
    last = clip.info.timestamps()[-1]
    if per_clip == 1 or (clip.event_time is None and clip.label == 1):
        return [clip_end_window(clip)]
    latest = last if clip.event_time is None else min(last, clip.event_time)
    earliest = min(geometry.seconds, latest)
    if latest <= earliest:
        ends = [latest]
    else:
        step = (latest - earliest) / (per_clip - 1)
        ends = [earliest + k * step for k in range(per_clip)]
    return [WindowSample(clip, end, window_label(clip, end, horizon)) for end in ends]


def window_label(clip: Clip, end: float, horizon: float) -> int:
    """1 when the clip's event happens within ``horizon`` seconds after ``end``; a clip without an event keeps
    its own label (which, for the windows drawn here, is 0)."""
    if clip.event_time is None:
        return clip.label
    return int(0.0 <= clip.event_time - end <= horizon)
