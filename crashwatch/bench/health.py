"""Camera-health measurement (``crashwatch bench --camera-health CLIPS``): every clip replayed as a stream
(looped to ``LENGTH_S``) through ``CameraHealth``, sound and with each fault injected from ``FAULT_START_S`` to
``FAULT_END_S``: how long each fault took to be reported and to clear, and anything reported that should not
have been. Frames are fed at the clip's own timestamps; no model runs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from crashwatch.contract.video import probe_clip, read_frames
from crashwatch.monitor.pipeline.health import RATE_HZ, CameraHealth

LENGTH_S = 16.0
FAULT_START_S, FAULT_END_S = 7.0, 11.0


def _cover(image: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    covered = image.copy()
    covered[rows, cols] = (38, 42, 40)  # a dull, even patch: a hand, a sticker, mud
    return covered


def _rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, turn, (w, h), borderMode=cv2.BORDER_REFLECT)


# fault -> (what it does to a frame, given the frame at the fault's start; the check that must report it)
FAULTS: dict[str, tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], str]] = {
    "black frames": (lambda image, first: np.zeros_like(image), "black"),
    "frozen": (lambda image, first: first, "frozen"),
    "half covered": (lambda image, first: _cover(image, slice(None), slice(0, image.shape[1] // 2)), "obstructed"),
    "two thirds covered": (lambda image, first: _cover(image, slice(image.shape[0] // 3, None), slice(None)),
                           "obstructed"),
    "Gaussian blur": (lambda image, first: cv2.GaussianBlur(image, (0, 0), image.shape[1] / 160), "blurred"),
    "+3 stops": (lambda image, first: np.clip(image.astype(np.float32) * 8, 0, 255).astype(np.uint8), "blinded"),
    "15 degree rotation": (lambda image, first: _rotate(image, 15.0), "tilted"),
}


@dataclass
class Run:
    clip: str
    fault: str | None
    onset_s: float | None = None  # from the fault's start to its report (None: never reported)
    clear_s: float | None = None  # from the fault's end to the report clearing (None: never cleared)
    others: tuple[str, ...] = ()  # checks reported that the fault does not explain
    ms_per_frame: float = 0.0


def replay(clip: Path, frames: list[np.ndarray], fps: float, fault: str | None, length_s: float = LENGTH_S) -> Run:
    """A clip's frames as a stream (looped to ``length_s``) through a fresh ``CameraHealth``, with ``fault`` (a
    key of ``FAULTS``) or sound."""
    expected = FAULTS[fault][1] if fault else None
    health, run = CameraHealth(), Run(clip.name, fault)
    others: set[str] = set()
    first: np.ndarray | None = None
    spent, checked = 0.0, 0
    for k in range(int(length_s * fps)):
        t = k / fps
        image = frames[k % len(frames)]
        if fault and FAULT_START_S <= t < FAULT_END_S:
            first = image if first is None else first
            image = FAULTS[fault][0](image, first)
        began = time.perf_counter()
        health.feed(t, image)
        spent, checked = spent + time.perf_counter() - began, checked + 1
        for name in health.active:
            if name != expected or not FAULT_START_S <= health.active[name] < FAULT_END_S + 0.5:
                others.add(name)
        if expected in health.active and run.onset_s is None and t >= FAULT_START_S:
            run.onset_s = round(t - FAULT_START_S, 2)
        if expected and run.onset_s is not None and run.clear_s is None and t >= FAULT_END_S and \
                expected not in health.active:
            run.clear_s = round(t - FAULT_END_S, 2)
    run.others = tuple(sorted(others))
    run.ms_per_frame = round(spent / checked * 1000, 3)
    return run


def measure(clips: list[Path], faults: tuple[str, ...] = tuple(FAULTS), looped: bool = True) -> list[Run]:
    """Every clip sound, then with each fault; each looped to ``LENGTH_S``, or (``looped`` false, sound only)
    once through."""
    runs = []
    for clip in clips:
        info = probe_clip(clip)
        frames = read_frames(clip, list(range(info.num_frames)))
        length = LENGTH_S if looped else len(frames) / info.fps
        runs += [replay(clip, frames, info.fps, fault, length) for fault in (None, *faults)]
    return runs


def table(runs: list[Run], cpu: str) -> str:
    """The measurement as a Markdown table: per fault, how many clips reported it within 2 s and cleared it
    within 2 s, the delays, and reports the fault does not explain; the sound clips; the cost per frame."""
    lines = [f"Camera health on {len({r.clip for r in runs})} clips, each looped to {LENGTH_S:.0f} s, faults from "
             f"{FAULT_START_S:.0f} s to {FAULT_END_S:.0f} s ({cpu}).", "",
             "| fault | check | reported within 2 s | onset median / max (s) | cleared within 2 s | "
             "clear median / max (s) | other checks reported |", "| --- | --- | --- | --- | --- | --- | --- |"]

    def spread(values: list[float | None]) -> str:
        known = [v for v in values if v is not None]
        return f"{np.median(known):.1f} / {max(known):.1f}" if known else "n/a"

    sound = [r for r in runs if r.fault is None]
    lines.append(f"| none (sound) | | | | | | {sum(bool(r.others) for r in sound)} of {len(sound)} clips"
                 + "".join(f"; {r.clip}: {', '.join(r.others)}" for r in sound if r.others) + " |")
    for fault, (_, check) in FAULTS.items():
        mine = [r for r in runs if r.fault == fault]
        within = sum(r.onset_s is not None and r.onset_s <= 2 for r in mine)
        cleared = sum(r.clear_s is not None and r.clear_s <= 2 for r in mine)
        lines.append(f"| {fault} | {check} | {within} of {len(mine)} | {spread([r.onset_s for r in mine])} | "
                     f"{cleared} of {len(mine)} | {spread([r.clear_s for r in mine])} | "
                     f"{sum(bool(r.others) for r in mine)} of {len(mine)} clips |")
    costs = [r.ms_per_frame for r in runs]
    lines += ["", f"Cost: {np.median(costs):.1f} ms per frame checked (median over runs, max {max(costs):.1f}), at "
                  f"most {RATE_HZ:.0f} frames a second: {np.median(costs) * RATE_HZ / 10:.1f} % of one core per camera."]
    return "\n".join(lines) + "\n"
