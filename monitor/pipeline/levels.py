"""Graded warnings: each stride's probability -> a level, ``none``, ``caution`` or ``imminent``.

``imminent`` is an open alert (``alerts.AlertTracker``). ``caution`` is the grade below it, as in the
preliminary/collision split of GB/T 33577 and the in-cab units fleets ride with: the probability at or above a
lower threshold, or rising fast enough to reach the alert threshold within ``rise_seconds`` at its rate over the
last second (both chosen by ``crashwatch calibrate`` for a false-caution budget). A caution has its own
hysteresis: it starts once its condition has held ``min_on_seconds`` and ends once the probability has stayed
below ``off`` and stopped rising for ``min_off_seconds``. docs/alarm.md states the defaults and how they were
calibrated.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

from crashwatch.monitor.messages import Level, LevelChange
from crashwatch.monitor.pipeline.alerts import OFF_FRACTION

CAUTION_FRACTION = 0.6  # of the alert threshold, for a bundle whose calibration set no caution threshold
RISE_SECONDS = 0.0  # the rising rule's look-ahead for a bundle whose calibration chose none: off
RISES = (0.0, 0.5, 1.0)  # the look-aheads ``crashwatch calibrate`` tries
RISE_SPAN_S = 1.0  # the rate is the slope of the probabilities of the last this many seconds


@dataclass(frozen=True)
class CautionPolicy:
    on: float
    off: float
    rise_seconds: float = RISE_SECONDS  # 0: no caution for a rise alone
    min_on_seconds: float = 0.0
    min_off_seconds: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.off <= self.on <= 1.0:
            raise ValueError(f"caution thresholds need 0 <= off ({self.off}) <= on ({self.on}) <= 1")
        if self.rise_seconds < 0:
            raise ValueError("the caution's rise look-ahead must not be negative")

    @classmethod
    def around(cls, threshold: float, off: float | None = None, **overrides: Any) -> "CautionPolicy":
        """The default policy for a caution threshold: off at ``OFF_FRACTION`` of it, like an alert's."""
        return cls(on=threshold, off=threshold * OFF_FRACTION if off is None else off, **overrides)


class LevelTracker:
    """Feed it each stride (after the alert tracker); it returns the stride's level and, when the level changed,
    the ``LevelChange`` to publish."""

    def __init__(self, policy: CautionPolicy) -> None:
        self.policy = policy
        self.level = Level.NONE
        self._recent: collections.deque[tuple[float, float]] = collections.deque()
        self._caution_since: float | None = None  # the open caution's start
        self._on_since: float | None = None
        self._off_since: float | None = None

    @property
    def caution_since(self) -> float | None:
        """Stream seconds the open caution started at (None when there is none)."""
        return self._caution_since

    def update(self, t: float, probability: float, alert_on: float, alert_id: int | None,
               captured_at: float | None) -> tuple[Level, LevelChange | None]:
        """``alert_id``: the open alert's (None when no alert is open); ``alert_on``: the alert threshold in
        force (a caution threshold above it is taken at it)."""
        p = self.policy
        on, off = min(p.on, alert_on), min(p.off, alert_on)
        rate = self._rate(t, probability)
        rising = p.rise_seconds > 0 and rate > 0 and probability >= on / 2 and \
            probability + rate * p.rise_seconds >= alert_on
        if self._caution_since is None:
            if not (probability >= on or rising):
                self._on_since = None
            else:
                self._on_since = t if self._on_since is None else self._on_since
                if t - self._on_since >= p.min_on_seconds:
                    self._caution_since, self._off_since = t, None
        elif probability < off and not rising:
            self._off_since = t if self._off_since is None else self._off_since
            if t - self._off_since >= p.min_off_seconds:
                self._caution_since, self._on_since = None, None
        else:
            self._off_since = None
        level = Level.IMMINENT if alert_id is not None else Level.CAUTION if self._caution_since is not None \
            else Level.NONE
        why = self._why(level, probability, on, alert_on, rate, rising, alert_id)
        return level, self._change(level, t, probability, why, captured_at, on, alert_on, alert_id)

    def finish(self, t: float, alert_on: float, reason: str = "stream ended") -> LevelChange | None:
        """The stream ended: back to ``none`` (None when it already is)."""
        self._recent.clear()
        self._caution_since = self._on_since = self._off_since = None
        return self._change(Level.NONE, t, None, reason, None, min(self.policy.on, alert_on), alert_on, None)

    def _rate(self, t: float, probability: float) -> float:
        """The least-squares slope, per second, of the probabilities of the last ``RISE_SPAN_S`` (0 with fewer
        than two strides in it)."""
        self._recent.append((t, probability))
        while self._recent and self._recent[0][0] < t - RISE_SPAN_S - 1e-6:
            self._recent.popleft()
        n = len(self._recent)
        if n < 2:
            return 0.0
        mean_t = sum(t for t, _ in self._recent) / n
        mean_p = sum(p for _, p in self._recent) / n
        spread = sum((t - mean_t) ** 2 for t, _ in self._recent)
        return sum((t - mean_t) * (p - mean_p) for t, p in self._recent) / spread if spread > 0 else 0.0

    def _why(self, level: Level, probability: float, on: float, alert_on: float, rate: float, rising: bool,
             alert_id: int | None) -> str:
        if level is Level.IMMINENT:
            return f"alert {alert_id}: risk {probability:.2f} at or above the alert threshold {alert_on:.2f}"
        if level is Level.CAUTION:
            if probability >= on:
                return f"risk {probability:.2f} at or above the caution threshold {on:.2f}"
            if rising:
                return (f"risk {probability:.2f} rising {rate:.2f}/s: at the alert threshold {alert_on:.2f} within "
                        f"{self.policy.rise_seconds:g} s")
            return f"risk {probability:.2f}, not yet below {min(self.policy.off, alert_on):.2f} for long enough"
        return f"risk {probability:.2f} subsided"

    def _change(self, level: Level, t: float, probability: float | None, reason: str, captured_at: float | None,
                caution_on: float, alert_on: float, alert_id: int | None) -> LevelChange | None:
        if level is self.level:
            return None
        change = LevelChange(level=level, previous=self.level, t=t, probability=probability, reason=reason,
                             captured_at=captured_at, caution_threshold=caution_on, alert_threshold=alert_on,
                             alert_id=alert_id)
        self.level = level
        return change
