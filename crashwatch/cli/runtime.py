"""Commands that run the monitor and read it: ``monitor``, ``subscribe``, ``keys`` and ``demo``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import click

from crashwatch.cli.options import (PROBABILITY, Finite, alert_on_option, endpoint_callback, runtime_option,
                                    stride_option)
from monitor.messages import TOPIC_NAMES
from monitor.publisher import DEFAULT_ENDPOINT
from monitor.recording import CODEC_CHOICES, KeepPolicy


def _keep_policy(ctx: click.Context, param: click.Parameter, value: str) -> KeepPolicy:
    try:
        return KeepPolicy.parse(value)
    except ValueError as err:
        raise click.BadParameter(str(err), ctx, param) from None


SILENCE_WARNING_S = 3.0  # three missed heartbeats

pub_option = click.option("--pub", "endpoint", default=DEFAULT_ENDPOINT, show_default=True, callback=endpoint_callback(False),
                          help="ZeroMQ PUB endpoint to bind.")


@click.command("monitor")
@click.option("--bundle", "bundle_dir", type=click.Path(path_type=Path),
              help="Bundle folder from `crashwatch export` (default: the demo bundle, generated scenes only).")
@click.option("--model", "model_url", metavar="URL",
              help="Instead of --bundle: the bundle a Triton server serves, triton://HOST:PORT/NAME (gRPC; "
                   "`crashwatch serve-triton` or the repository of `crashwatch export-triton`).")
@click.option("--model-timeout", type=Finite(min=0, min_open=True, max=600),
              help="With --model: seconds each call to the server may take before it counts as failed "
                   "[default: 10].")
@click.option("--source",
              help="Webcam index (0), rtsp:// or http(s):// URL, or a video file (replayed as a live stream).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Instead of --source: a cameras file (YAML, see configs/cameras.example.yaml) listing many "
                   "cameras served by one model in this process; its settings replace the per-camera options.")
@click.option("--replay", type=click.Choice(["realtime", "fast"]), default="realtime", show_default=True,
              help="For files: at the file's frame rate, or as fast as inference allows without skipping a stride.")
@click.option("--loop", is_flag=True, help="For files: start again at the end (demos, soak tests).")
@stride_option
@pub_option
@click.option("--camera", default="cam0", show_default=True, help="Camera name carried by every message.")
@click.option("--preview", is_flag=True,
              help="Also publish a small JPEG of the newest frame (320 px wide) at most twice a second on the "
                   "preview topic, for `crashwatch dashboard`.")
@click.option("--events", "events_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Save each alert's evidence here: a clip + JSON sidecar written after the post-roll, or with "
                   "--record a folder of locked segments (default with --record: RECORD/events).")
@click.option("--record", "record_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Loop recording: write the stream continuously to RECORD/CAMERA as segments, lock alerts' "
                   "segments into event folders as they happen (evidence that survives a crash).")
@click.option("--record-keep", default="1GB,24h", show_default=True, callback=_keep_policy,
              help="With --record: how much of the ring to keep, a size and/or an age (500MB, 2GB,1h, 7d); the "
                   "oldest segments go first, locked evidence stays in the events folder.")
@click.option("--record-codec", type=click.Choice(CODEC_CHOICES), default="auto", show_default=True,
              help="With --record: auto is H.264 where this OpenCV can encode it, else mp4v (cheap; VLC and mpv "
                   "play it); vp8 (WebM) plays in browsers and costs about 10x mp4v to encode.")
@click.option("--record-segment", type=Finite(min=0.2, max=60), default=2.0, show_default=True,
              help="With --record: seconds per segment (at most this much is lost if the monitor dies).")
@click.option("--mqtt", "mqtt_url", metavar="URL",
              help="Also publish to an MQTT broker: mqtt://[USER[:PASS]@]HOST[:PORT] or mqtts://... (TLS). Alerts "
                   "wait in an on-disk outbox until the broker acknowledges them.")
@click.option("--mqtt-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With mqtts://: the CA certificate (PEM) to verify the broker against (default: the system's).")
@click.option("--mqtt-password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The broker password, alone on one line (else the URL's, else $CRASHWATCH_MQTT_PASSWORD; the "
                   "user from the URL or $CRASHWATCH_MQTT_USERNAME).")
@click.option("--mqtt-prefix", default="crashwatch", show_default=True,
              help="Topic prefix: PREFIX/CAMERA/alert, /status, /availability (and /risk).")
@click.option("--mqtt-risk", is_flag=True, help="Also publish every risk message (QoS 0) to PREFIX/CAMERA/risk.")
@click.option("--mqtt-outbox", type=click.Path(dir_okay=False, path_type=Path),
              help="The outbox file (SQLite) [default: $XDG_STATE_HOME or ~/.local/state, crashwatch/outbox-CAMERA.sqlite].")
@alert_on_option
@click.option("--alert-off", type=PROBABILITY, help="Probability below which an alert ends (default: 0.1 below --alert-on).")
@click.option("--alert-min-on", type=Finite(min=0, max=3600), default=0.0, show_default=True,
              help="Seconds above --alert-on before an alert starts.")
@click.option("--alert-min-off", type=Finite(min=0, max=3600), default=1.0, show_default=True,
              help="Seconds below --alert-off before it ends.")
@click.option("--window-seconds", type=Finite(min=0, min_open=True, max=600),
              help="Override the bundle's window length (warned about: not what was trained).")
@click.option("--threads", type=click.IntRange(1, 256), help="Inference threads per graph (default: all cores).")
@runtime_option
@click.option("--curve-secret", type=click.Path(dir_okay=False, path_type=Path),
              help="Encrypt with CURVE: the monitor's secret key file (from `crashwatch keys`).")
@click.option("--curve-allow", type=click.Path(file_okay=False, path_type=Path),
              help="With --curve-secret: folder of the public keys (*.key) of the subscribers admitted.")
def monitor_command(bundle_dir: Path | None, model_url: str | None, model_timeout: float | None,
                    source: str | None, config_file: Path | None, replay: str, loop: bool, stride: float | None,
                    endpoint: str, camera: str, preview: bool,
                    events_dir: Path | None, record_dir: Path | None, record_keep: KeepPolicy, record_codec: str,
                    record_segment: float, mqtt_url: str | None, mqtt_ca: Path | None,
                    mqtt_password_file: Path | None, mqtt_prefix: str, mqtt_risk: bool, mqtt_outbox: Path | None,
                    alert_on: float | None, alert_off: float | None, alert_min_on: float,
                    alert_min_off: float, window_seconds: float | None, threads: int | None, runtime: str,
                    curve_secret: Path | None, curve_allow: Path | None) -> None:
    """Watch a camera, stream or file (or the cameras of a --config file) and publish risk, alerts and status
    over ZeroMQ (and MQTT)."""
    from monitor.monitor import MonitorOptions, OptionsError
    from monitor.security import ServerCurve
    from monitor.service import run_monitor
    from monitor.source import parse_source

    if (curve_secret is None) != (curve_allow is None):
        raise click.UsageError("--curve-secret and --curve-allow go together")
    if model_url is not None and (bundle_dir is not None or threads is not None or runtime != "auto"):
        raise click.UsageError("--model runs the bundle a Triton server serves: --bundle, --threads and --runtime "
                               "are for a local bundle")
    if model_url is None and model_timeout is not None:
        raise click.UsageError("--model-timeout needs --model URL")
    curve = ServerCurve(curve_secret, curve_allow) if curve_secret is not None else None
    if config_file is not None:
        _run_cameras_file(click.get_current_context(), config_file, curve)
        return
    if source is None:
        raise click.UsageError("give --source (one camera) or --config (a cameras file)")
    spec = parse_source(source)
    model, demo = _open_model(bundle_dir, model_url, model_timeout, threads, runtime)
    alert = {"min_on_seconds": alert_min_on, "min_off_seconds": alert_min_off}
    if alert_on is not None:
        alert["on"] = alert_on
    if alert_off is not None:
        alert["off"] = alert_off
    options = MonitorOptions(source=spec, stride=stride, replay=replay, loop=loop, camera=camera, events_dir=events_dir,
                             record_dir=record_dir, record_keep=record_keep, record_codec=record_codec,
                             record_segment_seconds=record_segment, alert=alert, window_seconds=window_seconds,
                             demo_model=demo, preview=preview)
    if mqtt_url is not None:
        sinks = _mqtt_sinks(mqtt_url, mqtt_password_file, mqtt_ca, mqtt_prefix, mqtt_risk,
                            lambda name: mqtt_outbox)
    elif mqtt_ca or mqtt_password_file or mqtt_risk or mqtt_outbox or mqtt_prefix != "crashwatch":
        raise click.UsageError("--mqtt-ca, --mqtt-password-file, --mqtt-prefix, --mqtt-risk and --mqtt-outbox "
                               "need --mqtt URL")
    else:
        sinks = []
    try:
        summary = run_monitor(model, options, endpoint, curve, sinks)
    except OptionsError as err:  # inconsistent options (thresholds, overrides, fast replay of a live source)
        raise click.UsageError(str(err)) from None
    click.echo(f"stopped: {_said(summary)}")


def _said(summary: dict) -> str:
    return (f"{summary['strides']} strides ({summary['strides_skipped']} skipped), {summary['alerts']} alert(s), "
            f"{summary['frames']} frames ({summary['frames_dropped']} dropped), source {summary['source_state']}")


def _open_model(bundle_dir: Path | None, model_url: str | None, model_timeout: float | None, threads: int | None,
                runtime: str):
    """The model to run (a local bundle, the demo's by default, or a Triton server's) and whether it is the demo
    model, which is said on the terminal."""
    from crashwatch.demo import NOTICE, demo_bundle, is_demo_model
    from monitor.model import RiskModel

    if model_url is not None:
        from monitor.triton.client import DEFAULT_TIMEOUT_S

        model = RiskModel.from_triton(model_url, model_timeout or DEFAULT_TIMEOUT_S)
    else:
        model = RiskModel(bundle_dir or demo_bundle(), threads=threads, runtime=runtime)
    demo = is_demo_model(model.manifest)
    if demo:
        click.echo(NOTICE, err=True)
    return model, demo


def _mqtt_sinks(url: str, password_file: Path | None, ca: Path | None, prefix: str, risk: bool,
                outbox_for: Callable[[str], Path | None]) -> list:
    """The MQTT sink's maker for a camera name (the URL checked now, so a bad one stops the start); a camera
    whose ``outbox_for`` is None gets the default outbox."""
    from monitor.mqtt import MqttSink, MqttTarget, default_outbox

    target = MqttTarget.parse(url, password_file, ca)
    return [lambda name: MqttSink(target, name, prefix, outbox_path=outbox_for(name) or default_outbox(name),
                                 publish_risk=risk)]


# Options that a cameras file sets per camera or for all: given beside --config they would be ignored.
CAMERA_OPTIONS = ("bundle_dir", "model_url", "model_timeout", "source", "replay", "loop", "stride", "endpoint", "camera",
                  "preview", "events_dir", "record_dir",
                  "record_keep", "record_codec", "record_segment", "mqtt_url", "mqtt_ca", "mqtt_password_file",
                  "mqtt_prefix", "mqtt_risk", "mqtt_outbox", "alert_on", "alert_off", "alert_min_on", "alert_min_off",
                  "window_seconds", "threads", "runtime")


def _run_cameras_file(ctx: click.Context, path: Path, curve) -> None:
    from monitor.cameras import load_cameras
    from monitor.service import run_fleet

    flags = {param.name: param.opts[0] for param in ctx.command.params}
    given = [flags[name] for name in CAMERA_OPTIONS
             if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
    if given:
        raise click.UsageError(f"{', '.join(given)}: set in the cameras file with --config, not beside it")
    config = load_cameras(path)
    model, demo = _open_model(Path(config.bundle) if config.bundle else None, config.model, config.model_timeout,
                              config.threads, config.runtime)
    sinks = []
    if config.mqtt is not None:
        m = config.mqtt
        sinks = _mqtt_sinks(m.url, Path(m.password_file) if m.password_file else None, Path(m.ca) if m.ca else None,
                            m.prefix, m.risk,
                            lambda name: Path(m.outbox_dir) / f"outbox-{name}.sqlite" if m.outbox_dir else None)
    summaries = run_fleet(model, config, demo, curve, sinks)
    for name, summary in summaries.items():
        click.echo(f"{name} stopped: {_said(summary)}")


@click.command("demo")
@click.option("--out", "out_dir", default="demo-output", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where the annotated video, the risk chart and event clips go.")
@pub_option
@click.option("--fast", is_flag=True, help="Replay as fast as inference allows instead of in real time.")
def demo_command(out_dir: Path, endpoint: str, fast: bool) -> None:
    """Run the monitor on the shipped demo drive in real time, printing risk and alerts as they come."""
    from crashwatch.demo import run_demo

    run_demo(out_dir, endpoint, fast, click.echo)


@click.command("subscribe")
@click.option("--connect", "endpoint", default=DEFAULT_ENDPOINT, show_default=True, callback=endpoint_callback(True),
              help="Monitor's PUB endpoint: tcp://HOST:PORT, or HOST:PORT.")
@click.option("--topic", "topics", multiple=True, type=click.Choice(TOPIC_NAMES),
              help="Only these topics (repeatable; default: all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, for programs.")
@click.option("--count", type=click.IntRange(min=1), help="Exit after this many messages.")
@click.option("--curve-server-key", type=click.Path(dir_okay=False, path_type=Path),
              help="The monitor's public key file: connect with CURVE encryption.")
@click.option("--curve-secret", type=click.Path(dir_okay=False, path_type=Path),
              help="With --curve-server-key: this subscriber's secret key file.")
def subscribe_command(endpoint: str, topics: tuple[str, ...], as_json: bool, count: int | None,
                      curve_server_key: Path | None, curve_secret: Path | None) -> None:
    """Print a monitor's messages, one line each."""
    from monitor.security import ClientCurve
    from monitor.subscribe import Subscriber, describe

    if (curve_server_key is None) != (curve_secret is None):
        raise click.UsageError("--curve-server-key and --curve-secret go together")
    curve = ClientCurve(curve_server_key, curve_secret) if curve_secret is not None else None
    # The heartbeat is taken whatever the topics asked for: silence is then told from a quiet monitor.
    subscriber = Subscriber(endpoint, topics + ("status",) if topics else (), curve=curve)
    click.echo(f"waiting for messages from {endpoint} (Ctrl-C stops)", err=True)
    received, heard_at, warned = 0, time.monotonic(), False
    try:
        while count is None or received < count:
            message = subscriber.receive(timeout=0.5)
            if message is None:
                silent = time.monotonic() - heard_at
                if silent >= SILENCE_WARNING_S and not warned:
                    click.echo(f"nothing from {endpoint} for {silent:.0f} s (a monitor sends status every second): "
                               "is one publishing there, reachable, and with the same CURVE keys? Still waiting.",
                               err=True)
                    warned = True
                continue
            heard_at, warned = time.monotonic(), False
            if topics and message.topic not in topics:
                continue
            click.echo(json.dumps({"topic": message.topic, **message.wire}) if as_json else describe(message))
            received += 1
    except KeyboardInterrupt:
        pass
    finally:
        subscriber.close()
        if subscriber.gaps:
            click.echo(f"missed messages (seq gaps): {subscriber.gaps}", err=True)


@click.command("keys")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the key files.")
@click.option("--name", required=True, help="Whose keys: e.g. the monitor's or a subscriber's name.")
def keys_command(out_dir: Path, name: str) -> None:
    """Create a CURVE key pair: NAME.key (public) and NAME.key_secret (private)."""
    from monitor.security import create_keys

    public, secret = create_keys(out_dir, name)
    click.echo(f"wrote {public} (public: give it to the other side) and {secret} (secret: keep it here)")


COMMANDS = (monitor_command, demo_command, subscribe_command, keys_command)
