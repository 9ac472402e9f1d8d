"""Explanations off the scoring path: a thread of their own, one at a time, one more waiting at most.

The loop hands over an alert's start (or update) after publishing it, with the window's frames and encoded
states (already computed: nothing is encoded again but what a pixel map occludes). A request that finds one
explanation running and one waiting is not queued: an ``Explanation`` with state ``skipped`` says so at once,
so a reader never waits for one that will not come. A model call that fails gives state ``failed``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from crashwatch.contract.errors import CrashwatchError
from crashwatch.monitor.engines.local import EngineError
from crashwatch.monitor.explain.explainer import Explainer
from crashwatch.monitor.frame import Frame
from crashwatch.monitor.messages import Alert, Explanation

log = logging.getLogger(__name__)

WAITING = 1  # requests that may wait behind the running one


@dataclass(frozen=True)
class Request:
    alert: Alert
    frames: tuple[Frame, ...]
    states: tuple[np.ndarray, ...]
    published_at: float  # monotonic clock of the alert's publication


class ExplainWorker:
    """Runs ``explainer`` on requests and hands each ``Explanation`` to ``deliver`` (from its own thread)."""

    def __init__(self, explainer: Explainer, deliver: Callable[[Explanation], None], name: str = "explain") -> None:
        self.explainer = explainer
        self.deliver = deliver
        self.done = 0
        self.skipped = 0
        self.failed = 0
        self._queue: queue.Queue[Request | None] = queue.Queue(maxsize=WAITING)
        self._running: int | None = None  # the alert being explained
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, alert: Alert, frames: Sequence[Frame], states: Sequence[np.ndarray]) -> None:
        """Explain ``alert`` (just published) from its window; never waits."""
        request = Request(alert, tuple(frames), tuple(states), time.monotonic())
        if self.explainer.unavailable is not None:
            self._send(request, "skipped", self.explainer.unavailable)
            return
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            self.skipped += 1
            self._send(request, "skipped", f"the explainer was still busy with alert {self._running}'s explanation "
                       "and one more: this machine cannot keep up with the alerts")

    def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued (within ``timeout``), then stop."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)

    def stats(self) -> dict[str, int]:
        return {"done": self.done, "skipped": self.skipped, "failed": self.failed}

    def _run(self) -> None:
        while (request := self._queue.get()) is not None:
            self._running = request.alert.alert_id
            try:
                fields = self.explainer.explain(request.frames, request.states)
            except (EngineError, CrashwatchError, ValueError) as err:
                self.failed += 1
                log.error("alert %d: explanation failed: %s", request.alert.alert_id, err)
                self._send(request, "failed", str(err))
            else:
                self.done += 1
                self._send(request, "ready", None, fields)
            finally:
                self._running = None

    def _send(self, request: Request, state: str, reason: str | None, fields: dict | None = None) -> None:
        alert = request.alert
        message = Explanation(alert_id=alert.alert_id, event=alert.event.value, t=alert.t, state=state, reason=reason,
                              **(fields or {}),
                              ready_after_ms=round((time.monotonic() - request.published_at) * 1000, 1))
        self.deliver(message)
