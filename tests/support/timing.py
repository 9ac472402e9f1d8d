"""Bounds a test puts on wall-clock time, scaled in one place.

A test that asserts how long something may take (a product promise: a monitor stops within a second, an alert
reaches the page within one) carries the ``timed`` marker and writes its bound as ``within(seconds)``.
``CRASHWATCH_TEST_TIME_SCALE`` (default 1) multiplies every such bound, for a slow or loaded machine;
``pytest -m "not timed"`` leaves them out.
"""

from __future__ import annotations

import os

SCALE = float(os.environ.get("CRASHWATCH_TEST_TIME_SCALE", "1"))


def within(seconds: float) -> float:
    """A wall-clock bound of ``seconds`` on this machine."""
    return seconds * SCALE
