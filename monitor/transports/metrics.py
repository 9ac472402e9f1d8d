"""Prometheus metrics of a monitor process (``--metrics HOST:PORT``), in the names and labels a Prometheus
server and Grafana expect: units in the names, ``_total`` counters, one ``camera`` label (as Frigate's
``/api/metrics`` does per camera).

The figures are read off the messages each camera publishes, through a ``Sink`` per camera, so they say what
subscribers are told and the scoring path does nothing more for them: each ``risk`` feeds the latency and
model-time histograms, each alert start the alert counter, and a scrape reads the newest ``status`` of every
camera (sent every second) for the counters and gauges, and the process's batches. Memory and CPU time are
prometheus-client's own process metrics (``process_resident_memory_bytes``, Linux).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crashwatch.contract.errors import CrashwatchError
from crashwatch.monitor.messages import LEVELS, AlertEvent, Level, ProcessStatus, Topic

PREFIX = "crashwatch"
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)  # around a 0.5 s stride
MODEL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)


class MetricsError(CrashwatchError):
    """The metrics address is malformed or cannot be bound; the message names it."""


def parse_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9108`` for IPv6) as (host, port), or ValueError saying what is wrong."""
    host, _, port = str(value).rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"{value!r}: give HOST:PORT, the port a number from 1 to 65535")
    return host, int(port)


def serve_registry(registry: CollectorRegistry, address: str) -> tuple[Any, str]:
    """Serve ``registry`` at ``http://ADDRESS/metrics`` from a thread of its own: the server (``shutdown`` and
    ``server_close`` stop it) and its URL, or MetricsError naming ``--metrics`` and what is wrong."""
    try:
        host, port = parse_address(address)
    except ValueError as err:
        raise MetricsError(f"--metrics {err}") from None
    try:
        server, _ = start_http_server(port, host, registry=registry)
    except OSError as err:
        raise MetricsError(f"--metrics {address}: cannot serve metrics there: {err.strerror or err}") from None
    return server, f"http://{address}/metrics"


class Metrics:
    """One process's metrics: a sink per camera feeds them, ``serve`` exposes them at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._status: dict[str, dict[str, Any]] = {}  # camera -> newest status as sent
        self._counts: dict[str, dict[str, float]] = {}  # camera -> alert starts, late risks, newest probability,
        #                                                  warnings raised per level
        self._process: Callable[[], ProcessStatus] | None = None
        self._server: Any = None
        self.latency = Histogram(f"{PREFIX}_risk_latency_seconds", "From the capture of a window's newest frame "
                                 "to its risk message.", ["camera"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.model_time = Histogram(f"{PREFIX}_model_seconds", "Model time of a stride by stage: encode (the vision "
                                    "graph on the new frames), score (the text graphs on the window).",
                                    ["camera", "stage"], buckets=MODEL_BUCKETS, registry=self.registry)
        self.registry.register(_Snapshot(self))
        ProcessCollector(registry=self.registry)

    def sink(self, camera: str) -> "MetricsSink":
        return MetricsSink(self, camera)

    def watch_process(self, status: Callable[[], ProcessStatus]) -> None:
        """Read the process's heartbeat (the shared graphs' batches) at each scrape."""
        self._process = status

    def serve(self, address: str) -> str:
        """Serve ``/metrics`` on ``address`` (HOST:PORT); returns its URL."""
        self._server, url = serve_registry(self.registry, address)
        return url

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def take(self, camera: str, topic: Topic, message: dict[str, Any]) -> None:
        """One message of ``camera`` (a sink's ``send``): cheap, never blocks on a scrape for long."""
        if topic is Topic.RISK:
            timings = message["timings"]
            self.latency.labels(camera).observe(message["latency_ms"] / 1000)
            self.model_time.labels(camera, "encode").observe(timings["encode_ms"] / 1000)
            self.model_time.labels(camera, "score").observe(timings["score_ms"] / 1000)
        with self._lock:
            counts = self._counts.setdefault(camera, {"alerts": 0, "late": 0, "probability": float("nan"),
                                                      **{level.value: 0 for level in LEVELS[1:]}})
            if topic is Topic.STATUS:
                self._status[camera] = message
            elif topic is Topic.RISK:
                counts["late"] += bool(message.get("late"))
                counts["probability"] = message["probability"]
            elif topic is Topic.ALERT and message["event"] == AlertEvent.START.value:
                counts["alerts"] += 1
            elif topic is Topic.LEVEL and Level(message["level"]).rank > Level(message["previous"]).rank:
                counts[message["level"]] += 1

    def snapshot(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, float]], ProcessStatus | None]:
        with self._lock:
            status, counts = dict(self._status), {c: dict(v) for c, v in self._counts.items()}
        return status, counts, self._process() if self._process is not None else None


class MetricsSink:
    """A camera's messages into the process's ``Metrics`` (``crashwatch.monitor.transports.zeromq.Sink``)."""

    name = "metrics"

    def __init__(self, metrics: Metrics, camera: str) -> None:
        self.metrics = metrics
        self.camera = camera

    def send(self, topic: Topic, message: dict[str, Any]) -> None:
        self.metrics.take(self.camera, topic, message)

    def status(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


class _Family:
    """Builds one metric family from every camera's value (None: the camera has no such figure now)."""

    def __init__(self, kind: type, name: str, documentation: str, labels: tuple[str, ...] = ("camera",)) -> None:
        self.family = kind(f"{PREFIX}_{name}", documentation, labels=list(labels))

    def add(self, labels: list[str], value: float | None) -> None:
        if value is not None:
            self.family.add_metric(labels, float(value))


class _Snapshot(Collector):
    """The counters and gauges of a scrape, from each camera's newest status and the process's heartbeat."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        statuses, counts, process = self.metrics.snapshot()
        families: dict[str, _Family] = {}

        def put(kind: type, name: str, doc: str, labels: list[str], value: Any,
                label_names: tuple[str, ...] = ("camera",)) -> None:
            family = families.setdefault(name, _Family(kind, name, doc, label_names))
            family.add(labels, value)

        counter, gauge = CounterMetricFamily, GaugeMetricFamily
        for camera, s in statuses.items():
            at = [camera]
            source = s["source"]
            put(gauge, "source_online", "1 while the source delivers frames, 0 while it reconnects, ended or stopped.",
                at, source["state"] == "online")
            put(counter, "source_outages", "Outages of the source since the start.", at, source.get("outages"))
            put(gauge, "capture_fps", "Frames captured per second.", at, s["capture_fps"])
            put(counter, "frames_captured", "Frames taken from the source.", at, s["frames_captured"])
            put(counter, "frames_dropped", "Frames a file replay skipped to keep up.", at, s["frames_dropped"])
            put(counter, "frames_damaged", "Frames of a file that could not be decoded (a damaged stretch), skipped.",
                at, s.get("frames_damaged"))
            put(counter, "strides", "Windows scored.", at, s["strides"])
            put(counter, "strides_skipped", "Strides skipped (the model was busy, or its calls failed).", at,
                s["strides_skipped"])
            put(gauge, "lag_seconds", "Wall-clock age of the newest frame scored.", at, s["lag_s"])
            put(gauge, "effective_stride_seconds", "Stream seconds between the last two windows scored.", at,
                s.get("effective_stride_s"))
            put(gauge, "alert_active", "1 while an alert is open.", at, s["alert_active"])
            put(gauge, "warning_level", "The warning level now: 0 none, 1 caution, 2 imminent (an open alert).", at,
                Level(s["level"]).rank if s.get("level") else None)
            health = s.get("camera_health") or {}
            put(gauge, "camera_degraded", "1 while the camera cannot see well (any check failing).", at,
                health.get("state") == "degraded" if health else None)
            for check in health.get("reasons", []):
                put(gauge, "camera_check_failing", "1 for each camera-health check failing now.", [camera, check], 1,
                    ("camera", "check"))
            realtime = s.get("realtime") or {}
            put(gauge, "realtime_holds", "1 where the measured model time holds real time on this machine.", at,
                realtime.get("holds"))
            model = s.get("model")
            if model:
                put(gauge, "model_info", "The model a camera runs (always 1).",
                    [camera, str(model["name"]), str(model["precision"]), str(model["hash"]), str(model["runtime"]),
                     f"{model['threshold']:.6g}"], 1, ("camera", "name", "precision", "hash", "runtime", "threshold"))
            for state, count in (s.get("explanations") or {}).items():
                put(counter, "explanations", "Alert explanations, by state: done, skipped (the explainer was busy), "
                    "failed.", [camera, state], count, ("camera", "state"))
            calls = s.get("model_calls") or {}
            put(counter, "model_call_failures", "Model calls that failed (a Triton server).", at, calls.get("failures"))
            publisher = s.get("publisher") or {}
            put(counter, "messages_sent", "Messages sent on the ZeroMQ socket.", at, publisher.get("sent"))
            put(counter, "messages_dropped", "Messages ZeroMQ dropped (a subscriber past its high-water mark).", at,
                publisher.get("dropped"))
            events = s.get("events") or {}
            put(counter, "events_written", "Events whose evidence is whole on disk: clips written, event folders "
                "complete.", at, events.get("written", events.get("complete")))
            put(counter, "events_failed", "Events whose evidence could not be written.", at, events.get("failed"))
            recording = s.get("recording") or {}
            put(gauge, "recording_bytes", "Bytes of the loop recording's closed segments on disk.", at,
                recording.get("bytes"))
            put(gauge, "recording_segments", "Closed segments in the loop recording.", at, recording.get("segments"))
            put(counter, "recording_segments_deleted", "Segments the ring deleted.", at, recording.get("deleted"))
            put(counter, "recording_failures", "Recording failures (a segment not written).", at,
                recording.get("failed"))
            mqtt = (s.get("sinks") or {}).get("mqtt") or {}
            put(gauge, "mqtt_connected", "1 while connected to the MQTT broker.", at,
                mqtt.get("connected") if mqtt else None)
            put(gauge, "mqtt_outbox_messages", "Messages waiting in the MQTT outbox.", at, mqtt.get("queued"))
            put(gauge, "mqtt_outbox_oldest_age_seconds", "Age of the oldest message in the MQTT outbox.", at,
                mqtt.get("oldest_age_s"))
            put(counter, "mqtt_delivered", "Messages the broker acknowledged.", at, mqtt.get("delivered"))
            put(counter, "mqtt_dropped", "Messages the outbox dropped (full or too old).", at, mqtt.get("dropped"))
            put(counter, "mqtt_alerts_dropped", "Alerts among them.", at, mqtt.get("dropped_critical"))
        for camera, c in counts.items():
            put(counter, "alerts", "Alerts started.", [camera], c["alerts"])
            for level in LEVELS[1:]:
                put(counter, "warnings", "Warnings raised, by level: a rise to caution, a rise to imminent (an "
                    "alert start whose level was not held back).", [camera, level.value], c[level.value],
                    ("camera", "level"))
            put(counter, "risks_late", "Risk messages past their latency budget (marked late).", [camera], c["late"])
            put(gauge, "risk_probability", "The newest window's crash-risk probability.", [camera],
                None if c["probability"] != c["probability"] else c["probability"])
        for graph, batch in (process.batches if process is not None else {}).items():
            on = [graph]
            put(counter, "batch_calls", "Calls to a shared graph.", on, batch.get("calls"), ("graph",))
            put(counter, "batches", "Batches a shared graph ran.", on, batch.get("batches"), ("graph",))
            put(gauge, "batch_size_mean", "Mean calls per batch.", on, batch.get("mean_batch"), ("graph",))
            put(gauge, "batch_queue_depth", "Calls waiting for a shared graph.", on, batch.get("queue_depth"),
                ("graph",))
        for family in families.values():
            yield family.family
