"""Whether a camera can see: checks a monitor runs on its own frames, cheap enough for every camera at stream
rate on a small CPU, so that a blind camera is said to be blind instead of being trusted (most false triggers of
fleet cameras come from a camera that cannot see).

Each frame kept (at most ``RATE_HZ`` a second) is shrunk to a 256x144 grey image, and six checks read it:
``black`` (nearly every pixel dark), ``blinded`` (much of the image saturated: glare, overexposure), ``frozen``
(frames identical while their timestamps advance), ``blurred`` (the Laplacian's variance far below the camera's
own), ``obstructed`` (a large part of what had texture now has neither texture nor motion: a hand, a sticker,
mud, a sunshade), and ``tilted`` (the orientation of the image's edges turned from where the camera's first
seconds put it: a mounting knocked round). The last three compare with a baseline taken over the first
``BASELINE_S`` seconds of stream the camera saw, so a camera that starts blind cannot be judged on them. A check
must hold for ``ONSET_S`` to count and be clear for ``CLEAR_S`` to stop counting; the camera is ``degraded``
while any counts. docs/health.md gives the measured delays and the figures behind each threshold.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import cv2
import numpy as np

from crashwatch.monitor.frame import Frame
from crashwatch.monitor.messages import Health

SIZE = (256, 144)
RATE_HZ = 10.0  # frames checked per second of stream at most
BASELINE_S = 3.0
ONSET_S, CLEAR_S = 0.8, 0.8
DARK, BLACK_SHARE = 20, 0.95
SATURATED, BLINDED_SHARE = 250, 0.4
# The mean absolute grey difference from the frame FROZEN_GAP_S before: a stuck picture, even re-encoded, stays
# under 0.2 (keyframes blip); the stillest real scene measured (a stopped car) moves 1.8.
FROZEN_DIFF, FROZEN_GAP_S = 0.5, 0.6
GRID = (4, 4)
# A cell's texture against its baseline: "soft" below SOFT (blur); "dead" (a cover) below EVEN, or below DEAD
# with no motion.
SOFT_TEXTURE_RATIO, DEAD_TEXTURE_RATIO, EVEN_TEXTURE_RATIO, DEAD_MOTION = 0.35, 0.25, 0.1, 1.0
BLURRED_SHARE = 0.8  # of the cells that had texture at baseline (above TEXTURE_FLOOR and a fifth of the median)
BLURRED_SHARPNESS = 0.15  # or the whole image's Laplacian variance against the baseline's
TEXTURE_FLOOR = 1.0  # mean absolute Laplacian of an even sky or bonnet
OBSTRUCTED_SHARE = 0.35
TILTED_DEG, TILTED_FIT, MAX_TURN_DEG = 7.0, 1.02, 40.0
BIN_DEG = 2.0
MOTION_WINDOW_S = 1.0  # what a cell's motion is measured over
TURN_WINDOW_S = 0.5  # the edge orientations averaged
CHECKS = ("black", "blinded", "frozen", "blurred", "obstructed", "tilted")


@dataclass(frozen=True)
class Figures:
    """What the checks read of one frame."""

    dark: float
    saturated: float
    sharpness: float  # the Laplacian's variance
    texture: np.ndarray  # per cell of ``GRID``: mean absolute Laplacian
    orientation: np.ndarray  # edge orientation histogram (0 to 180 degrees), weighted by gradient, sum 1


def measure(image: np.ndarray) -> tuple[Figures, np.ndarray]:
    """The figures of a BGR frame, and its small grey image (for the checks that compare frames)."""
    grey = cv2.cvtColor(cv2.resize(image, SIZE, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY).astype(np.float32)
    laplacian = cv2.Laplacian(grey, cv2.CV_32F)
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    magnitude = np.hypot(gx, gy)
    angle = np.degrees(np.arctan2(gy, gx)) % 180.0
    bins = int(180 / BIN_DEG)
    histogram = np.bincount((angle // BIN_DEG).astype(np.int64).ravel() % bins, weights=(magnitude ** 2).ravel(),
                            minlength=bins)
    return Figures(dark=float((grey <= DARK).mean()), saturated=float((grey >= SATURATED).mean()),
                   sharpness=float(laplacian.var()), texture=per_cell(np.abs(laplacian)),
                   orientation=histogram / max(float(histogram.sum()), 1e-9)), grey


def per_cell(values: np.ndarray) -> np.ndarray:
    """The mean of a small image's ``values`` in each cell of ``GRID``."""
    rows, cols = GRID
    return values.reshape(rows, SIZE[1] // rows, cols, SIZE[0] // cols).mean(axis=(1, 3))


def rotation(current: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    """The turn, in degrees, that best maps the baseline's edge orientations onto the current ones (circular
    cross-correlation of the two histograms), and how much better it fits than no turn at all (a scene whose
    edges merely changed fits about as well unturned)."""
    bins = len(baseline)
    scores = np.fft.irfft(np.fft.rfft(current) * np.conj(np.fft.rfft(baseline)), n=bins)
    reach = int(MAX_TURN_DEG / BIN_DEG)  # a quarter turn would swap the horizontal and vertical edges: not a tilt
    lags = np.r_[0:reach + 1, bins - reach:bins]
    lag = int(lags[np.argmax(scores[lags])])
    return (lag if lag <= bins // 2 else lag - bins) * BIN_DEG, float(scores[lag] / max(scores[0], 1e-12))


@dataclass
class _Baseline:
    sharpness: list[float] = field(default_factory=list)
    texture: list[np.ndarray] = field(default_factory=list)
    orientation: list[np.ndarray] = field(default_factory=list)
    done: bool = False

    def settle(self) -> None:
        self.done = True
        self.sharpness_median = float(np.median(self.sharpness))
        self.texture_median = np.median(np.stack(self.texture), axis=0)
        self.orientation_mean = np.mean(np.stack(self.orientation), axis=0)


class CameraHealth:
    """Feed it every frame (stream time and image); ``state`` says ``ok`` or ``degraded`` and why."""

    def __init__(self) -> None:
        self._greys: collections.deque[tuple[float, np.ndarray]] = collections.deque()
        self._orientation: collections.deque[tuple[float, np.ndarray]] = collections.deque()
        self._last_t: float | None = None
        self._first_t: float | None = None
        self._baseline = _Baseline()
        self._raw: dict[str, float | None] = {name: None for name in CHECKS}  # when each check began to hold
        self._clear_since: dict[str, float | None] = {name: None for name in CHECKS}
        self.active: dict[str, float] = {}  # the checks that count now, and the stream time they began
        self.figures: dict[str, float] = {}

    @property
    def degraded(self) -> bool:
        return bool(self.active)

    def feed(self, t: float, image: np.ndarray) -> bool:
        """Check a frame at stream time ``t`` (at most ``RATE_HZ`` a second); True when the set of checks that
        count changed."""
        if self._last_t is not None and t - self._last_t < 1.0 / RATE_HZ - 1e-6:
            return False
        if self._first_t is None:
            self._first_t = t
        figures, grey = measure(image)
        self._last_t = t
        self._greys.append((t, grey))
        self._orientation.append((t, figures.orientation))
        while self._greys and self._greys[0][0] < t - MOTION_WINDOW_S:
            self._greys.popleft()
        while self._orientation and self._orientation[0][0] < t - TURN_WINDOW_S:
            self._orientation.popleft()
        holding = self._holding(t, figures, grey)
        before = dict(self.active)
        for name in CHECKS:
            self._settle(name, t, name in holding)
        return before.keys() != self.active.keys()

    def _holding(self, t: float, f: Figures, grey: np.ndarray) -> set[str]:
        """The checks that hold on this frame. Where the image is black or blinded nothing else can be judged;
        what covers part of the image is not also called blur or a turn."""
        if f.dark >= BLACK_SHARE:
            return {"black"}
        if f.saturated >= BLINDED_SHARE:
            return {"blinded"}
        before = [g for at, g in self._greys if at <= t - FROZEN_GAP_S]
        still = bool(before) and float(np.abs(grey - before[-1]).mean()) < FROZEN_DIFF
        holding = {"frozen"} if still else set()
        base = self._baseline
        if not base.done:
            if not holding:  # a baseline of a camera that cannot see would judge nothing
                base.sharpness.append(f.sharpness)
                base.texture.append(f.texture)
                base.orientation.append(f.orientation)
            if self._first_t is not None and t - self._first_t >= BASELINE_S and len(base.sharpness) >= 5:
                base.settle()
            return holding
        textured = base.texture_median > max(TEXTURE_FLOOR, 0.2 * float(np.median(base.texture_median)))
        motion = per_cell(np.abs(grey - self._greys[0][1]))
        ratio = f.texture / np.maximum(base.texture_median, 1e-6)
        dead = ((ratio < EVEN_TEXTURE_RATIO) | ((ratio < DEAD_TEXTURE_RATIO) & (motion < DEAD_MOTION))) & textured
        soft = (ratio < SOFT_TEXTURE_RATIO) & textured
        counted = max(int(textured.sum()), 1)
        dead_share, soft_share = float(dead.sum() / counted), float(soft.sum() / counted)
        alive = textured & ~dead
        rest_soft = float((soft & alive).sum() / max(int(alive.sum()), 1))  # what is not covered: sharp or not
        turn, fit = rotation(np.mean([o for _, o in self._orientation], axis=0), base.orientation_mean)
        self.figures = {"dead_share": round(dead_share, 3), "soft_share": round(soft_share, 3),
                        "sharpness_ratio": round(f.sharpness / max(base.sharpness_median, 1e-6), 3),
                        "rotation_deg": turn, "rotation_fit": round(fit, 3)}
        if dead_share >= OBSTRUCTED_SHARE and rest_soft < BLURRED_SHARE:  # a cover, the rest of the view sharp
            holding = {"obstructed"}  # what the cover leaves may be still: that is not a frozen picture
        elif soft_share >= BLURRED_SHARE or f.sharpness < BLURRED_SHARPNESS * base.sharpness_median:
            # nearly everything lost its detail: the lens, not something in front of it
            holding.add("blurred")
        elif abs(turn) >= TILTED_DEG and fit >= TILTED_FIT:
            holding.add("tilted")
        return holding

    def _settle(self, name: str, t: float, holds: bool) -> None:
        """A check counts once it has held for ``ONSET_S``, and stops once it has been clear for ``CLEAR_S``."""
        if holds:
            self._clear_since[name] = None
            began = self._raw[name]
            if began is None:
                began = self._raw[name] = t
            if name not in self.active and t - began >= ONSET_S:
                self.active[name] = began
            return
        self._raw[name] = None
        if name in self.active:
            cleared = self._clear_since[name]
            if cleared is None:
                cleared = self._clear_since[name] = t
            if t - cleared >= CLEAR_S:
                del self.active[name]
                self._clear_since[name] = None

    @property
    def baseline_done(self) -> bool:
        """Whether the checks that compare with the camera's first seconds (blurred, obstructed, tilted) run."""
        return self._baseline.done


class HealthWatch:
    """A camera's ``CameraHealth`` fed from its capture thread, the state read from any thread, and each change
    handed to ``changed`` (the loop publishes it as a ``health`` message)."""

    def __init__(self, changed: Callable[[Health], object]) -> None:
        self._health = CameraHealth()
        self._lock = threading.Lock()
        self._changed = changed
        self._since = time.time()

    def feed(self, frame: Frame) -> None:
        with self._lock:
            if not self._health.feed(frame.t, frame.image):
                return
            self._since = time.time()
            message = Health(**self._state(), since=self._since, t=frame.t, figures=dict(self._health.figures))
        self._changed(message)

    def reasons(self) -> list[str]:
        """The checks that fail now (empty: the camera sees)."""
        with self._lock:
            return sorted(self._health.active)

    def status(self) -> dict[str, Any]:
        """``status.camera``."""
        with self._lock:
            return {**self._state(), "since": self._since, "baseline": self._health.baseline_done}

    def _state(self) -> dict[str, Any]:
        return {"state": "degraded" if self._health.active else "ok", "reasons": sorted(self._health.active)}
