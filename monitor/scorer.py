"""One window's work: pick its frames, encode the ones not seen before, score the window.

A frame's embeddings depend on that frame alone, so each frame is encoded once and reused by every window that
contains it; windows are sampled on a grid anchored to the stream clock, so consecutive windows share frames
and a stride costs one vision pass per new frame plus one head pass. Frames are encoded one at a time (on a
CPU batching gains nothing) so the cached path and a full recomputation run the very same computations. The
monitor's prefetcher (``monitor.prefetch``) calls ``encode`` from its own thread as frames arrive; ``score``
then finds them cached and runs only the head.
"""

from __future__ import annotations

import collections
import threading
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
    encoded: int  # this window's frames no window scored before held: each took one vision pass
    encode_ms: float  # those passes' time, which may have overlapped the previous window's head pass
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
        self._cache: dict[int, tuple[np.ndarray, float]] = {}  # frame id -> embeddings, seconds its pass took
        self._scored: set[int] = set()  # cached frames some scored window held: their pass is reported
        self._lock = threading.Lock()  # the cache, shared with the prefetcher's thread
        self._vision = threading.Lock()  # one vision pass at a time, so no frame is encoded twice
        self.passes = 0  # vision passes since the start, one frame each
        self.vision_ms: collections.deque[float] = collections.deque(maxlen=50)  # recent passes, one frame each
        self.head_ms: collections.deque[float] = collections.deque(maxlen=50)

    def reset(self) -> None:
        with self._lock:
            self._cache.clear()
            self._scored.clear()

    def encode(self, frame: Frame) -> bool:
        """Encode ``frame`` unless it is cached; True if it ran the vision graph."""
        with self._vision:
            with self._lock:
                if frame.id in self._cache:
                    return False
            started = time.perf_counter()
            embeds = self.model.encode_frames(preprocess_frame(frame.image, self.pixels)[None])[0]
            took = time.perf_counter() - started
            with self._lock:
                self._cache[frame.id] = (embeds, took)
                self.passes += 1
                self.vision_ms.append(took * 1000)
            return True

    def score(self, frames: Sequence[Frame], end: float) -> WindowScore:
        """Score the window ending at stream time ``end`` from ``frames`` (oldest first)."""
        chosen = tuple(frames[i] for i in pick_frames([f.t for f in frames], end, self.window))
        if not self.cache_enabled:
            self.reset()
        for frame in chosen:
            self.encode(frame)
        with self._lock:
            embeds = np.stack([self._cache[f.id][0] for f in chosen])
            new = {f.id for f in chosen} - self._scored
            encoded, encode_s = len(new), sum(self._cache[i][1] for i in new)
            self._scored |= new
            oldest = chosen[0].id
            for stale in [i for i in self._cache if i < oldest]:  # later windows only hold newer frames
                del self._cache[stale]
                self._scored.discard(stale)
        started = time.perf_counter()
        probability = self.model.window_probability(embeds)
        score_ms = (time.perf_counter() - started) * 1000
        self.head_ms.append(score_ms)
        partial = end - self.window.seconds < frames[0].t - EPSILON
        return WindowScore(end, chosen, probability, encoded, encode_s * 1000, score_ms, partial)
