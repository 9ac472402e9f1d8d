"""The probabilities of the last strides, so that an event's evidence carries its risk chart: from the window
that raised the alert, through the alert, to the end of its post-roll (``risks`` in its sidecar, ``[t,
probability]`` pairs in stream seconds)."""

from __future__ import annotations

import collections

from crashwatch.contract.window import EPSILON

KEPT_S = 60.0  # stream seconds of strides kept: more than any window


class RiskTrail:
    """The recent strides' ``(t, probability)``, oldest first."""

    def __init__(self) -> None:
        self._recent: collections.deque[tuple[float, float]] = collections.deque()

    def add(self, t: float, probability: float) -> None:
        self._recent.append((t, probability))
        while self._recent and self._recent[0][0] < t - KEPT_S:
            self._recent.popleft()

    def since(self, t: float) -> list[list[float]]:
        """Those at or after stream time ``t``, as the sidecar holds them."""
        return [[s, round(p, 6)] for s, p in self._recent if s >= t - EPSILON]
