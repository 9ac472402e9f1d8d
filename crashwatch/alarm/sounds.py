"""The alarm's sounds, rendered once at start so that nothing is synthesised on the warning path.

Each level has a tone pattern in the grades in-cab units use (BADAS beeps at 600 Hz for its lower level and
1000 Hz for its upper): ``caution`` two 600 Hz beeps, ``imminent`` four fast 1000 Hz beeps, and optionally a
short spoken phrase after them from espeak-ng, an offline speech engine (Debian's ``espeak-ng``), rendered to
memory at start.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from dataclasses import dataclass

import numpy as np

from crashwatch.contract.errors import CrashwatchError
from crashwatch.monitor.messages import Level

RATE = 48000  # samples per second of every sound and of the output
ESPEAK = "espeak-ng"
RAMP_S = 0.005  # each beep fades in and out over this long: no click


class SoundError(CrashwatchError):
    """A sound cannot be rendered (espeak-ng missing or failing); the message names what to install or fix."""


@dataclass(frozen=True)
class Pattern:
    """Beeps of one pitch: ``count`` of ``beep_s`` each, ``gap_s`` apart."""

    hz: float
    count: int
    beep_s: float
    gap_s: float

    def render(self, rate: int = RATE) -> np.ndarray:
        beep_n, gap_n = int(self.beep_s * rate), int(self.gap_s * rate)
        t = np.arange(beep_n) / rate
        envelope = np.minimum(1.0, np.minimum(t, self.beep_s - t) / RAMP_S)
        beep = np.sin(2 * np.pi * self.hz * t) * envelope
        gap = np.zeros(gap_n)
        pieces = [piece for _ in range(self.count) for piece in (beep, gap)][:-1]
        return np.concatenate(pieces).astype(np.float32)


PATTERNS = {Level.CAUTION: Pattern(600.0, 2, 0.12, 0.08), Level.IMMINENT: Pattern(1000.0, 4, 0.08, 0.05)}
WORDS = {Level.CAUTION: "Caution", Level.IMMINENT: "Brake!"}


def render_sounds(words: dict[Level, str] | None, rate: int = RATE) -> dict[Level, np.ndarray]:
    """Each sounding level's samples (mono float32 in [-1, 1]): its tones, then its words where ``words`` names
    some (None: tones only)."""
    sounds = {}
    for level, pattern in PATTERNS.items():
        parts = [pattern.render(rate)]
        if words and words.get(level):
            parts += [np.zeros(int(0.1 * rate), np.float32), speak(words[level], rate)]
        sounds[level] = np.concatenate(parts)
    return sounds


def speak(text: str, rate: int = RATE) -> np.ndarray:
    """``text`` spoken by espeak-ng, resampled to ``rate``; SoundError where espeak-ng is missing or fails."""
    program = shutil.which(ESPEAK)
    if program is None:
        raise SoundError(f"spoken words need {ESPEAK}, which is not installed (Debian/Ubuntu: apt install "
                         f"{ESPEAK}); or leave out --voice for tones only")
    try:
        done = subprocess.run([program, "--stdout", text], capture_output=True, timeout=30, check=True)
    except subprocess.CalledProcessError as err:
        raise SoundError(f"{ESPEAK} failed on {text!r}: {err.stderr.decode(errors='replace').strip()}") from None
    except subprocess.TimeoutExpired:
        raise SoundError(f"{ESPEAK} took over 30 s on {text!r}") from None
    with wave.open(io.BytesIO(done.stdout)) as wav:
        if wav.getsampwidth() != 2:
            raise SoundError(f"{ESPEAK} wrote {8 * wav.getsampwidth()}-bit audio; 16-bit expected")
        source_rate, raw = wav.getframerate(), wav.readframes(wav.getnframes())
        channels = wav.getnchannels()
    samples = np.frombuffer(raw, "<i2").reshape(-1, channels).mean(axis=1) / 32768.0
    n = int(round(len(samples) * rate / source_rate))
    return np.interp(np.arange(n) * source_rate / rate, np.arange(len(samples)), samples).astype(np.float32)
