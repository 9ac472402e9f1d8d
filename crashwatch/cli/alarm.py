"""``crashwatch alarm``: the in-cab unit (``run``), its mute (``mute``) and a speaker check (``check``)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click

from crashwatch.alarm import DEFAULT_CONTROL
from crashwatch.cli.options import Finite, endpoint_callback
from crashwatch.monitor.messages import LEVELS, Level
from crashwatch.monitor.transports.zeromq import DEFAULT_ENDPOINT

log = logging.getLogger(__name__)

LEVEL_NAMES = [level.value for level in LEVELS]


def _output_options(command):  # type: ignore[no-untyped-def]
    for option in reversed((
        click.option("--device", help="Audio output: a PortAudio device's name (or part of it) or index "
                     "[default: the system's default output]."),
        click.option("--wav", "wav", type=click.Path(dir_okay=False, path_type=Path),
                     help="Instead of a device: write every sound, in order, into this WAV file."),
        click.option("--voice", is_flag=True, help="Speak a word after each level's tones (espeak-ng, rendered at "
                     "start: caution \"Caution\", imminent \"Brake!\")."),
        click.option("--say", "say", multiple=True, type=(click.Choice(LEVEL_NAMES[1:]), str),
                     metavar="LEVEL WORDS", help="With --voice: the words for a level instead (repeatable)."),
    )):
        command = option(command)
    return command


def _open(device: str | None, wav: Path | None, voice: bool, say: tuple[tuple[str, str], ...], on_started):  # type: ignore[no-untyped-def]
    """The rendered sounds and the open output; usage errors for options that contradict each other."""
    from crashwatch.alarm.output import DeviceOutput, WavOutput
    from crashwatch.alarm.sounds import WORDS, render_sounds

    if device is not None and wav is not None:
        raise click.UsageError("--device and --wav are two outputs: give one")
    if say and not voice:
        raise click.UsageError("--say gives the words --voice speaks: add --voice")
    words = {**WORDS, **{Level(level): text for level, text in say}} if voice else None
    sounds = render_sounds(words)
    chosen: str | int | None = int(device) if device is not None and device.isdigit() else device
    output = WavOutput(wav, on_started) if wav is not None else DeviceOutput(chosen, on_started)
    return sounds, output


@click.group("alarm")
def alarm_group() -> None:
    """The in-cab unit: sound each warning level a monitor raises (docs/alarm.md)."""


@alarm_group.command("run")
@click.option("--connect", "endpoint", default=None, callback=endpoint_callback(True),
              help=f"The monitor's ZeroMQ endpoint [default: {DEFAULT_ENDPOINT}].")
@click.option("--mqtt", "mqtt_url", help="Instead: read from an MQTT broker, mqtt://[USER[:PASS]@]HOST[:PORT] or "
              "mqtts://..., the topics PREFIX/CAMERA/level, /status, /availability.")
@click.option("--mqtt-prefix", default="crashwatch", show_default=True, help="With --mqtt: the monitors' prefix.")
@click.option("--mqtt-password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --mqtt: the broker password, alone on one line.")
@click.option("--mqtt-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With mqtts://: the CA certificate (PEM) to verify the broker against.")
@click.option("--curve-server-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --connect: the monitor's public key file, to connect with CURVE encryption.")
@click.option("--curve-secret", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --curve-server-key: this unit's secret key file.")
@click.option("--camera", help="Only this camera [default: every camera heard].")
@_output_options
@click.option("--cooldown", type=Finite(min=0, max=3600), default=5.0, show_default=True,
              help="Seconds before a camera's caution sounds again.")
@click.option("--repeat", type=Finite(min=0, max=60), default=2.0, show_default=True,
              help="While imminent lasts, sound it again this often, louder each time (0: once).")
@click.option("--on", "hooks", multiple=True, type=(click.Choice(LEVEL_NAMES), str), metavar="LEVEL COMMAND",
              help="Run COMMAND (no shell) on each change to LEVEL, muted or not, with $CRASHWATCH_CAMERA, "
                   "$CRASHWATCH_LEVEL, $CRASHWATCH_PREVIOUS and $CRASHWATCH_PROBABILITY set (repeatable): an "
                   "LED, a relay, a seat vibrator.")
@click.option("--control", default=DEFAULT_CONTROL, show_default=True,
              help="Where `crashwatch alarm mute` reaches this unit (ZeroMQ).")
def run_command(endpoint: str | None, mqtt_url: str | None, mqtt_prefix: str, mqtt_password_file: Path | None,
                mqtt_ca: Path | None, curve_server_key: Path | None, curve_secret: Path | None,
                camera: str | None, device: str | None, wav: Path | None, voice: bool,
                say: tuple[tuple[str, str], ...], cooldown: float, repeat: float,
                hooks: tuple[tuple[str, str], ...], control: str) -> None:
    """Sound each warning level of the monitors' cameras: two low beeps for a caution, fast high beeps for an
    imminent collision (repeated, louder, while it lasts), optionally a spoken word; a hook per level.

    A caution sounds at most once per --cooldown per camera; `crashwatch alarm mute MINUTES` silences cautions
    and repeats for a while (an imminent warning still sounds once). A camera whose monitor falls silent is
    logged and no longer warned of."""
    from crashwatch.alarm.control import ControlSocket
    from crashwatch.alarm.run import run_alarm
    from crashwatch.alarm.unit import MQTT_SILENT_S, SILENT_S, Alarm, AlarmPolicy
    from crashwatch.monitor.serving.signals import stop_on_signals

    if endpoint is not None and mqtt_url is not None:
        raise click.UsageError("--connect and --mqtt are two ways to hear the monitors: give one")
    if mqtt_url is None and (mqtt_password_file or mqtt_ca or mqtt_prefix != "crashwatch"):
        raise click.UsageError("--mqtt-prefix, --mqtt-password-file and --mqtt-ca need --mqtt URL")
    if (curve_server_key is None) != (curve_secret is None) or (curve_secret is not None and mqtt_url is not None):
        raise click.UsageError("--curve-server-key and --curve-secret go together, with --connect")
    policy = AlarmPolicy(cooldown_s=cooldown, repeat_s=repeat, silent_s=MQTT_SILENT_S if mqtt_url else SILENT_S,
                         hooks={Level(name): [command for on, command in hooks if on == name] for name, _ in hooks})
    holder: list[Alarm] = []
    sounds, output = _open(device, wav, voice, say, lambda sounding, at: holder[0].started(sounding, at))
    alarm = Alarm(sounds, output, policy)
    holder.append(alarm)
    reader = _reader(endpoint or DEFAULT_ENDPOINT, mqtt_url, mqtt_prefix, mqtt_password_file, mqtt_ca, camera,
                     curve_server_key, curve_secret)
    controls = ControlSocket(control, alarm)
    stop = stop_on_signals()
    where = f"MQTT {reader.target.display} ({mqtt_prefix}/{camera or '+'})" if mqtt_url else endpoint or DEFAULT_ENDPOINT
    log.info("alarm on %s, listening to %s for %s; mute with `crashwatch alarm mute MINUTES --control %s`",
             output.name, where, f"camera {camera}" if camera else "every camera", control)
    try:
        run_alarm(reader, alarm, controls, camera, stop)
    finally:
        reader.close()
        controls.close()
        output.close()


def _reader(endpoint: str, mqtt_url: str | None, prefix: str, password_file: Path | None, ca: Path | None,
            camera: str | None, server_key: Path | None, secret: Path | None):  # type: ignore[no-untyped-def]
    if mqtt_url is None:
        from crashwatch.monitor.transports.curve import ClientCurve
        from crashwatch.monitor.transports.subscribe import Subscriber

        curve = ClientCurve(server_key, secret) if server_key is not None and secret is not None else None
        return Subscriber(endpoint, ("level", "status"), curve=curve)
    from crashwatch.monitor.transports.mqtt_subscribe import MqttSubscriber
    from crashwatch.monitor.transports.mqtt_target import MqttTarget

    return MqttSubscriber(MqttTarget.parse(mqtt_url, password_file, ca), prefix, ("level", "status"), camera or "+",
                          "alarm")


@alarm_group.command("mute")
@click.argument("minutes", type=Finite(min=0, max=1440))
@click.option("--control", default=DEFAULT_CONTROL, show_default=True, help="The running alarm's --control.")
def mute_command(minutes: float, control: str) -> None:
    """Silence a running alarm's cautions and repeats for MINUTES (0 unmutes); an imminent warning still
    sounds once."""
    from crashwatch.alarm.control import ask

    answer = ask(control, {"mute": minutes * 60})
    until = answer.get("muted_until")
    click.echo(f"muted until {time.strftime('%H:%M:%S', time.localtime(until))}" if until else "unmuted")


@alarm_group.command("check")
@_output_options
def check_command(device: str | None, wav: Path | None, voice: bool, say: tuple[tuple[str, str], ...]) -> None:
    """Play each level's sound once on the output, to check the speaker, and say how long the output took to
    take each one's first sample."""
    from crashwatch.alarm.sounds import RATE

    handed: dict[str, float] = {}
    sounds, output = _open(device, wav, voice, say, lambda tag, at: handed.__setitem__(tag, at))
    try:
        for level, samples in sounds.items():
            asked = time.time()
            output.play(samples, level.value)
            time.sleep(len(samples) / RATE + 0.3)
            took = handed.get(level.value)
            if took is None:
                raise click.ClickException(f"{output.name} took no sample of the {level.value} sound: is it "
                                           "working?")
            click.echo(f"{level.value}: {len(samples) / RATE:.2f} s of sound on {output.name}, first sample taken "
                       f"{(took - asked) * 1000:.1f} ms after it was asked for")
    finally:
        output.close()


COMMANDS = (alarm_group,)
