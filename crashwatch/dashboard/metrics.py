"""The dashboard's Prometheus metrics (``crashwatch dashboard --metrics HOST:PORT``): per endpoint whether it
was heard; per camera whether it is silent, the messages received and lost on the way by topic, and the alerts
heard; the pages open. A scrape reads them on the event loop, which alone changes the state, so it sees one
moment of it (the monitors' own figures are their ``--metrics``)."""

from __future__ import annotations

import asyncio
from typing import Any, Collection, Iterator, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crashwatch.dashboard.state import DashboardState

SCRAPE_TIMEOUT_S = 2.0
PREFIX = "crashwatch_dashboard"


class Served(Protocol):
    """What the collector reads of the server's hub."""

    loop: asyncio.AbstractEventLoop | None
    state: DashboardState
    pages: Collection[Any]


class DashboardCollector(Collector):
    def __init__(self, hub: Served) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        loop = self.hub.loop
        if loop is None:  # not serving yet
            return
        figures = asyncio.run_coroutine_threadsafe(_read(self.hub), loop).result(timeout=SCRAPE_TIMEOUT_S)
        heard = GaugeMetricFamily(f"{PREFIX}_endpoint_heard", "1 once anything came from the endpoint.",
                                  labels=["endpoint"])
        for endpoint, was_heard in figures["endpoints"].items():
            heard.add_metric([endpoint], was_heard)
        silent = GaugeMetricFamily(f"{PREFIX}_camera_silent", "1 while nothing comes from the camera (2 s).",
                                   labels=["camera"])
        alerts = CounterMetricFamily(f"{PREFIX}_alerts", "Alert episodes heard.", labels=["camera"])
        received = CounterMetricFamily(f"{PREFIX}_messages_received", "Messages heard.", labels=["camera", "topic"])
        missed = CounterMetricFamily(f"{PREFIX}_messages_missed", "Messages lost on the way (seq gaps).",
                                     labels=["camera", "topic"])
        for camera in figures["cameras"]:
            silent.add_metric([camera["id"]], camera["silent"])
            alerts.add_metric([camera["id"]], camera["alerts"])
            for topic, count in camera["received"].items():
                received.add_metric([camera["id"], topic], count)
            for topic, count in camera["missed"].items():
                missed.add_metric([camera["id"], topic], count)
        pages = GaugeMetricFamily(f"{PREFIX}_pages", "Pages connected (websockets).", value=figures["pages"])
        yield from (heard, silent, alerts, received, missed, pages)


async def _read(hub: Served) -> dict[str, Any]:
    state = hub.state
    return {"endpoints": {e: bool(info["heard"]) for e, info in state.endpoints.items()},
            "cameras": [{"id": c.id, "silent": c.silent, "alerts": c.alerts, "received": dict(c.received),
                         "missed": dict(c.missed)} for c in state.cameras.values()],
            "pages": len(hub.pages)}
