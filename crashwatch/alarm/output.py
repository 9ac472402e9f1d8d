"""Where the alarm's sounds go: the system's audio output through PortAudio (``sounddevice``), or a WAV file.

The device stream is opened at start and kept open, so a warning waits for no device: ``play`` hands the
samples to the stream's callback, which starts them in its next block (256 samples, 5 ms at 48 kHz) and notes
the wall-clock time its first sample went to the device, the end of the latency the bench measures. A newer
sound replaces the one playing (an imminent warning cuts a caution short).
"""

from __future__ import annotations

import logging
import threading
import time
import wave
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from crashwatch.alarm.sounds import RATE
from crashwatch.contract.errors import CrashwatchError

log = logging.getLogger(__name__)

BLOCK = 256  # samples per callback: the most a new sound waits for the device
# A stream's first callbacks come with a pause of up to 2 s (PulseAudio starting the sink): the unit waits for
# this many at the stream's pace before it counts as ready, so a warning never meets that pause.
STEADY_BLOCKS = 20
READY_TIMEOUT_S = 5.0


class OutputError(CrashwatchError):
    """No audio output can be opened; the message names the device and what there is."""


Started = Callable[[Any, float], None]  # (the sound's tag, wall clock of its first sample handed to the output)


class Output(Protocol):
    """Plays sounds without waiting for them; ``on_started`` hears when each one's first sample went out."""

    name: str

    def play(self, samples: np.ndarray, tag: Any) -> None: ...

    def close(self) -> None: ...


class DeviceOutput:
    """An open PortAudio output stream on ``device`` (None: the system's default)."""

    def __init__(self, device: str | int | None, on_started: Started, rate: int = RATE) -> None:
        try:
            import sounddevice
        except OSError as err:  # the package is there, the PortAudio library is not
            raise OutputError(f"no audio library: {err} (Debian/Ubuntu: apt install libportaudio2), or give --wav "
                              "FILE to write the sounds to a file") from None
        self.on_started = on_started
        self.name = f"audio device {device if device is not None else 'default'}"
        self._lock = threading.Lock()
        self._pending: tuple[np.ndarray, Any] | None = None
        self._playing: np.ndarray | None = None
        self._position = 0
        self._steady, self._last_fill = 0, 0.0
        self._ready = threading.Event()
        self._block_s = BLOCK / rate
        try:
            self._stream = sounddevice.OutputStream(samplerate=rate, blocksize=BLOCK, channels=1, dtype="float32",
                                                    device=device, latency="low", callback=self._fill)
            self._stream.start()
        except (sounddevice.PortAudioError, ValueError) as err:
            devices = ", ".join(f"{d['index']}: {d['name']}" for d in sounddevice.query_devices()
                                if d["max_output_channels"] > 0) or "none"
            raise OutputError(f"cannot open the {self.name} ({err}); output devices: {devices}") from None
        if not self._ready.wait(READY_TIMEOUT_S):
            self.close()
            raise OutputError(f"the {self.name} opened but took no steady sound within {READY_TIMEOUT_S:g} s: is "
                              "the sound server running and the device present?")

    def play(self, samples: np.ndarray, tag: Any) -> None:
        with self._lock:
            self._pending = (samples, tag)

    def _fill(self, out: np.ndarray, frames: int, when: Any, status: Any) -> None:
        """PortAudio's callback, on its own thread: the next block of the sound playing, or silence."""
        now = time.monotonic()
        if not self._ready.is_set():
            self._steady = self._steady + 1 if now - self._last_fill < 3 * self._block_s else 0
            self._last_fill = now
            if self._steady >= STEADY_BLOCKS:
                self._ready.set()
        started = None
        with self._lock:
            if self._pending is not None:
                (self._playing, started), self._position = self._pending, 0
                self._pending = None
            sound, at = self._playing, self._position
            if sound is not None:
                n = min(frames, len(sound) - at)
                out[:n, 0] = sound[at:at + n]
                out[n:, 0] = 0.0
                self._position = at + n
                if self._position >= len(sound):
                    self._playing = None
            else:
                out.fill(0.0)
        if started is not None:
            self.on_started(started, time.time())

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()


class WavOutput:
    """Writes each sound, in order, into one WAV file (16-bit mono): for a machine without speakers, and for
    keeping what a unit said. A sound's first sample counts as handed out once it is written."""

    def __init__(self, path: Path, on_started: Started, rate: int = RATE) -> None:
        self.on_started = on_started
        self.name = f"file {path}"
        try:
            self._wav = wave.open(str(path), "wb")
        except OSError as err:
            raise OutputError(f"{path}: cannot write the sounds there ({err.strerror or err})") from None
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(rate)
        self._lock = threading.Lock()

    def play(self, samples: np.ndarray, tag: Any) -> None:
        with self._lock:
            self._wav.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
        self.on_started(tag, time.time())

    def close(self) -> None:
        with self._lock:
            self._wav.close()
