"""A risk-over-time chart drawn with OpenCV (the runtime has no matplotlib): the probability per stride, the
alert threshold, alert episodes shaded, and the collision time marked."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

WHITE, GREY, BLUE, RED, ORANGE = (255, 255, 255), (170, 170, 170), (200, 90, 20), (40, 40, 220), (0, 140, 255)


def risk_chart(times: Sequence[float], probabilities: Sequence[float], threshold: float,
               alerts: Sequence[tuple[float, float]] = (), event_time: float | None = None,
               title: str = "", size: tuple[int, int] = (800, 300), t_end: float | None = None) -> np.ndarray:
    """An image (BGR) of the chart; ``alerts`` are (start, end) spans in the same seconds as ``times``."""
    width, height = size
    left, right, top, bottom = 50, 15, 30, 35
    image = np.full((height, width, 3), 255, np.uint8)
    t_max = max([t_end or 0.0, *(times or [1.0]), (event_time or 0.0) + 0.5, 1.0])
    x = lambda t: int(left + (width - left - right) * t / t_max)  # noqa: E731
    y = lambda p: int(top + (height - top - bottom) * (1.0 - p))  # noqa: E731
    for start, end in alerts:
        cv2.rectangle(image, (x(start), y(1.0)), (max(x(end), x(start) + 2), y(0.0)), (220, 230, 255), -1)
    for p in (0.0, 0.5, 1.0):
        cv2.line(image, (left, y(p)), (width - right, y(p)), (230, 230, 230), 1)
        cv2.putText(image, f"{p:.1f}", (8, y(p) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, GREY, 1, cv2.LINE_AA)
    step = max(1, int(t_max / 10))
    for t in range(0, int(t_max) + 1, step):
        cv2.putText(image, f"{t}s", (x(t) - 8, height - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, GREY, 1, cv2.LINE_AA)
    cv2.line(image, (left, y(threshold)), (width - right, y(threshold)), ORANGE, 1, cv2.LINE_AA)
    taken = []
    if event_time is not None:
        cv2.line(image, (x(event_time), y(1.0)), (x(event_time), y(0.0)), RED, 2)
        # Right of the line, or left of it where the text would run off the chart.
        text_width = _text_size("collision")[0]
        at = x(event_time) + 4 if x(event_time) + 4 + text_width <= width - 2 else x(event_time) - 4 - text_width
        taken.append(_label(image, "collision", at, y(1.0) + 12, RED))
    # Above the threshold's line at its left end, or below it where that would cover the collision's label.
    label = f"threshold {threshold:.2f}"
    box = _box(label, left + 4, y(threshold) - 5)
    if any(_overlap(box, other) for other in taken) or box[1] < 0:
        box = _box(label, left + 4, y(threshold) + 5 + _text_size(label)[1])
    _label(image, label, box[0], box[3], ORANGE)
    points = np.array([[x(t), y(p)] for t, p in zip(times, probabilities)], np.int32)
    if len(points) > 1:
        cv2.polylines(image, [points], False, BLUE, 2, cv2.LINE_AA)
    for point in points:
        cv2.circle(image, tuple(int(v) for v in point), 2, BLUE, -1)
    cv2.putText(image, title, (left, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (40, 40, 40), 1, cv2.LINE_AA)
    return image


FONT, SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.4


def _text_size(text: str) -> tuple[int, int]:
    (w, h), _ = cv2.getTextSize(text, FONT, SCALE, 1)
    return w, h


def _box(text: str, x: int, baseline: int) -> tuple[int, int, int, int]:
    """The box (x0, y0, x1, y1) ``text`` covers written at ``x`` on ``baseline``."""
    w, h = _text_size(text)
    return x, baseline - h, x + w, baseline


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _label(image: np.ndarray, text: str, x: int, baseline: int, color: tuple[int, int, int]) -> tuple[int, ...]:
    """Write ``text``, kept inside the image; returns the box it covers."""
    w, h = _text_size(text)
    x = min(max(x, 2), image.shape[1] - w - 2)
    cv2.putText(image, text, (x, baseline), FONT, SCALE, color, 1, cv2.LINE_AA)
    return _box(text, x, baseline)
