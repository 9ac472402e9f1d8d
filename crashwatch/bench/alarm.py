"""The alarm's latency (``crashwatch bench --alarm-latency``): from the capture of the newest frame of the window
that changed the warning level to the first sample the alarm handed to the audio output, end to end through a
real monitor process (the demo bundle on the demo drive, looped in real time) and real ``crashwatch alarm run``
processes, one on ZeroMQ and one on MQTT through a Mosquitto started here (where one is installed), read from
the line each alarm logs per sounding. Each is split into the monitor's part (capture to the level message
sent: the model) and what the warning adds on top of it (sent to the first sample: transport, alarm, audio).
The caution threshold is set low, so the level changes often; the path a change takes does not depend on why
it changed."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from crashwatch.alarm.output import DeviceOutput, OutputError
from crashwatch.bench.process import REPO, free_endpoint, free_port

MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
CAUTION_ON = "0.002"  # the demo model's median risk on normal driving is 0.0003: crossed many times a minute
SOUNDED = re.compile(r"camera \S+: (caution|imminent) sounded (\d+) ms after the capture of the window's newest "
                     r"frame \((-?\d+) ms after the monitor sent it\)")


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


class _Alarm(threading.Thread):
    """A ``crashwatch alarm run`` process, its soundings read from its log: (total ms, ms after sent)."""

    def __init__(self, args: list[str]) -> None:
        super().__init__(daemon=True)
        self.process = subprocess.Popen([sys.executable, "-m", "crashwatch", "alarm", "run", "--cooldown", "0",
                                         "--repeat", "0", "--control", f"tcp://127.0.0.1:{free_port()}", *args],
                                        cwd=REPO, stderr=subprocess.PIPE, text=True)
        self.soundings: list[tuple[float, float]] = []
        self.ready = threading.Event()
        self.start()

    def run(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if "alarm on " in line:
                self.ready.set()
            found = SOUNDED.search(line)
            if found:
                self.soundings.append((float(found.group(2)), float(found.group(3))))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.join(5)


def measure(bundle: Path, drive: Path, minutes: float) -> tuple[dict[str, list[tuple[float, float]]], str]:
    """Each transport's soundings, and the output the alarms used."""
    folder = Path(tempfile.mkdtemp(prefix="crashwatch-alarm-bench-"))
    try:
        DeviceOutput(None, lambda tag, at: None).close()
        output, where = [], "the default audio device"
    except OutputError:
        output, where = ["--wav", str(folder / "{name}.wav")], "a WAV file (no audio device here)"
    endpoint = free_endpoint()
    broker = _Broker(folder) if MOSQUITTO is not None else None
    alarms = {"ZeroMQ": _Alarm(["--connect", endpoint, *[o.format(name="zeromq") for o in output]])}
    args = [sys.executable, "-m", "crashwatch", "-q", "monitor", "--bundle", str(bundle), "--source", str(drive),
            "--loop", "--pub", endpoint, "--caution-on", CAUTION_ON, "--caution-off", CAUTION_ON]
    if broker is not None:
        mqtt = f"mqtt://127.0.0.1:{broker.port}"
        args += ["--mqtt", mqtt, "--mqtt-outbox", str(folder / "outbox.sqlite"), "--mqtt-discovery", "off"]
        alarms["MQTT (Mosquitto)"] = _Alarm(["--mqtt", mqtt, *[o.format(name="mqtt") for o in output]])
    monitor = None
    try:
        for alarm in alarms.values():
            alarm.ready.wait(30)
        monitor = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + minutes * 60
        while time.monotonic() < end and monitor.poll() is None:
            time.sleep(0.5)
    finally:
        if monitor is not None:
            monitor.send_signal(signal.SIGTERM)
            monitor.wait(20)
        time.sleep(0.5)
        for alarm in alarms.values():
            alarm.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return {name: alarm.soundings for name, alarm in alarms.items()}, where


def _percentiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    a = np.asarray(values)
    return f"{np.percentile(a, 50):.0f} / {np.percentile(a, 99):.0f} / {a.max():.0f}"


def table(soundings: dict[str, list[tuple[float, float]]], output: str, machine: str, minutes: float) -> str:
    lines = [f"Alarm latency ({machine}; the demo bundle on the demo drive looped in real time for {minutes:g} min, "
             f"caution at {CAUTION_ON}; each alarm a `crashwatch alarm run` process sounding on {output}), ms, "
             "p50 / p99 / max:", "",
             "| transport | level changes sounded | capture to first sample | the monitor's part (capture to sent) "
             "| on top of it (sent to first sample) |", "| --- | --- | --- | --- | --- |"]
    for name, heard in soundings.items():
        lines.append(f"| {name} | {len(heard)} | {_percentiles([t for t, _ in heard])} | "
                     f"{_percentiles([t - extra for t, extra in heard])} | {_percentiles([e for _, e in heard])} |")
    if MOSQUITTO is None:
        lines.append("\nMQTT not measured: mosquitto is not installed here.")
    return "\n".join(lines) + "\n"
