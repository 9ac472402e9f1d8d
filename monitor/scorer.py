"""One stride's work: pick the window's frames, encode the ones not seen before, score the window.

A frame's embeddings depend on that frame alone, so each frame is encoded once and reused by every window that
contains it; windows are sampled on a grid anchored to the stream clock, so consecutive windows share frames
and a stride costs one vision pass per new frame plus one head pass. Frames are encoded one at a time (on a
CPU batching gains nothing) so the cached path and a full recomputation run the very same computations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from contract.preprocess import PixelSpec, preprocess_frame
from contract.window import EPSILON, WindowSpec, pick_frames
from monitor.model import RiskModel
from monitor.source import Frame


@dataclass(frozen=True)
class WindowScore:
    end: float
    frames: tuple[Frame, ...]
    probability: float
    encoded: int  # frames run through the vision graph for this stride
    encode_ms: float
    score_ms: float
    partial: bool = False  # the window reaches back before the first frame: padded with it, as in training

    @property
    def model_ms(self) -> float:
        return self.encode_ms + self.score_ms


class WindowScorer:
    """Scores windows of a frame list with a bundle, caching per-frame embeddings by frame id."""

    def __init__(self, model: RiskModel, window: WindowSpec, pixels: PixelSpec, cache: bool = True) -> None:
        self.model = model
        self.window = window
        self.pixels = pixels
        self.cache_enabled = cache
        self._cache: dict[int, np.ndarray] = {}

    def reset(self) -> None:
        self._cache.clear()

    def score(self, frames: Sequence[Frame], end: float) -> WindowScore:
        """Score the window ending at stream time ``end`` from ``frames`` (oldest first)."""
        chosen = tuple(frames[i] for i in pick_frames([f.t for f in frames], end, self.window))
        if not self.cache_enabled:
            self._cache.clear()
        started = time.perf_counter()
        encoded = 0
        for frame in chosen:
            if frame.id not in self._cache:
                pixels = preprocess_frame(frame.image, self.pixels)[None]
                self._cache[frame.id] = self.model.encode_frames(pixels)[0]
                encoded += 1
        encoded_at = time.perf_counter()
        probability = self.model.window_probability(np.stack([self._cache[f.id] for f in chosen]))
        scored_at = time.perf_counter()
        oldest = chosen[0].id
        for stale in [i for i in self._cache if i < oldest]:  # later windows only hold newer frames
            del self._cache[stale]
        partial = end - self.window.seconds < frames[0].t - EPSILON
        return WindowScore(end, chosen, probability, encoded, (encoded_at - started) * 1000,
                           (scored_at - encoded_at) * 1000, partial)
