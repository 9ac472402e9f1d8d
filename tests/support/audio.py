"""A real PulseAudio sound server with a null sink, for the alarm's tests: what a program plays to it is
recorded from the sink's monitor source (``parec``), so a test hears what was played. The server runs as a
user daemon of its own (its socket under the test's folder); ``env`` points a child process's PortAudio at it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

SINK = "crashwatch_test"
RATE = 48000


def need_audio() -> None:
    missing = [tool for tool in ("pulseaudio", "pactl", "parec") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (Debian: apt-get install pulseaudio pulseaudio-utils "
                    "libportaudio2)")
    try:
        import sounddevice  # noqa: F401
    except OSError as err:
        pytest.skip(f"PortAudio is not installed ({err}; Debian: apt-get install libportaudio2)")


class SoundServer:
    """``start`` runs the daemon with the null sink as its default; ``record`` captures what reaches it."""

    def __init__(self, folder: Path) -> None:
        need_audio()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.socket = folder / "native"
        self.env = {**os.environ, "PULSE_SERVER": f"unix:{self.socket}", "PULSE_SINK": SINK,
                    "XDG_RUNTIME_DIR": str(folder), "HOME": str(folder)}
        self._daemon: subprocess.Popen | None = None
        self._recorder: subprocess.Popen | None = None
        self._recording: Path | None = None

    def start(self) -> "SoundServer":
        self._daemon = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit", "--use-pid-file=no",
             "-L", f"module-native-protocol-unix socket={self.socket} auth-anonymous=1",
             "-L", f"module-null-sink sink_name={SINK}"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while subprocess.run(["pactl", "info"], env=self.env, capture_output=True).returncode != 0:
            if self._daemon.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.skip(f"pulseaudio did not start: {self._daemon.stderr.read() if self._daemon.stderr else ''}")
            time.sleep(0.1)
        subprocess.run(["pactl", "set-default-sink", SINK], env=self.env, check=True, capture_output=True)
        return self

    def record(self) -> None:
        self._recording = self.folder / "heard.raw"
        self._recorder = subprocess.Popen(
            ["parec", "-d", f"{SINK}.monitor", "--raw", "--format=s16le", f"--rate={RATE}", "--channels=1",
             "--latency-msec=20"], env=self.env, stdout=self._recording.open("wb"), stderr=subprocess.DEVNULL)

    def heard(self) -> np.ndarray:
        """What reached the sink since ``record``, as float samples at ``RATE``."""
        assert self._recording is not None, "record() first"
        return np.frombuffer(self._recording.read_bytes(), "<i2").astype(np.float32) / 32768.0

    def stop(self) -> None:
        for process in (self._recorder, self._daemon):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()


def loudest_hz(samples: np.ndarray, rate: int = RATE) -> float:
    """The frequency of the strongest component of ``samples``."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def sounding_stretches(samples: np.ndarray, rate: int = RATE, floor: float = 0.05, gap_s: float = 0.25
                       ) -> list[tuple[int, int]]:
    """(start, end) sample indices of the stretches louder than ``floor``, merging pauses under ``gap_s``."""
    loud = np.flatnonzero(np.abs(samples) > floor)
    if not loud.size:
        return []
    breaks = np.flatnonzero(np.diff(loud) > gap_s * rate)
    starts = np.concatenate([[loud[0]], loud[breaks + 1]])
    ends = np.concatenate([loud[breaks], [loud[-1]]])
    return list(zip(starts.tolist(), ends.tolist()))
