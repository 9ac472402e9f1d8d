"""The alarm's latency (``crashwatch bench --alarm-latency``): from the capture of the newest frame of the window
that changed the warning level to the first sample the alarm handed to the audio output, end to end through a
real monitor process (the demo bundle on the demo drive, looped in real time), a real subscriber and a real
transport: ZeroMQ, and MQTT through a Mosquitto started here (where one is installed). Each sounding is split
into the monitor's part (capture to the level message sent: the model) and what the warning adds on top of it
(sent to the first sample: transport, alarm, audio). The caution threshold is set low, so the level changes
often; the path a change takes does not depend on why it changed."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from crashwatch.alarm.output import DeviceOutput, Output, OutputError, WavOutput
from crashwatch.alarm.run import Reader, run_alarm
from crashwatch.alarm.sounds import render_sounds
from crashwatch.alarm.unit import Alarm, AlarmPolicy, Sounding
from crashwatch.bench.process import REPO, free_endpoint, free_port
from crashwatch.monitor.transports.mqtt_subscribe import MqttSubscriber
from crashwatch.monitor.transports.mqtt_target import MqttTarget
from crashwatch.monitor.transports.subscribe import Subscriber

MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
CAUTION_ON = "0.002"  # the demo model's median risk on normal driving is 0.0003: crossed many times a minute


@dataclass
class Listener:
    """One transport's alarm, run in a thread of its own."""

    name: str
    alarm: Alarm
    reader: Reader
    thread: threading.Thread | None = None


class _Broker:
    """A Mosquitto on a loopback port of its own, persistence off."""

    def __init__(self, folder: Path) -> None:
        assert MOSQUITTO is not None
        self.port = free_port()
        config = folder / "mosquitto.conf"
        config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within 10 s")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(5)


def _output(on_started: Callable[[Any, float], None], folder: Path, name: str) -> Output:
    """The system's default audio output where there is one, else a WAV file (said in the report)."""
    try:
        return DeviceOutput(None, on_started)
    except OutputError:
        return WavOutput(folder / f"{name}.wav", on_started)


def _listener(name: str, reader: Reader, folder: Path) -> Listener:
    holder: list[Alarm] = []
    output = _output(lambda sounding, at: holder[0].started(sounding, at), folder, name)
    alarm = Alarm(render_sounds(None), output, AlarmPolicy(cooldown_s=0.0, repeat_s=0.0))
    holder.append(alarm)
    return Listener(name, alarm, reader)


def measure(bundle: Path, drive: Path, minutes: float) -> tuple[dict[str, list[Sounding]], dict[str, str]]:
    """The soundings each transport's alarm made, and the output each used."""
    folder = Path(tempfile.mkdtemp(prefix="crashwatch-alarm-bench-"))
    endpoint = free_endpoint()
    broker = _Broker(folder) if MOSQUITTO is not None else None
    listeners = [_listener("ZeroMQ", Subscriber(endpoint, ("level", "status")), folder)]
    args = [sys.executable, "-m", "crashwatch", "-q", "monitor", "--bundle", str(bundle), "--source", str(drive),
            "--loop", "--pub", endpoint, "--caution-on", CAUTION_ON, "--caution-off", CAUTION_ON]
    if broker is not None:
        mqtt = f"mqtt://127.0.0.1:{broker.port}"
        args += ["--mqtt", mqtt, "--mqtt-outbox", str(folder / "outbox.sqlite"), "--mqtt-discovery", "off"]
        listeners.append(_listener("MQTT (Mosquitto)", MqttSubscriber(
            MqttTarget.parse(mqtt), "crashwatch", ("level", "status"), client_name="bench"), folder))
    stop = threading.Event()
    for listener in listeners:
        listener.thread = threading.Thread(target=run_alarm, args=(listener.reader, listener.alarm, None, None, stop),
                                           daemon=True)
        listener.thread.start()
    monitor = subprocess.Popen(args, cwd=REPO, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + minutes * 60
        while time.monotonic() < end and monitor.poll() is None:
            time.sleep(0.5)
    finally:
        monitor.send_signal(signal.SIGTERM)
        monitor.wait(20)
        time.sleep(0.5)
        stop.set()
        for listener in listeners:
            assert listener.thread is not None
            listener.thread.join(5)
            listener.reader.close()
            listener.alarm.output.close()
        if broker is not None:
            broker.stop()
    shutil.rmtree(folder, ignore_errors=True)
    return ({listener.name: list(listener.alarm.soundings) for listener in listeners},
            {listener.name: listener.alarm.output.name for listener in listeners})


def _percentiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    a = np.asarray(values)
    return f"{np.percentile(a, 50):.0f} / {np.percentile(a, 99):.0f} / {a.max():.0f}"


def table(soundings: dict[str, list[Sounding]], outputs: dict[str, str], machine: str, minutes: float) -> str:
    lines = [f"Alarm latency ({machine}; the demo bundle on the demo drive looped in real time for {minutes:g} min, "
             f"caution at {CAUTION_ON}), ms, p50 / p99 / max:", "",
             "| transport | output | level changes sounded | capture to first sample | the monitor's part (capture "
             "to sent) | on top of it (sent to first sample) |", "| --- | --- | --- | --- | --- | --- |"]
    for name, heard in soundings.items():
        done = [s for s in heard if s.started_at is not None and s.captured_at is not None and s.repeat == 0]
        total = [(s.started_at - s.captured_at) * 1000 for s in done if s.started_at and s.captured_at]
        model = [(s.sent_at - s.captured_at) * 1000 for s in done if s.captured_at]
        extra = [(s.started_at - s.sent_at) * 1000 for s in done if s.started_at]
        lines.append(f"| {name} | {outputs[name]} | {len(done)} | {_percentiles(total)} | {_percentiles(model)} | "
                     f"{_percentiles(extra)} |")
    if MOSQUITTO is None:
        lines.append("\nMQTT not measured: mosquitto is not installed here.")
    return "\n".join(lines) + "\n"
