"""``crashwatch monitor`` as a library call: bind the publisher, watch with the model opened (a bundle's, or a
Triton server's) until the end or a signal, and say how it went."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.pipeline.camera import Monitor
from crashwatch.monitor.pipeline.options import MonitorOptions
from crashwatch.monitor.pipeline.source import SourceError
from crashwatch.monitor.serving.cameras import CamerasConfig
from crashwatch.monitor.serving.fleet import Fleet
from crashwatch.monitor.serving.signals import stop_on_signals
from crashwatch.monitor.transports.curve import ServerCurve
from crashwatch.monitor.transports.zeromq import Publisher, Sink


def run_monitor(model: RiskModel, options: MonitorOptions, endpoint: str, curve: ServerCurve | None = None,
                sinks: Sequence[Callable[[str], Sink]] = ()) -> dict[str, Any]:
    """Run one camera's monitor until its file ends or SIGINT/SIGTERM; returns ``Monitor.summary``. ``sinks``
    make the further transports for a camera name (MQTT). A source that could not be used at all raises
    ``SourceError``."""
    stop = stop_on_signals()
    monitor = Monitor(model, options, lambda status: Publisher(
        endpoint, options.camera, status=status, curve=curve, sinks=[make(options.camera) for make in sinks]),
        stop=stop)
    summary = monitor.run()
    if summary["source_state"] == "failed":
        raise SourceError(summary["source_error"] or f"{options.source.display}: the source failed")
    return summary


def run_fleet(model: RiskModel, config: CamerasConfig, demo_model: bool, curve: ServerCurve | None = None,
              sinks: Sequence[Callable[[str], Sink]] = ()) -> dict[str, dict[str, Any]]:
    """Run every camera of a cameras file on ``model`` and one publisher until all end or SIGINT/SIGTERM;
    returns each camera's summary by name."""
    stop = stop_on_signals()
    publisher = Publisher(config.pub, curve=curve)
    try:
        fleet = Fleet(model, config.options(demo_model), publisher,
                      lambda camera: [make(camera) for make in sinks], stop=stop)
        return fleet.run()
    finally:
        publisher.close()
