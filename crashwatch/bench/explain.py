"""How long an alert's explanation takes (``crashwatch bench --explain``): per bundle, on a real window, the
per-frame shares and the map timed apart, alone and while a second thread scores windows of the same clip
as the monitor's loop does meanwhile (the explanation's own thread competes with it on a small CPU). The
target is an explanation within a second of the alert."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from crashwatch.contract.preprocess import preprocess_frame
from crashwatch.contract.video import probe_clip
from crashwatch.evaluation.explained import clip_window
from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.explain.explainer import Explainer


def measure(name: str, bundle: Path, clip: Path, at: float | None, repeats: int = 5) -> dict[str, Any]:
    """Median and worst milliseconds of ``repeats`` explanations of the window of ``clip`` ending at ``at``
    (its end where None), alone and beside a scoring loop, with how many strides that loop ran meanwhile."""
    model = RiskModel.open(bundle, runtime="auto")
    m = model.manifest
    info = probe_clip(clip)
    frames, states = clip_window(model, clip, info, min(info.duration, at) if at is not None else info.duration)
    explainer = Explainer(model, m.pixels)
    explainer.explain(frames, states)  # the first calls of a batch size are slower than the rest

    def timed() -> list[float]:
        return [explainer.explain(frames, states)["compute_ms"] for _ in range(repeats)]

    alone = timed()
    stop, strides = threading.Event(), [0]

    def scoring() -> None:  # the monitor's loop: the head over the cached window, plus a frame's encoding
        pixels = preprocess_frame(frames[-1].image, m.pixels)[None]
        while not stop.is_set():
            model.encode_frames(pixels)
            model.window_logit(states)
            strides[0] += 1

    loop = threading.Thread(target=scoring, daemon=True)
    loop.start()
    started = time.perf_counter()
    beside = timed()
    seconds = time.perf_counter() - started
    stop.set()
    loop.join()
    shares_ms = float(np.median([_ms(lambda: explainer.frame_shares(states)) for _ in range(repeats)]))
    return {"name": name, "layout": m.layout.value, "precision": m.precision, "image_size": m.pixels.image_size,
            "frames": m.window.num_frames, "method": explainer.cells.name,
            "cells": explainer.cells.rows * explainer.cells.cols, "runtime": model.engine.runtime.value,
            "shares_ms": round(shares_ms, 1), "median_ms": round(float(np.median(alone)), 1),
            "max_ms": round(max(alone), 1), "beside_median_ms": round(float(np.median(beside)), 1),
            "beside_max_ms": round(max(beside), 1), "strides_per_s_beside": round(strides[0] / seconds, 2)}


def _ms(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def table(rows: list[dict[str, Any]], machine: str, clip: Path) -> str:
    lines = [f"Explanation time (`crashwatch bench --explain`), {machine}; window of `{clip.name}`; median and "
             "worst of 5, alone and beside a thread scoring windows as the monitor's loop does.", "",
             "| bundle | layout | precision | px | frames | map | cells | runtime | shares ms | explanation ms "
             "(max) | beside scoring ms (max) | strides/s meanwhile |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['layout']} | {r['precision']} | {r['image_size']} | {r['frames']} | "
                     f"{r['method']} | {r['cells']} | {r['runtime']} | {r['shares_ms']} | {r['median_ms']} "
                     f"({r['max_ms']}) | {r['beside_median_ms']} ({r['beside_max_ms']}) | {r['strides_per_s_beside']} |")
    return "\n".join(lines) + "\n"
