"""Commands that run the monitor and read it: ``monitor``, ``subscribe``, ``keys`` and ``demo``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from crashwatch.cli.options import camera_options, endpoint_callback, serve_options, setting_option
from crashwatch.monitor.messages import TOPIC_NAMES
from crashwatch.monitor.serving.options import SERVE_SETTING
from crashwatch.monitor.transports.zeromq import DEFAULT_ENDPOINT

if TYPE_CHECKING:
    from crashwatch.monitor.pipeline.options import MonitorOptions
    from crashwatch.monitor.serving.options import ServeOptions

SILENCE_WARNING_S = 3.0  # three missed heartbeats


@click.command("monitor")
@click.option("--config", "config_file", type=click.Path(path_type=Path),
              help="Instead of --source: a cameras file (YAML, or a shipped one by name: cameras.example) listing many "
                   "cameras served by one model in this process; its settings replace the other options.")
@serve_options
@click.option("--curve-secret", type=click.Path(dir_okay=False, path_type=Path),
              help="Encrypt with CURVE: the monitor's secret key file (from `crashwatch keys`).")
@click.option("--curve-allow", type=click.Path(file_okay=False, path_type=Path),
              help="With --curve-secret: folder of the public keys (*.key) of the subscribers admitted.")
@camera_options
def monitor_command(config_file: Path | None, curve_secret: Path | None, curve_allow: Path | None,
                    **settings: Any) -> None:
    """Watch a camera, stream or file (or the cameras of a --config file) and publish risk, alerts and status
    over ZeroMQ (and MQTT)."""
    from crashwatch.monitor.pipeline.options import SETTING, SETTINGS, MonitorOptions, OptionsError
    from crashwatch.monitor.serving.cameras import load_cameras
    from crashwatch.monitor.serving.options import SERVE_SETTINGS, ServeOptions
    from crashwatch.monitor.transports.curve import ServerCurve

    if (curve_secret is None) != (curve_allow is None):
        raise click.UsageError("--curve-secret and --curve-allow go together")
    curve = ServerCurve(curve_secret, curve_allow) if curve_secret is not None else None
    if config_file is not None:
        ctx = click.get_current_context()
        given = [s for s in (*SERVE_SETTINGS, *SETTINGS)
                 if s.flag and ctx.get_parameter_source(s.name) is click.core.ParameterSource.COMMANDLINE]
        if given:
            in_file = [s.flag for s in given if s.key]
            raise click.UsageError("; ".join(
                ([f"{', '.join(in_file)}: set in the cameras file with --config, not beside it"] if in_file else [])
                + [f"{s.flag}: not with --config (a cameras file has no such key)" for s in given if not s.key]))
        config = load_cameras(config_file)
        for name, summary in _serve(config.serve, config.cameras, curve).items():
            click.echo(f"{name} stopped: {_said(summary)}")
        return
    serve = ServeOptions(**{s.name: settings[s.name] for s in SERVE_SETTINGS if s.flag})
    _check_serve(serve)
    if settings["source"] is None:
        raise click.UsageError("give --source (one camera) or --config (a cameras file)")
    camera = {s.name: settings[s.name] for s in SETTINGS}
    options = MonitorOptions(**{**camera, "source": SETTING["source"].parse(camera["source"])})
    try:
        options.check()
    except OptionsError as err:
        raise click.UsageError(str(err)) from None
    summaries = _serve(serve, [options], curve)
    click.echo(f"stopped: {_said(summaries[options.camera])}")


def _check_serve(serve: ServeOptions) -> None:
    """What only the command line can contradict: a Triton model beside a local bundle's options, and options
    that need another one."""
    if serve.model is not None and (serve.bundle is not None or serve.threads is not None or serve.runtime != "auto"
                                    or serve.text_weights != "once"):
        raise click.UsageError("--model runs the bundle a Triton server serves: --bundle, --threads, --runtime and "
                               "--text-weights are for a local bundle")
    if serve.model is None and serve.model_timeout is not None:
        raise click.UsageError("--model-timeout needs --model URL")
    if serve.mqtt_url is None and (serve.mqtt_ca or serve.mqtt_password_file or serve.mqtt_risk or serve.mqtt_outbox
                                   or serve.mqtt_prefix != "crashwatch" or serve.mqtt_discovery != "homeassistant"):
        raise click.UsageError("--mqtt-ca, --mqtt-password-file, --mqtt-prefix, --mqtt-risk, --mqtt-outbox and "
                               "--mqtt-discovery need --mqtt URL")


def _serve(serve: ServeOptions, cameras: list[MonitorOptions], curve: Any) -> dict[str, dict]:
    """Open the model, make the MQTT sinks, and run the cameras until they end or a signal."""
    import dataclasses

    from crashwatch.monitor.pipeline.options import OptionsError
    from crashwatch.monitor.serving.run import run_cameras

    if serve.sign_key is not None and not any(c.events_dir or c.record_dir for c in cameras):
        raise click.UsageError("--sign-key signs event evidence: give --events or --record too")
    signer = None
    if serve.sign_key is not None:
        from crashwatch.monitor.evidence.proof import Signer

        signer = Signer.load(serve.sign_key)
    model, demo = _open_model(serve)
    controls = {}
    if serve.mqtt_url is not None:
        from crashwatch.monitor.controls import Controls

        controls = {c.camera: Controls(serve.controls_for(c.camera)) for c in cameras}
    sinks = _mqtt_sinks(serve, controls) if serve.mqtt_url is not None else []
    metrics = None
    if serve.metrics is not None:
        from crashwatch.monitor.transports.metrics import Metrics

        metrics = Metrics()
        click.echo(f"Prometheus metrics at {metrics.serve(serve.metrics)}", err=True)
    try:
        cameras = [dataclasses.replace(c, demo_model=demo, signer=signer, controls=controls.get(c.camera))
                   for c in cameras]
        return run_cameras(model, cameras, serve.pub, curve, sinks, metrics)
    except OptionsError as err:  # options that do not fit the bundle (thresholds, the window)
        raise click.UsageError(str(err)) from None
    finally:
        if metrics is not None:
            metrics.close()


def _said(summary: dict) -> str:
    return (f"{summary['strides']} strides ({summary['strides_skipped']} skipped), {summary['alerts']} alert(s), "
            f"{summary['frames']} frames ({summary['frames_dropped']} dropped), source {summary['source_state']}")


def _open_model(serve: ServeOptions):
    """The model to run (a local bundle, the demo's by default, or a Triton server's) and whether it is the demo
    model, which is said on the terminal."""
    from crashwatch.demo import NOTICE, demo_bundle, is_demo_model
    from crashwatch.monitor.engines.model import RiskModel

    if serve.model is not None:
        from crashwatch.monitor.engines.triton import DEFAULT_TIMEOUT_S

        model = RiskModel.from_triton(serve.model, serve.model_timeout or DEFAULT_TIMEOUT_S)
    else:
        model = RiskModel.open(serve.bundle or demo_bundle(), threads=serve.threads, runtime=serve.runtime,
                               text_weights=serve.text_weights)
    demo = is_demo_model(model.manifest)
    if demo:
        click.echo(NOTICE, err=True)
    return model, demo


def _mqtt_sinks(serve: ServeOptions, controls: dict) -> list:
    """The MQTT sink's maker for a camera name (the URL checked now, so a bad one stops the start), each with the
    camera's controls."""
    from crashwatch.monitor.transports.mqtt import MqttSink
    from crashwatch.monitor.transports.mqtt_target import MqttTarget

    target = MqttTarget.parse(serve.mqtt_url, serve.mqtt_password_file, serve.mqtt_ca)
    discovery = None if serve.mqtt_discovery == "off" else serve.mqtt_discovery
    return [lambda name: MqttSink(target, name, serve.mqtt_prefix, publish_risk=serve.mqtt_risk,
                                 outbox_path=serve.outbox_for(name), controls=controls[name],
                                 discovery_prefix=discovery)]


@click.command("demo")
@click.option("--out", "out_dir", default="demo-output", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where the annotated video, the risk chart and event clips go.")
@setting_option(SERVE_SETTING["pub"])
@click.option("--fast", is_flag=True, help="Replay as fast as inference allows instead of in real time.")
def demo_command(out_dir: Path, pub: str, fast: bool) -> None:
    """Run the monitor on the shipped demo drive in real time, printing risk and alerts as they come."""
    from crashwatch.demo import run_demo

    run_demo(out_dir, pub, fast, click.echo)


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
    from crashwatch.monitor.serving.signals import stop_on_signals
    from crashwatch.monitor.transports.curve import ClientCurve
    from crashwatch.monitor.transports.subscribe import Subscriber, describe

    if (curve_server_key is None) != (curve_secret is None):
        raise click.UsageError("--curve-server-key and --curve-secret go together")
    curve = ClientCurve(curve_server_key, curve_secret) if curve_secret is not None else None
    # The heartbeat is taken whatever the topics asked for: silence is then told from a quiet monitor.
    subscriber = Subscriber(endpoint, topics + ("status",) if topics else (), curve=curve)
    # Ctrl-C and SIGTERM stop it, also where the shell that started it ignores SIGINT (a background job).
    stop = stop_on_signals()
    click.echo(f"waiting for messages from {endpoint} (Ctrl-C stops)", err=True)
    received, heard_at, warned = 0, time.monotonic(), False
    try:
        while (count is None or received < count) and not stop.is_set():
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
            extra = {"missed": message.missed} if message.missed else {}
            click.echo(json.dumps({"topic": message.topic, **message.wire, **extra}) if as_json else describe(message))
            received += 1
    finally:
        subscriber.close()
        if subscriber.gaps:
            lost = ", ".join(f"{name} {count}" for name, count in sorted(subscriber.gaps.items()))
            click.echo(f"messages missed (seq gaps, per camera/topic): {lost}", err=True)


@click.command("keys")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the key files.")
@click.option("--name", required=True, help="Whose keys: e.g. the monitor's or a subscriber's name.")
@click.option("--signing", is_flag=True,
              help="An Ed25519 key to sign evidence with (NAME.sign, and NAME.sign.pub to check it), instead of a "
                   "CURVE pair for the ZeroMQ link.")
def keys_command(out_dir: Path, name: str, signing: bool) -> None:
    """Create a CURVE key pair: NAME.key (public) and NAME.key_secret (private); with --signing an evidence
    signing key: NAME.sign (private) and NAME.sign.pub (public)."""
    if signing:
        from crashwatch.monitor.evidence.proof import Signer, create_signing_key

        private, public = create_signing_key(out_dir, name)
        click.echo(f"wrote {private} (secret: the monitor's --sign-key, keep it on the device) and {public} "
                   f"(public: keep a copy away from the device; `crashwatch verify --key` checks evidence with it); "
                   f"key {Signer.load(private).fingerprint}")
        return
    from crashwatch.monitor.transports.curve import create_keys

    public, secret = create_keys(out_dir, name)
    click.echo(f"wrote {public} (public: give it to the other side) and {secret} (secret: keep it here)")


@click.command("verify")
@click.argument("event", type=click.Path(exists=True, path_type=Path))
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The device's public key (NAME.sign.pub from `crashwatch keys --signing`): the signature must be "
                   "this key's. Without it the signature is checked against the key the sidecar names.")
def verify_command(event: Path, key_file: Path | None) -> None:
    """Check that an event's evidence (an event folder, or an event clip) is as the monitor wrote it: every
    file's SHA-256, the chain of segments, nothing added, and the signature. Exit 1 naming what differs."""
    from crashwatch.monitor.evidence.proof import load_public_key
    from crashwatch.monitor.evidence.verify import verify

    verdict = verify(event, load_public_key(key_file) if key_file is not None else None)
    for problem in verdict.problems:
        click.echo(problem)
    if not verdict.intact:
        raise click.ClickException(f"{event}: NOT intact ({len(verdict.problems)} problem(s))")
    trust = "the key given" if verdict.trusted else \
        "the key its sidecar names, not one you gave (--key checks it against the device's)"
    click.echo(f"{event}: intact; signed by key {verdict.signed_by} ({trust})")


COMMANDS = (monitor_command, demo_command, subscribe_command, keys_command, verify_command)
