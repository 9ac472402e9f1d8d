"""The risk chart's labels stay whole and apart: the collision's label is never cut at the chart's edge, and the
threshold's never covers it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from crashwatch.evaluation.plot import ORANGE, RED, risk_chart


def _pixels(image: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    """(row, column) of the pixels near ``color``."""
    return np.argwhere(np.abs(image.astype(int) - np.array(color)).sum(axis=2) < 90)


@pytest.mark.parametrize("event_time,t_end", [(71.5, 72.0), (71.5, 71.5), (30.0, 72.0), (0.2, 72.0), (2.8, 3.3)])
@pytest.mark.parametrize("threshold", [0.94, 0.5, 0.02])
def test_the_collision_label_is_whole_and_the_threshold_label_apart_from_it(event_time, t_end, threshold):
    times = list(np.arange(0, event_time, 0.5))
    image = risk_chart(times, [0.1] * len(times), threshold, [], event_time, "drive", size=(800, 300), t_end=t_end)
    width = image.shape[1]
    red = _pixels(image, RED)
    line = np.bincount(red[:, 1]).argmax()  # the collision's vertical line
    text = red[np.abs(red[:, 1] - line) > 2]
    assert len(text) > 20, "the collision's label is missing"
    top, bottom, first, last = text[:, 0].min(), text[:, 0].max(), text[:, 1].min(), text[:, 1].max()
    (whole, _), _ = cv2.getTextSize("collision", cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    assert first >= 1 and last <= width - 2 and last - first >= whole - 4, "the collision's label is cut"
    orange = _pixels(image, ORANGE)
    threshold_row = np.bincount(orange[:, 0]).argmax()
    label = orange[np.abs(orange[:, 0] - threshold_row) > 1]
    assert len(label) > 20, "the threshold's label is missing"
    inside = (label[:, 0] >= top) & (label[:, 0] <= bottom) & (label[:, 1] >= first) & (label[:, 1] <= last)
    assert not inside.any(), "the threshold's label covers the collision's"
