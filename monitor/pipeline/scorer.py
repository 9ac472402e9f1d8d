"""One window's work: pick its frames, encode the ones not seen before, score the window.

A frame's embeddings depend on that frame alone, so each frame is encoded once and reused by every window that
contains it; windows are sampled on a grid anchored to the stream clock, so consecutive windows share frames
and a stride costs one vision pass per new frame plus one head pass. Frames are encoded one at a time (on a
CPU batching gains nothing) so the cached path and a full recomputation run the very same computations. The
monitor's prefetcher (``crashwatch.monitor.pipeline.prefetch``) calls ``encode`` from its own thread as frames arrive; ``score``
then finds them cached and runs only the head. A model call that fails for a reason that may pass (``EngineError``:
a Triton server away or slow) is counted in ``ModelCalls`` for ``status`` and raised to the caller, which skips
or retries; the scorer's cache is untouched by it.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from crashwatch.contract.preprocess import PixelSpec, preprocess_frame
from crashwatch.contract.window import EPSILON, WindowSpec, pick_frames
from crashwatch.monitor.engines.local import EngineError
from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.frame import Frame

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class WindowScore:
    end: float
    frames: tuple[Frame, ...]
    probability: float
    encoded: int  # this window's frames no window scored before held: each took one vision pass
    encode_ms: float  # those passes' time, which may have overlapped the previous window's head pass
    score_ms: float
    partial: bool = False  # the window reaches back before the first frame: padded with it, as in training
    states: tuple[np.ndarray, ...] = ()  # what each frame was encoded to (an explanation withholds them in turn)

    @property
    def model_ms(self) -> float:
        return self.encode_ms + self.score_ms


class ModelCalls:
    """Failed model calls, as ``status.model_calls`` reports them: a remote model may be away for a while, and
    the monitor goes on meanwhile instead of stopping."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.failures = 0  # failed calls since the start
        self.failing_since: float | None = None  # wall time of the first failure of the current outage
        self.source: str | None = None  # what the last failed call called (URL and model)
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    def run(self, call: Callable[..., T], *args: Any) -> T:
        try:
            result = call(*args)
        except EngineError as err:
            with self._lock:
                self.failures += 1
                self.source, self.last_error, self.last_error_at = err.source, str(err), time.time()
                first = self.failing_since is None
                if first:
                    self.failing_since = self.last_error_at
            if first:
                log.warning("model call failed (%s); strides are skipped until it answers again", err)
            raise
        if self.failing_since is not None:
            with self._lock:
                away, self.failing_since = time.time() - self.failing_since, None
            log.info("model calls succeed again after %.1f s (%d failed calls in all)", away, self.failures)
        return result

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"state": "ok" if self.failing_since is None else "failing", "failures": self.failures,
                    "failing_since": self.failing_since, "source": self.source, "last_error": self.last_error,
                    "last_error_at": self.last_error_at}


class WindowScorer:
    """Scores windows of a frame list with a bundle, caching per-frame embeddings by frame id."""

    def __init__(self, model: RiskModel, window: WindowSpec, pixels: PixelSpec, cache: bool = True) -> None:
        self.model = model
        self.window = window
        self.pixels = pixels
        self.cache_enabled = cache
        self._cache: dict[int, tuple[np.ndarray, float]] = {}  # frame id -> encode_frames' result, seconds it took
        self._scored: set[int] = set()  # cached frames some scored window held: their pass is reported
        self._lock = threading.Lock()  # the cache, shared with the prefetcher's thread
        self._vision = threading.Lock()  # one vision pass at a time, so no frame is encoded twice
        self.passes = 0  # vision passes since the start, one frame each
        self.vision_ms: collections.deque[float] = collections.deque(maxlen=50)  # recent passes, one frame each
        self.head_ms: collections.deque[float] = collections.deque(maxlen=50)
        self.calls = ModelCalls()

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
            state = self.calls.run(self.model.encode_frames, preprocess_frame(frame.image, self.pixels)[None])[0]
            took = time.perf_counter() - started
            with self._lock:
                self._cache[frame.id] = (state, took)
                self.passes += 1
                self.vision_ms.append(took * 1000)
            return True

    def score(self, frames: Sequence[Frame], end: float) -> WindowScore:
        """Score the window ending at stream time ``end`` from ``frames`` (oldest first); ``EngineError`` if a
        model call fails."""
        chosen = tuple(frames[i] for i in pick_frames([f.t for f in frames], end, self.window))
        if not self.cache_enabled:
            self.reset()
        for frame in chosen:
            self.encode(frame)
        with self._lock:
            states = [self._cache[f.id][0] for f in chosen]
            new = {f.id for f in chosen} - self._scored
            encoded, encode_s = len(new), sum(self._cache[i][1] for i in new)
            self._scored |= new
            oldest = chosen[0].id
            for stale in [i for i in self._cache if i < oldest]:  # later windows only hold newer frames
                del self._cache[stale]
                self._scored.discard(stale)
        started = time.perf_counter()
        probability = self.calls.run(self.model.window_probability, states)
        score_ms = (time.perf_counter() - started) * 1000
        self.head_ms.append(score_ms)
        partial = end - self.window.seconds < frames[0].t - EPSILON
        return WindowScore(end, chosen, probability, encoded, encode_s * 1000, score_ms, partial, tuple(states))
