"""``crashwatch monitor`` as a library call: cameras on one model and one publisher, watched until their files
end or a signal, and how it went. One camera is a fleet of one."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.pipeline.options import MonitorOptions
from crashwatch.monitor.pipeline.source import SourceError
from crashwatch.monitor.serving.fleet import Fleet
from crashwatch.monitor.serving.signals import stop_on_signals
from crashwatch.monitor.serving.systemd import Notifier, Watchdog
from crashwatch.monitor.transports.curve import ServerCurve
from crashwatch.monitor.transports.metrics import Metrics
from crashwatch.monitor.transports.zeromq import Publisher, Sink


def run_cameras(model: RiskModel, cameras: Sequence[MonitorOptions], endpoint: str, curve: ServerCurve | None = None,
                sinks: Sequence[Callable[[str], Sink]] = (), metrics: Metrics | None = None) -> dict[str, dict[str, Any]]:
    """Run every camera on ``model``, publishing on ``endpoint``, until all end or SIGINT/SIGTERM; returns each
    camera's ``Monitor.summary`` by name. Under systemd (``$NOTIFY_SOCKET``) it says when it is ready and feeds
    the watchdog while the cameras make progress. ``sinks`` make the further transports for a camera name (MQTT);
    ``metrics`` (served by the caller) is fed every camera's messages and the process's batches. When no camera
    could use its source at all, ``SourceError`` says why."""
    stop = stop_on_signals()
    makers = [*sinks, metrics.sink] if metrics is not None else list(sinks)
    publisher = Publisher(endpoint, curve=curve)
    try:
        fleet = Fleet(model, cameras, publisher, lambda camera: [make(camera) for make in makers], stop=stop)
        if metrics is not None:
            metrics.watch_process(fleet.process_status)
        notifier = Notifier()
        watchdog = Watchdog(notifier, fleet.monitors, fleet.stop) if notifier.active else None
        if watchdog is not None:
            watchdog.start()
        summaries = fleet.run()
        if watchdog is not None:
            watchdog.join(timeout=2.0)  # it says STOPPING=1
    finally:
        publisher.close()
    if all(summary["source_state"] == "failed" for summary in summaries.values()):
        raise SourceError("; ".join(summary["source_error"] or "the source failed" for summary in summaries.values()))
    return summaries
