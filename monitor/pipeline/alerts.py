"""From a probability per stride to alerts: one dangerous episode is one alert.

Hysteresis keeps a probability hovering at the threshold from flapping: an alert starts when the probability
has stayed at or above ``on`` for ``min_on_seconds``, sends an ``update`` when its peak rises by
``update_step``, and ends once the probability has stayed below ``off`` (lower than ``on``) for
``min_off_seconds``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from crashwatch.monitor.messages import Alert, AlertEvent

# An alert ends below this fraction of its start unless told otherwise: room to end whatever the start (the
# rule it replaces, the lower of 0.1 below the start and 80 % of it, left none for a start of 0.1 or less).
OFF_FRACTION = 0.8


@dataclass(frozen=True)
class AlertPolicy:
    on: float
    off: float
    min_on_seconds: float = 0.0
    min_off_seconds: float = 1.0
    update_step: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 <= self.off <= self.on <= 1.0:
            raise ValueError(f"alert thresholds need 0 <= off ({self.off}) <= on ({self.on}) <= 1")
        if self.min_on_seconds < 0 or self.min_off_seconds < 0:
            raise ValueError("alert minimum durations must not be negative")

    @classmethod
    def around(cls, threshold: float, **overrides: Any) -> "AlertPolicy":
        """The default policy for a calibrated threshold: off at ``OFF_FRACTION`` of it."""
        off = overrides.pop("off", None)
        if off is None:
            off = threshold * OFF_FRACTION
        return cls(on=threshold, off=off, **overrides)


@dataclass
class AlertTracker:
    """Feed it ``(t, probability)`` per stride; it returns the alert messages to publish."""

    policy: AlertPolicy
    _count: int = 0
    _active: dict[str, Any] | None = None
    _above_since: float | None = None
    _below_since: float | None = None

    @property
    def active(self) -> bool:
        return self._active is not None

    @property
    def alert_id(self) -> int | None:
        """The open alert's number (None when none is open)."""
        return None if self._active is None else int(self._active["alert_id"])

    def update(self, t: float, probability: float) -> list[Alert]:
        p = self.policy
        if self._active is None:
            if probability < p.on:
                self._above_since = None
                return []
            if self._above_since is None:
                self._above_since = t
            if t - self._above_since < p.min_on_seconds:
                return []
            self._count += 1
            self._active = {"alert_id": self._count, "start": t, "peak": probability, "peak_at": t,
                            "reported_peak": probability}
            self._below_since = None
            return [self._alert(AlertEvent.START, t, probability)]
        alert = self._active
        events = []
        if probability > alert["peak"]:
            alert["peak"], alert["peak_at"] = probability, t
        if alert["peak"] >= alert["reported_peak"] + p.update_step:
            alert["reported_peak"] = alert["peak"]
            events.append(self._alert(AlertEvent.UPDATE, t, probability))
        if probability >= p.off:
            self._below_since = None
            return events
        if self._below_since is None:
            self._below_since = t
        if t - self._below_since >= p.min_off_seconds:
            events.append(self.finish(t, probability, reason="risk subsided"))
        return events

    def finish(self, t: float, probability: float | None = None, reason: str = "stream ended") -> Alert:
        """End the active alert (the caller checks ``active``)."""
        end = self._alert(AlertEvent.END, t, probability, reason)
        self._active = None
        self._above_since = None
        return end

    def _alert(self, event: AlertEvent, t: float, probability: float | None, reason: str | None = None) -> Alert:
        alert = self._active or {}
        return Alert(event=event, alert_id=alert["alert_id"], start=alert["start"], t=t, probability=probability,
                     peak=alert["peak"], peak_at=alert["peak_at"], threshold=self.policy.on,
                     duration=t - alert["start"] if event is AlertEvent.END else None, reason=reason)


def alert_starts(alerts: Sequence[Alert]) -> list[float]:
    """The start times of the episodes among ``alerts``."""
    return [a.start for a in alerts if a.event is AlertEvent.START]


def alert_spans(alerts: Sequence[Alert]) -> list[tuple[float, float]]:
    """(start, end) of each alert episode; one still open ends at infinity."""
    spans, opened = [], {}
    for a in alerts:
        if a.event is AlertEvent.START:
            opened[a.alert_id] = a.start
        elif a.event is AlertEvent.END:
            spans.append((opened.pop(a.alert_id, a.start), a.t))
    return spans + [(start, float("inf")) for start in opened.values()]
