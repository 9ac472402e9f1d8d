"""Commands that run the monitor and read it: ``monitor``, ``subscribe``, ``keys`` and ``demo``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import click

from crashwatch.cli.options import Finite, camera_options, endpoint_callback, runtime_option
from crashwatch.monitor.messages import TOPIC_NAMES
from crashwatch.monitor.transports.zeromq import DEFAULT_ENDPOINT

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
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Instead of --source: a cameras file (YAML, see configs/cameras.example.yaml) listing many "
                   "cameras served by one model in this process; its settings replace the per-camera options.")
@pub_option
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
@click.option("--threads", type=click.IntRange(1, 256), help="Inference threads per graph (default: all cores).")
@runtime_option
@click.option("--curve-secret", type=click.Path(dir_okay=False, path_type=Path),
              help="Encrypt with CURVE: the monitor's secret key file (from `crashwatch keys`).")
@click.option("--curve-allow", type=click.Path(file_okay=False, path_type=Path),
              help="With --curve-secret: folder of the public keys (*.key) of the subscribers admitted.")
@camera_options
def monitor_command(bundle_dir: Path | None, model_url: str | None, model_timeout: float | None,
                    config_file: Path | None, endpoint: str, mqtt_url: str | None, mqtt_ca: Path | None,
                    mqtt_password_file: Path | None, mqtt_prefix: str, mqtt_risk: bool, mqtt_outbox: Path | None,
                    threads: int | None, runtime: str, curve_secret: Path | None, curve_allow: Path | None,
                    **camera: Any) -> None:
    """Watch a camera, stream or file (or the cameras of a --config file) and publish risk, alerts and status
    over ZeroMQ (and MQTT)."""
    from crashwatch.monitor.pipeline.options import SETTING, MonitorOptions, OptionsError
    from crashwatch.monitor.serving.run import run_cameras
    from crashwatch.monitor.transports.curve import ServerCurve

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
    if camera["source"] is None:
        raise click.UsageError("give --source (one camera) or --config (a cameras file)")
    options = MonitorOptions(**{**camera, "source": SETTING["source"].parse(camera["source"])})
    try:
        options.check()
    except OptionsError as err:
        raise click.UsageError(str(err)) from None
    if mqtt_url is not None:
        sinks = _mqtt_sinks(mqtt_url, mqtt_password_file, mqtt_ca, mqtt_prefix, mqtt_risk,
                            lambda name: mqtt_outbox)
    elif mqtt_ca or mqtt_password_file or mqtt_risk or mqtt_outbox or mqtt_prefix != "crashwatch":
        raise click.UsageError("--mqtt-ca, --mqtt-password-file, --mqtt-prefix, --mqtt-risk and --mqtt-outbox "
                               "need --mqtt URL")
    else:
        sinks = []
    model, demo = _open_model(bundle_dir, model_url, model_timeout, threads, runtime)
    options.demo_model = demo
    try:
        summaries = run_cameras(model, [options], endpoint, curve, sinks)
    except OptionsError as err:  # options that do not fit the bundle (thresholds, the window)
        raise click.UsageError(str(err)) from None
    click.echo(f"stopped: {_said(summaries[options.camera])}")


def _said(summary: dict) -> str:
    return (f"{summary['strides']} strides ({summary['strides_skipped']} skipped), {summary['alerts']} alert(s), "
            f"{summary['frames']} frames ({summary['frames_dropped']} dropped), source {summary['source_state']}")


def _open_model(bundle_dir: Path | None, model_url: str | None, model_timeout: float | None, threads: int | None,
                runtime: str):
    """The model to run (a local bundle, the demo's by default, or a Triton server's) and whether it is the demo
    model, which is said on the terminal."""
    from crashwatch.demo import NOTICE, demo_bundle, is_demo_model
    from crashwatch.monitor.engines.model import RiskModel

    if model_url is not None:
        from crashwatch.monitor.engines.triton import DEFAULT_TIMEOUT_S

        model = RiskModel.from_triton(model_url, model_timeout or DEFAULT_TIMEOUT_S)
    else:
        model = RiskModel.open(bundle_dir or demo_bundle(), threads=threads, runtime=runtime)
    demo = is_demo_model(model.manifest)
    if demo:
        click.echo(NOTICE, err=True)
    return model, demo


def _mqtt_sinks(url: str, password_file: Path | None, ca: Path | None, prefix: str, risk: bool,
                outbox_for: Callable[[str], Path | None]) -> list:
    """The MQTT sink's maker for a camera name (the URL checked now, so a bad one stops the start); a camera
    whose ``outbox_for`` is None gets the default outbox."""
    from crashwatch.monitor.transports.mqtt import MqttSink, default_outbox
    from crashwatch.monitor.transports.mqtt_target import MqttTarget

    target = MqttTarget.parse(url, password_file, ca)
    return [lambda name: MqttSink(target, name, prefix, outbox_path=outbox_for(name) or default_outbox(name),
                                 publish_risk=risk)]


# What a cameras file cannot set: every other option given beside --config would be ignored, so it is refused.
BESIDE_CONFIG = ("config_file", "curve_secret", "curve_allow")


def _run_cameras_file(ctx: click.Context, path: Path, curve) -> None:
    from crashwatch.monitor.serving.cameras import load_cameras
    from crashwatch.monitor.serving.run import run_cameras

    flags = {param.name: param.opts[0] for param in ctx.command.params}
    given = [flag for name, flag in flags.items()
             if name not in BESIDE_CONFIG and ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
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
    summaries = run_cameras(model, config.options(demo), config.pub, curve, sinks)
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
    from crashwatch.monitor.transports.curve import ClientCurve
    from crashwatch.monitor.transports.subscribe import Subscriber, describe

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
    from crashwatch.monitor.transports.curve import create_keys

    public, secret = create_keys(out_dir, name)
    click.echo(f"wrote {public} (public: give it to the other side) and {secret} (secret: keep it here)")


COMMANDS = (monitor_command, demo_command, subscribe_command, keys_command)
