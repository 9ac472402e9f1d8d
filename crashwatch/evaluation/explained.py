"""Explanations drawn for people: the most telling frame under its heat map and box, each frame's share as a
bar (with the window's frames above the bars where they are at hand). ``crashwatch explain`` writes it as a
PNG, the demo's annotated video shows it beside the alert."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from crashwatch.contract.preprocess import preprocess_frame
from crashwatch.contract.video import ClipInfo, VideoError, probe_clip, read_frames
from crashwatch.contract.window import EPSILON, pick_frames
from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.explain.explainer import Explainer
from crashwatch.monitor.explain.regions import StaticMask
from crashwatch.monitor.frame import Frame
from crashwatch.monitor.messages import Explanation

RED, BLUE, GREEN, WHITE, GREY = (40, 40, 230), (230, 120, 40), (60, 200, 60), (255, 255, 255), (150, 150, 150)


def decode_jpeg(text: str | None) -> np.ndarray | None:
    """An explanation's ``frame_jpeg`` as a BGR image (None if it has none)."""
    if not text:
        return None
    return cv2.imdecode(np.frombuffer(base64.b64decode(text), np.uint8), cv2.IMREAD_COLOR)


def heat_map(frame: np.ndarray, region: dict[str, Any]) -> np.ndarray:
    """``frame`` with each cell tinted by how much withholding it changes the logit: red where it raised the
    risk, blue where it held it down, stronger for more; masked cells greyed, the peak cell outlined and the
    region's box drawn."""
    height, width = frame.shape[:2]
    cells = np.array([[np.nan if v is None else v for v in row] for row in region["cells"]], np.float32)
    rows, cols = cells.shape
    largest = float(np.nanmax(np.abs(cells))) if np.isfinite(cells).any() else 0.0
    scale = np.nan_to_num(cells, nan=0.0) / largest if largest > 0 else np.zeros_like(cells)
    colours = np.where(scale[..., None] >= 0, np.array(RED, np.float32), np.array(BLUE, np.float32))
    overlay = cv2.resize(colours, (width, height), interpolation=cv2.INTER_NEAREST)
    weight = cv2.resize(np.abs(scale) * 0.75, (width, height), interpolation=cv2.INTER_NEAREST)[..., None]
    image = (frame * (1 - weight) + overlay * weight).astype(np.uint8)
    for r, c in np.argwhere(np.isnan(cells)):
        x0, y0, x1, y1 = c * width // cols, r * height // rows, (c + 1) * width // cols, (r + 1) * height // rows
        image[y0:y1, x0:x1] = (image[y0:y1, x0:x1] * 0.4 + np.array(GREY) * 0.6).astype(np.uint8)
    if region.get("peak") is not None:
        r, c = region["peak"]
        cv2.rectangle(image, (c * width // cols, r * height // rows),
                      ((c + 1) * width // cols - 1, (r + 1) * height // rows - 1), WHITE, 1)
    if region.get("box") is not None:
        x0, y0, x1, y1 = region["box"]
        cv2.rectangle(image, (int(x0 * width), int(y0 * height)), (int(x1 * width) - 1, int(y1 * height) - 1), GREEN, 2)
    return image


def explanation_card(explanation: Explanation, width: int = 480,
                     frames: Sequence[np.ndarray] | None = None) -> np.ndarray | None:
    """The card of a ready explanation (None for a skipped or failed one): the heat-mapped most telling frame,
    then the window's frames (where given) over their shares of the logit, the telling one marked."""
    e = explanation
    if e.state != "ready" or e.frames is None or e.telling is None or e.region is None:
        return None
    telling = frames[e.telling] if frames is not None else decode_jpeg(e.frame_jpeg)
    if telling is None:
        return None
    height = int(telling.shape[0] * width / telling.shape[1])
    top = heat_map(cv2.resize(telling, (width, height), interpolation=cv2.INTER_AREA), e.region)
    note = f"box {e.region['box']}" if e.region.get("box") else (e.region.get("note") or "")
    title = f"t = {e.t:.2f} s" if e.event == "moment" else f"alert {e.alert_id} {e.event}"
    cv2.putText(top, f"{title}: risk {e.probability:.2f}", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, WHITE, 2,
                cv2.LINE_AA)
    count = len(e.frames)
    slot = width // count
    strip = np.zeros((0, width, 3), np.uint8)
    if frames is not None:
        thumb_h = int(slot * telling.shape[0] / telling.shape[1])
        strip = np.zeros((thumb_h, width, 3), np.uint8)
        for k, image in enumerate(frames):
            strip[:, k * slot:k * slot + slot - 2] = cv2.resize(image, (slot - 2, thumb_h), interpolation=cv2.INTER_AREA)
    bars = np.full((110, width, 3), 30, np.uint8)
    largest = max(abs(f["share"]) for f in e.frames) or 1.0
    base = 70
    for k, f in enumerate(e.frames):
        length = int(abs(f["share"]) / largest * 55)
        x0, x1 = k * slot + 6, (k + 1) * slot - 8
        colour = RED if k == e.telling else (GREY if f["share"] >= 0 else GREEN)
        cv2.rectangle(bars, (x0, base - length if f["share"] >= 0 else base), (x1, base if f["share"] >= 0 else
                                                                               base + length), colour, -1)
        cv2.putText(bars, f"{f['t']:.1f}s {f['share']:+.2f}", (x0, 100), cv2.FONT_HERSHEY_SIMPLEX, 0.35, WHITE, 1,
                    cv2.LINE_AA)
    cv2.line(bars, (0, base), (width - 1, base), GREY, 1)
    cv2.putText(bars, f"each frame's share of the logit; {note}"[:80], (6, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                WHITE, 1, cv2.LINE_AA)
    return np.vstack([top, strip, bars])


def clip_window(model: RiskModel, clip: Path, info: ClipInfo, end: float) -> tuple[list[Frame], list[np.ndarray]]:
    """The frames of ``clip`` (``info``: its probe) that make the window ending at stream time ``end``, oldest
    first, and what ``model`` encodes each to: one frame a call, as the monitor's scorer encodes them (an int8
    graph's scales depend on the call's frames)."""
    indices = pick_frames(info.timestamps(), end, model.manifest.window)
    frames = [Frame(i, i / info.fps, 0.0, image) for i, image in zip(indices, read_frames(clip, indices))]
    states = [model.encode_frames(preprocess_frame(f.image, model.manifest.pixels)[None])[0] for f in frames]
    return frames, states


def explain_moment(model: RiskModel, clip: Path, at: float, mask: StaticMask | None = None
                   ) -> tuple[Explanation, list[np.ndarray]]:
    """The explanation of the window of ``clip`` ending at stream time ``at`` (seconds from its start), as the
    monitor would send it for an alert there, and the window's frames (BGR, oldest first)."""
    info = probe_clip(clip)
    if not 0 <= at <= info.duration + EPSILON:
        raise VideoError(f"{clip}: --at {at:g} s lies outside the video (0 to {info.duration:.2f} s)")
    frames, states = clip_window(model, clip, info, at)
    fields = Explainer(model, model.manifest.pixels, mask).explain(frames, states)
    return Explanation(alert_id=0, event="moment", t=at, state="ready", **fields), [f.image for f in frames]
