"""Which windows of a clip the model learns from, and their labels.

Research behaviour: one window ending at the clip's end, labelled with the line's label. A streaming model
should also learn what the build-up looks like and when it is not yet dangerous, so where a clip says when its
collision happens (``event_time``), or is a normal clip (label 0: every window is safe), up to
``windows_per_clip`` windows are drawn; a window is positive when the event falls within ``horizon`` seconds
after its end. Windows of a crash clip never end after its event: what follows is not a prediction.

Window ends lie on the grid of the window's frame spacing, counted back from the latest end, as a monitor
scoring the clip at that stride would see them: consecutive windows then share all but one frame, and a
group of them (``group_windows``) is decoded and encoded frame by frame once, as the monitor does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from crashwatch.contract.dataset import Clip
from crashwatch.contract.window import WindowSpec


@dataclass(frozen=True)
class WindowSample:
    """A window of a clip (ending at ``end``) and its label. The label never reaches the model's input."""

    clip: Clip
    end: float
    label: int


def clip_end_window(clip: Clip) -> WindowSample:
    """The research sample: the window ending at the clip's last frame, with the line's label."""
    return WindowSample(clip, clip.info.timestamps()[-1], clip.label)


def training_windows(clip: Clip, window: WindowSpec, horizon: float, per_clip: int) -> list[WindowSample]:
    """The windows drawn from one clip for training, oldest first: every window on the stride grid from the
    latest end back to the window's length into the clip, or ``per_clip`` of them evenly spread where the grid
    holds more."""
    last = clip.info.timestamps()[-1]
    if per_clip == 1 or (clip.event_time is None and clip.label == 1):
        return [clip_end_window(clip)]
    latest = last if clip.event_time is None else min(last, clip.event_time)
    earliest = min(window.seconds, latest)
    on_grid = int((latest - earliest) / window.spacing + 1e-6) + 1
    steps = range(on_grid) if on_grid <= per_clip else np.linspace(0, on_grid - 1, per_clip).round().astype(int)
    ends = [latest - int(k) * window.spacing for k in reversed(steps)]
    return [WindowSample(clip, end, window_label(clip, end, horizon)) for end in ends]


def window_label(clip: Clip, end: float, horizon: float) -> int:
    """1 when the clip's event happens within ``horizon`` seconds after ``end``; a clip without an event keeps
    its own label (which, for the windows drawn here, is 0)."""
    if clip.event_time is None:
        return clip.label
    return int(0.0 <= clip.event_time - end <= horizon)


def group_windows(samples: Sequence[WindowSample], per_group: int) -> list[list[WindowSample]]:
    """Consecutive windows of the same clip, ``per_group`` at most to a group: one training item, whose shared
    frames are read and encoded once."""
    groups: list[list[WindowSample]] = []
    for sample in samples:
        if groups and groups[-1][0].clip is sample.clip and len(groups[-1]) < per_group:
            groups[-1].append(sample)
        else:
            groups.append([sample])
    return groups
