"""A camera's controls, changed while it runs (Home Assistant's switches over MQTT, in Frigate's manner): its
alerts on or off, its alert threshold, its alert notifications suspended until a time.

One object per camera, shared by the loop that obeys it (``crashwatch.monitor.pipeline.camera``) and the
transport that sets it (``crashwatch.monitor.transports.mqtt``). Each change is checked (a bad value is refused
with the reason, nothing changes), saved atomically to a small JSON file so that a restart keeps it, and handed
to the listeners (the MQTT sink publishes the new state).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

MAX_SUSPEND_MIN = 24 * 60


@dataclass(frozen=True)
class ControlState:
    alerts: bool = True  # off: no alert starts (an open one ends), risk goes on being scored and published
    threshold: float | None = None  # the alert threshold set by the operator (None: the monitor's own)
    suspended_until: float = 0.0  # wall clock until which alert messages are not sent over MQTT (0: not)

    def suspended(self, now: float | None = None) -> bool:
        return self.suspended_until > (time.time() if now is None else now)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Controls:
    """A camera's controls, kept in ``path`` (None: not kept across restarts)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._state = self._load()
        self.listeners: list[Callable[[ControlState], None]] = []

    @property
    def state(self) -> ControlState:
        with self._lock:
            return self._state

    def set_alerts(self, payload: str) -> ControlState:
        """``ON`` or ``OFF`` (any case)."""
        word = payload.strip().upper()
        if word not in ("ON", "OFF"):
            raise ValueError(f"{payload!r}: send ON or OFF")
        return self._change(alerts=word == "ON")

    def set_threshold(self, payload: str) -> ControlState:
        """A probability above 0 and at most 1."""
        try:
            value = float(payload)
        except ValueError:
            raise ValueError(f"{payload!r}: send a probability, above 0 and at most 1") from None
        if not (math.isfinite(value) and 0.0 < value <= 1.0):
            raise ValueError(f"{payload!r}: the threshold must be above 0 and at most 1")
        return self._change(threshold=value)

    def suspend(self, payload: str) -> ControlState:
        """Minutes from now (0 resumes at once)."""
        try:
            minutes = float(payload)
        except ValueError:
            raise ValueError(f"{payload!r}: send the minutes to suspend for (0 resumes)") from None
        if not (math.isfinite(minutes) and 0 <= minutes <= MAX_SUSPEND_MIN):
            raise ValueError(f"{payload!r}: minutes from 0 to {MAX_SUSPEND_MIN}")
        return self._change(suspended_until=time.time() + minutes * 60 if minutes else 0.0)

    def _change(self, **changes: Any) -> ControlState:
        with self._lock:
            self._state = dataclasses.replace(self._state, **changes)
            state = self._state
            self._save(state)
        for listener in list(self.listeners):
            listener(state)
        return state

    def _load(self) -> ControlState:
        if self.path is None or not self.path.is_file():
            return ControlState()
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            state = ControlState(alerts=bool(data["alerts"]), threshold=data["threshold"],
                                 suspended_until=float(data["suspended_until"]))
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("%s: the saved controls cannot be read (%s); starting with the defaults", self.path, err)
            return ControlState()
        if state.threshold is not None and not 0.0 < float(state.threshold) <= 1.0:
            log.warning("%s: a saved threshold of %r is out of range; the monitor's own is used", self.path,
                        state.threshold)
            state = dataclasses.replace(state, threshold=None)
        return state

    def _save(self, state: ControlState) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp = self.path.with_name(f".{self.path.name}.tmp")
            temp.write_text(json.dumps(state.to_json()) + "\n", encoding="utf-8")
            os.replace(temp, self.path)
        except OSError as err:
            log.error("%s: the controls cannot be saved (%s); they hold until the monitor stops", self.path, err)
