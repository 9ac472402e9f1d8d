"""A map of cells over a frame: which cells a camera's static mask leaves out, and the map's peak and box.

A cell's value is the drop of the window's logit when the cell's information is withheld: positive where the
cell raised the risk, negative where it held it down. Where the evidence lies is where the logit depends most
on the frame, whichever way: the peak is the cell of the largest change in size, and the box the bounding box
of the cells changing it at least half as much, of the same sign and connected to the peak (4-neighbours). No
box is given, with a note saying why, when no cell moves the logit by ``MIN_EFFECT`` or when that region covers
more than ``SPREAD`` of the cells looked at (the evidence is spread out, not in one place).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

MIN_EFFECT = 0.05  # logit: a region that moves it less is not said to matter
STRONG = 0.5  # of the peak's value: the cells that make its region
SPREAD = 0.5  # of the cells looked at: a region larger than this is no place


@dataclass(frozen=True)
class StaticMask:
    """Polygons over the frame (relative coordinates, 0 to 1, x to the right and y down) whose regions an
    explanation leaves out: the bonnet, a logo, a timestamp overlay. Written as Frigate writes its masks,
    ``x1,y1,x2,y2,...`` with at least three points; several polygons in one text are separated by ``;``."""

    polygons: tuple[tuple[tuple[float, float], ...], ...] = ()

    @classmethod
    def parse(cls, value: "str | Sequence[str] | StaticMask") -> "StaticMask":
        """Polygons from a text (``;`` between them) or a list of texts; ValueError naming the one at fault."""
        if isinstance(value, StaticMask):
            return value
        texts = value.split(";") if isinstance(value, str) else list(value)
        polygons = []
        for text in texts:
            if not isinstance(text, str):
                raise ValueError(f"{text!r}: a polygon is written x1,y1,x2,y2,... (relative to the frame)")
            try:
                values = [float(v) for v in re.split(r"[,\s]+", text.strip()) if v]
            except ValueError:
                raise ValueError(f"{text!r}: not a list of numbers x1,y1,x2,y2,...") from None
            if len(values) < 6 or len(values) % 2:
                raise ValueError(f"{text!r}: a polygon needs at least three x,y points, given in pairs")
            if any(not 0.0 <= v <= 1.0 for v in values):
                raise ValueError(f"{text!r}: points are relative to the frame, each from 0 to 1")
            polygons.append(tuple(zip(values[::2], values[1::2])))
        return cls(tuple(polygons))

    def covers(self, x: float, y: float) -> bool:
        """Whether the point (relative) lies inside or on any polygon."""
        return any(cv2.pointPolygonTest(np.asarray(p, np.float32), (float(x), float(y)), False) >= 0
                   for p in self.polygons)

    def to_json(self) -> list[list[float]]:
        return [[round(v, 4) for point in p for v in point] for p in self.polygons]


def open_cells(rows: int, cols: int, mask: StaticMask) -> np.ndarray:
    """``[rows, cols]`` booleans: the cells whose centre the mask leaves open."""
    return np.array([[not mask.covers((c + 0.5) / cols, (r + 0.5) / rows) for c in range(cols)] for r in range(rows)])


def summarise(values: np.ndarray, method: str, exactness: str) -> dict[str, Any]:
    """The ``region`` of an ``Explanation``: ``values`` ``[rows, cols]`` (NaN where masked) with its peak, box
    and note."""
    rows, cols = values.shape
    looked = ~np.isnan(values)
    cells = [[None if np.isnan(v) else round(float(v), 4) for v in row] for row in values]
    region: dict[str, Any] = {"method": method, "exactness": exactness, "rows": rows, "cols": cols, "cells": cells,
                              "peak": None, "box": None, "note": None}
    if not looked.any():
        region["note"] = "the static mask covers every cell"
        return region
    sizes = np.where(looked, np.abs(values), -np.inf)
    peak = np.unravel_index(int(np.argmax(sizes)), values.shape)
    top, sign = float(sizes[peak]), np.sign(values[peak])
    region["peak"] = [int(peak[0]), int(peak[1])]
    if top < MIN_EFFECT:
        region["note"] = f"no region of this frame changes the logit by {MIN_EFFECT} or more when withheld"
        return region
    strong = (looked & (np.nan_to_num(values * sign) >= STRONG * top)).astype(np.uint8)
    _, labels = cv2.connectedComponents(strong, connectivity=4)
    where = np.argwhere(labels == labels[peak])
    if len(where) > SPREAD * looked.sum():
        region["note"] = (f"the evidence is spread out: {len(where)} of {int(looked.sum())} cells change the logit "
                          f"at least {STRONG:.0%} as much as the peak")
        return region
    (r0, c0), (r1, c1) = (int(v) for v in where.min(0)), (int(v) for v in where.max(0))
    region["box"] = [round(c0 / cols, 4), round(r0 / rows, 4), round((c1 + 1) / cols, 4), round((r1 + 1) / rows, 4)]
    return region


def peak_point(region: dict[str, Any]) -> tuple[float, float] | None:
    """The centre of the region's peak cell, relative to the frame (None without a peak)."""
    if region.get("peak") is None:
        return None
    r, c = region["peak"]
    return (c + 0.5) / region["cols"], (r + 0.5) / region["rows"]
