"""Per stride, cached (one new frame encoded, the window scored from cached embeddings) vs naive (every frame
of the window re-encoded), through the monitor's own scorer."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from crashwatch.bench.report import median_time
from crashwatch.contract.preprocess import PixelSpec, normalise, preprocess_frame, resize_frame
from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.frame import Frame
from crashwatch.monitor.pipeline.scorer import WindowScorer

FPS = 30
UHD = (3840, 2160)


def _frames(count: int, size: tuple[int, int] = (640, 360)) -> list[Frame]:
    """Random frames of a 30 fps stream."""
    rng = np.random.default_rng(0)
    return [Frame(i, i / FPS, time.time(), rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
            for i in range(count)]


def preprocess_times(size: int, repeats: int) -> dict[str, float]:
    """Milliseconds to preprocess one 4K frame for a ``size`` px model: the served path (area pre-shrink, then
    exact Lanczos) and the exact Lanczos from the full frame, measured one after the other."""
    rng = np.random.default_rng(0)
    frame = cv2.resize(rng.integers(0, 255, (90, 160, 3), dtype=np.uint8), UHD, interpolation=cv2.INTER_CUBIC)
    spec = PixelSpec(size)
    served = median_time(lambda: preprocess_frame(frame, spec), repeats)
    exact = median_time(lambda: normalise(resize_frame(frame, size, exact=True), spec), repeats)
    return {"served_ms": served * 1000, "exact_ms": exact * 1000}


def stride_times(bundle: Path, repeats: int, runtime: str = "onnxruntime") -> dict[str, float | str]:
    """Seconds per stride on ``runtime``: cached (one new frame) and naive (whole window re-encoded)."""
    model = RiskModel.open(bundle, runtime=runtime)
    m = model.manifest
    window = m.window
    frames = _frames(int((window.seconds + window.spacing * (repeats + 3)) * FPS) + 2)
    ends = [window.seconds + k * window.spacing for k in range(repeats + 2)]
    cached, naive = WindowScorer(model, window, m.pixels), WindowScorer(model, window, m.pixels, cache=False)
    cached.score(frames, ends[0])
    cached_times, naive_times, encode, score = [], [], [], []
    for end in ends[1:]:
        start = time.perf_counter()
        result = cached.score(frames, end)
        cached_times.append(time.perf_counter() - start)
        encode.append(result.encode_ms)
        score.append(result.score_ms)
        start = time.perf_counter()
        naive.score(frames, end)
        naive_times.append(time.perf_counter() - start)
    return {"cached": statistics.median(cached_times), "naive": statistics.median(naive_times),
            "encode_ms": statistics.median(encode), "score_ms": statistics.median(score),
            "frames": window.num_frames, "prompt_tokens": model.prompt_length,
            "inference_precision": model.engine.inference_precision}
