"""Which frames of a window raised its risk, and where in the most telling one: by leaving them out.

A frame's share is the window's logit less its logit with that frame withheld, every position unchanged
(``RiskModel.window_logits`` with ``keep``): exact, not a gradient's estimate. In the streaming layout a frame
is a block no other block sees, so withholding it from the readout is the window without it; in the smolvlm
layout the head's attention mask withholds its image tokens from every later token, while its timestamp and
image markers stay. The map over the most telling frame withholds one cell at a time: where the frame has a
grid of image tokens (``TokenCells``, 8x8 at 512 px) the cell's tokens, at the price of one readout (or head
pass) per cell; where it has too few (``PixelCells``: the demo model's one token a frame) the cell's pixels,
replaced by the frame's mean colour and the frame encoded again. Calls go in chunks of ``CHUNK`` windows.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from crashwatch.contract.preprocess import PixelSpec, preprocess_frame
from crashwatch.contract.prompt import PromptLayout
from crashwatch.contract.risk import sigmoid
from crashwatch.monitor.engines.batching import rows_independent
from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.explain.regions import StaticMask, open_cells, summarise
from crashwatch.monitor.frame import Frame, small_jpeg

GRID = 8  # cells a side of the pixel map
MIN_TOKEN_SIDE = 4  # a frame with a token grid at least this wide is mapped by its tokens
CHUNK = 8  # windows a call: the memory of N copies of a window's state against the calls' overhead
JPEG_WIDTH, JPEG_QUALITY = 320, 75


def _chunked(model: RiskModel, count: int, call: Callable[[slice], np.ndarray]) -> np.ndarray:
    """``call`` over slices of ``count`` windows, as many a call as the model's graphs allow."""
    chunk = CHUNK if rows_independent(model.engine) else 1
    return np.concatenate([call(slice(start, min(start + chunk, count))) for start in range(0, count, chunk)])


class CellMethod(Protocol):
    """How a cell's information is withheld from a frame of the window."""

    name: str
    exactness: str  # what withholding means here, in words (docs/explanations.md)
    rows: int
    cols: int

    def logits(self, states: Sequence[np.ndarray], telling: int, frame: Frame,
               cells: Sequence[tuple[int, int]]) -> np.ndarray: ...


class TokenCells:
    """A cell is ``group`` x ``group`` of the frame's image tokens, withheld by ``keep`` (the connector lays them
    out row by row over the frame): one token a cell where windows can share a call, 2 x 2 where each needs a
    call of its own (onnxruntime's int8), which keeps the 256M's 8x8 grid to 16 readouts, within a second."""

    name = "tokens"

    def __init__(self, model: RiskModel, side: int) -> None:
        self.model, self.side = model, side
        self.group = 1 if rows_independent(model.engine) or side % 2 or side < 2 * MIN_TOKEN_SIDE else 2
        self.rows = self.cols = side // self.group
        tokens = "token" if self.group == 1 else f"{self.group}x{self.group} image tokens"
        self.exactness = (
            f"the cell's {tokens} withheld from the readout's attention at every layer, positions unchanged; "
            "the frame's later tokens keep what they took from it when the frame was encoded"
            if model.manifest.layout is PromptLayout.STREAMING else
            f"the cell's {tokens} withheld from every later token's attention, positions unchanged")

    def logits(self, states: Sequence[np.ndarray], telling: int, frame: Frame,
               cells: Sequence[tuple[int, int]]) -> np.ndarray:
        layout = self.model.layout
        keep = np.ones((len(cells), len(states), layout.positions), np.float32)
        g = self.group
        for n, (r, c) in enumerate(cells):
            tokens = [(r * g + i) * self.side + c * g + j for i in range(g) for j in range(g)]
            keep[n, telling, layout.image_positions[tokens]] = 0
        return _chunked(self.model, len(cells),
                        lambda part: self.model.window_logits([states] * len(keep[part]), keep[part]))


class PixelCells:
    """A cell is a square of the frame's pixels, replaced by the frame's mean colour; the frame is encoded
    again, the window's other frames stay as they were."""

    name = "pixels"
    exactness = "the cell's pixels replaced by the frame's mean colour and the frame encoded again"

    def __init__(self, model: RiskModel, pixels: PixelSpec, grid: int) -> None:
        self.model, self.pixels, self.rows, self.cols = model, pixels, grid, grid

    def logits(self, states: Sequence[np.ndarray], telling: int, frame: Frame,
               cells: Sequence[tuple[int, int]]) -> np.ndarray:
        image = preprocess_frame(frame.image, self.pixels)  # [3, S, S]
        size = image.shape[-1]
        fill = image.mean(axis=(1, 2), keepdims=True)
        occluded = np.repeat(image[None], len(cells), 0)
        for n, (r, c) in enumerate(cells):
            rows = slice(r * size // self.rows, (r + 1) * size // self.rows)
            cols = slice(c * size // self.cols, (c + 1) * size // self.cols)
            occluded[n, :, rows, cols] = fill

        def score(part: slice) -> np.ndarray:
            windows = []
            for state in self.model.encode_frames(occluded[part]):
                window = list(states)
                window[telling] = state
                windows.append(window)
            return self.model.window_logits(windows)

        return _chunked(self.model, len(cells), score)


class Explainer:
    """Explains windows of one camera: its model, its pixel spec and its static mask."""

    def __init__(self, model: RiskModel, pixels: PixelSpec, mask: StaticMask | None = None, grid: int = GRID) -> None:
        self.model = model
        self.mask = mask or StaticMask()
        tokens = model.manifest.tokens_per_frame
        side = math.isqrt(tokens)
        self.unavailable = None if model.manifest.withholds else (
            "this streaming bundle's readout cannot withhold frames (exported before 2026-12-06): export it again")
        self.cells: CellMethod = TokenCells(model, side) if side * side == tokens and side >= MIN_TOKEN_SIDE \
            else PixelCells(model, pixels, grid)
        self._open = open_cells(self.cells.rows, self.cells.cols, self.mask)

    def frame_shares(self, states: Sequence[np.ndarray]) -> tuple[float, np.ndarray]:
        """The window's logit and its logit with each frame withheld in turn ``[F]``."""
        count = len(states)
        keep = np.ones((count + 1, count, self.model.layout.positions), np.float32)
        for k in range(count):
            keep[k + 1, k] = 0
        logits = _chunked(self.model, count + 1,
                          lambda part: self.model.window_logits([states] * len(keep[part]), keep[part]))
        return float(logits[0]), logits[1:]

    def explain(self, frames: Sequence[Frame], states: Sequence[np.ndarray]) -> dict[str, Any]:
        """The ``Explanation`` fields of the window of ``frames`` (oldest first) whose encoded ``states`` the
        scorer used: logit, per-frame shares, the most telling frame, its region map and JPEG, compute_ms."""
        started = time.perf_counter()
        logit, without = self.frame_shares(states)
        shares = logit - without
        telling = int(np.argmax(shares))
        cells = [(r, c) for r in range(self.cells.rows) for c in range(self.cells.cols) if self._open[r, c]]
        values = np.full((self.cells.rows, self.cells.cols), np.nan)
        if cells:
            for (r, c), cell_logit in zip(cells, self.cells.logits(states, telling, frames[telling], cells)):
                values[r, c] = logit - float(cell_logit)
        encoded = small_jpeg(frames[telling].image, JPEG_WIDTH, JPEG_QUALITY)
        return {
            "logit": round(logit, 5), "probability": round(float(sigmoid(logit)), 5),
            "frames": [{"index": k, "frame_id": f.id, "t": round(f.t, 4), "logit_without": round(float(w), 5),
                        "share": round(float(s), 5)} for k, (f, w, s) in enumerate(zip(frames, without, shares))],
            "telling": telling,
            "region": {**summarise(values, self.cells.name, self.cells.exactness), "mask": self.mask.to_json()},
            "frame_jpeg": None if encoded is None else encoded[2],
            "compute_ms": round((time.perf_counter() - started) * 1000, 1),
        }
