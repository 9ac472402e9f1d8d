"""What a monitor process serves its cameras with, declared once: the model, where messages go, MQTT.

As ``MonitorOptions`` does for a camera, each field is a ``setting`` with its command-line flag, its key at the
top of a cameras file and its parser; a setting without a flag is the file's alone, one without a key the
command line's. Rules between these options that only the command line can break (``--model`` beside
``--bundle``, an ``--mqtt-*`` option without ``--mqtt``) stay with the command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crashwatch.monitor.engines.local import LOCAL_RUNTIMES, Runtime, TextWeights
from crashwatch.monitor.pipeline.options import boolean, choice, folder, number, setting, settings_of
from crashwatch.monitor.transports.metrics import parse_address
from crashwatch.monitor.transports.mqtt import default_outbox
from crashwatch.monitor.transports.zeromq import DEFAULT_ENDPOINT, PublisherError, check_endpoint

RUNTIMES = tuple(r.value for r in LOCAL_RUNTIMES)


def endpoint(value: Any) -> str:
    """A ZeroMQ endpoint to bind."""
    try:
        return check_endpoint(str(value))
    except PublisherError as err:
        raise ValueError(str(err)) from None


def text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value


def whole(low: int, high: int) -> Any:
    def parse(value: Any) -> int:
        try:
            number_ = int(value) if isinstance(value, str) else value
        except ValueError:
            number_ = None
        if isinstance(number_, bool) or not isinstance(number_, int) or not low <= number_ <= high:
            raise ValueError(f"must be a whole number from {low} to {high}, got {value!r}")
        return number_
    return parse


def existing_file(value: Any) -> Path:
    path = Path(text(str(value) if isinstance(value, Path) else value))
    if not path.is_file():
        raise ValueError(f"{str(path)!r}: no such file")
    return path


def address(value: Any) -> str:
    """HOST:PORT to serve on."""
    parse_address(text(value))
    return str(value)


def mqtt_url(value: Any) -> str:
    """The broker's URL, its form only: the host, credentials and TLS are checked as the monitor starts."""
    if not isinstance(value, str) or not value.startswith(("mqtt://", "mqtts://")):
        raise ValueError("must be mqtt://[USER[:PASS]@]HOST[:PORT] or mqtts://...")
    return value


@dataclass
class ServeOptions:
    """The model, the publisher and MQTT of a monitor process."""

    bundle: Path | None = setting(
        "--bundle", "bundle", "Bundle folder from `crashwatch export`, or a model store from `crashwatch review "
        "learn` (its current version) (default: the demo bundle, generated scenes only).", "FOLDER", folder)
    model: str | None = setting(
        "--model", "model", "Instead of --bundle: the bundle a Triton server serves, triton://HOST:PORT/NAME (gRPC; "
        "`crashwatch serve-triton` or the repository of `crashwatch export-triton`).", "URL", text, late=True)
    model_timeout: float | None = setting(
        "--model-timeout", "model_timeout", "With --model: seconds each call to the server may take before it counts "
        "as failed [default: 10].", "SECONDS", number(0, 600, low_open=True))
    pub: str = setting("--pub", "pub", "ZeroMQ PUB endpoint to bind.", "ENDPOINT", endpoint, DEFAULT_ENDPOINT)
    runtime: str = setting(
        "--runtime", "runtime", "Inference engine. auto: where a bundle exported with --openvino could run on "
        "OpenVINO or onnxruntime, each graph on the one that ran it faster on this CPU (timed at the first start, "
        "then cached); onnxruntime otherwise and on GPUs. The choice and why are logged and named in status.",
        "RUNTIME", choice(*RUNTIMES), Runtime.AUTO.value)
    threads: int | None = setting(
        "--threads", "threads", "Inference threads per graph (default: all cores).", "N", whole(1, 256))
    text_weights: str = setting(
        "--text-weights", "text_weights", "A streaming bundle's text weights, which its block and readout graphs "
        "share, on onnxruntime. once: held once, mapped from the bundle (the 500M: 300 MB less resident); "
        "prepacked: each graph its own prepacked copy, text passes some 20 % faster.", "HOW",
        choice(*(w.value for w in TextWeights)), TextWeights.ONCE.value)
    metrics: str | None = setting(
        "--metrics", "metrics", "Serve Prometheus metrics at http://HOST:PORT/metrics: per camera capture, strides, "
        "lag, latency and model-time histograms, alerts, recording, MQTT outbox; the process's memory and batches "
        "(e.g. 127.0.0.1:9108).", "HOST:PORT", address)
    sign_key: Path | None = setting(
        "--sign-key", "sign_key", "Sign every event's sidecar (and so its files, by their SHA-256) with this Ed25519 "
        "key (`crashwatch keys --signing`); `crashwatch verify` checks them.", "FILE", existing_file)
    mqtt_url: str | None = setting(
        "--mqtt", "mqtt.url", "Also publish to an MQTT broker: mqtt://[USER[:PASS]@]HOST[:PORT] or mqtts://... "
        "(TLS). Alerts wait in an on-disk outbox until the broker acknowledges them.", "URL", mqtt_url, late=True)
    mqtt_ca: Path | None = setting(
        "--mqtt-ca", "mqtt.ca", "With mqtts://: the CA certificate (PEM) to verify the broker against (default: the "
        "system's).", "FILE", existing_file)
    mqtt_password_file: Path | None = setting(
        "--mqtt-password-file", "mqtt.password_file", "The broker password, alone on one line (else the URL's, else "
        "$CRASHWATCH_MQTT_PASSWORD; the user from the URL or $CRASHWATCH_MQTT_USERNAME).", "FILE", existing_file)
    mqtt_prefix: str = setting(
        "--mqtt-prefix", "mqtt.prefix", "Topic prefix: PREFIX/CAMERA/alert, /status, /availability (and /risk).",
        "PREFIX", text, "crashwatch")
    mqtt_risk: bool = setting(
        "--mqtt-risk", "mqtt.risk", "Also publish every risk message (QoS 0) to PREFIX/CAMERA/risk.", "", boolean,
        False, switch=True)
    mqtt_discovery: str = setting(
        "--mqtt-discovery", "mqtt.discovery", "Home Assistant's MQTT discovery prefix: each camera appears there as a "
        "device with its risk, alert and controls (off: no discovery).", "PREFIX", text, "homeassistant")
    mqtt_outbox: Path | None = setting(
        "--mqtt-outbox", "", "The outbox file (SQLite) [default: $XDG_STATE_HOME or ~/.local/state, "
        "crashwatch/outbox-CAMERA.sqlite]; a cameras file names a folder instead, mqtt.outbox_dir.", "FILE", Path)
    mqtt_outbox_dir: Path | None = setting(
        "", "mqtt.outbox_dir", "The folder of the cameras' outboxes, outbox-CAMERA.sqlite each (default: as "
        "--mqtt-outbox defaults).", "FOLDER", folder)

    def controls_for(self, camera: str) -> Path:
        """Where ``camera``'s controls set over MQTT are kept across restarts: beside its outbox."""
        return self.outbox_for(camera).with_name(f"controls-{camera}.json")

    def outbox_for(self, camera: str) -> Path:
        """Where ``camera``'s MQTT outbox is: the one given, one in the folder given, or the default place."""
        if self.mqtt_outbox is not None:
            return self.mqtt_outbox
        if self.mqtt_outbox_dir is not None:
            return self.mqtt_outbox_dir / f"outbox-{camera}.sqlite"
        return default_outbox(camera)


SERVE_SETTINGS = settings_of(ServeOptions)
SERVE_SETTING = {s.name: s for s in SERVE_SETTINGS}
