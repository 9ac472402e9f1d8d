"""The in-cab unit's rules: which level change sounds, when it repeats, what a mute silences, which hook runs.

A rise to ``caution`` sounds the caution, unless one sounded for that camera within the cooldown or the unit is
muted. A rise to ``imminent`` always sounds, muted or not (as a car's forward-collision warning cannot be
switched off); while it lasts it repeats every ``repeat_s``, one step louder each time, unless muted. A camera
whose monitor falls silent (no heartbeat for ``silent_s``) stops repeating and is logged as lost: a unit must
not keep warning of a state it no longer knows. Each level's hook runs on every change to that level, muted or
not (an LED or a relay is not noise).
"""

from __future__ import annotations

import collections
import logging
import os
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crashwatch.alarm.output import Output
from crashwatch.monitor.messages import Level, LevelChange, Message

log = logging.getLogger(__name__)

SILENT_S = 3.0  # a monitor sends status every second over ZeroMQ: three missed heartbeats is a monitor gone
MQTT_SILENT_S = 12.0  # over MQTT its status comes every 5 s: two missed, and some slack
FRESH_S = 2.0  # a replayed change younger than this is sounded: its live copy was lost as this unit subscribed
GAINS = (0.6, 0.8, 1.0)  # the imminent sound's loudness at its first sounding and each repeat after
KEEP_SOUNDINGS = 1000  # the newest soundings kept (for the bench): a unit runs for days


@dataclass(frozen=True)
class AlarmPolicy:
    cooldown_s: float = 5.0  # a caution does not sound again for the same camera within this
    repeat_s: float = 2.0  # an imminent warning repeats this often while it lasts (0: never)
    hooks: dict[Level, list[str]] = field(default_factory=dict)  # commands run on each change to the level
    silent_s: float = SILENT_S  # a camera heard of for longer than this is lost (MQTT's status comes every 5 s)


@dataclass
class Sounding:
    """One sound the unit played: for its log and the latency bench."""

    camera: str
    level: Level
    repeat: int  # 0 for the sounding of the change itself
    captured_at: float | None  # the capture of the newest frame of the window that changed the level
    sent_at: float  # when the monitor sent the change
    started_at: float | None = None  # the first sample handed to the output (set once it is)


@dataclass
class _Camera:
    level: Level = Level.NONE
    heard_at: float = 0.0  # monotonic
    caution_sounded_at: float = -1e9  # monotonic
    imminent_since: float | None = None  # monotonic
    repeats: int = 0
    change: LevelChange | None = None
    sent_at: float = 0.0
    gone: bool = False  # its monitor said it went (MQTT's last will); a retained state of it is old


class Alarm:
    """Takes the monitors' messages (``take``), sounds through ``output``; ``tick`` drives repeats and silence."""

    def __init__(self, sounds: dict[Level, np.ndarray], output: Output, policy: AlarmPolicy) -> None:
        self.sounds = sounds
        self.output = output
        self.policy = policy
        self.cameras: dict[str, _Camera] = {}
        self.soundings: collections.deque[Sounding] = collections.deque(maxlen=KEEP_SOUNDINGS)
        self._muted_until = 0.0  # wall clock
        self._lock = threading.Lock()
        self._hooks: list[subprocess.Popen] = []  # running, reaped by ``tick``

    # -- controls -----------------------------------------------------------------------------------------

    def mute(self, seconds: float) -> float:
        """Silence cautions and repeats for ``seconds`` from now (0: unmute); returns when the mute ends."""
        with self._lock:
            self._muted_until = time.time() + seconds if seconds > 0 else 0.0
            until = self._muted_until
        log.warning("alarm %s", f"muted for {seconds:g} s" if seconds > 0 else "unmuted")
        return until

    @property
    def muted(self) -> bool:
        return time.time() < self._muted_until

    def state(self) -> dict[str, Any]:
        return {"muted_until": self._muted_until if self.muted else None,
                "cameras": {name: c.level.value for name, c in self.cameras.items()}}

    # -- messages -----------------------------------------------------------------------------------------

    def take(self, message: Message) -> None:
        """A monitor's message: a level change may sound; any message says the monitor is there."""
        camera = self.cameras.setdefault(message.camera, _Camera())
        if message.replay and camera.gone:
            return
        camera.heard_at, camera.gone = time.monotonic(), False
        if isinstance(message.body, LevelChange):
            self._change(message.camera, camera, message.body, message.sent_at, message.replay)

    def lose(self, name: str, why: str) -> None:
        """The camera's monitor is gone (its MQTT last will): stop warning of it."""
        camera = self.cameras.setdefault(name, _Camera())
        camera.gone = True
        if camera.level is not Level.NONE:
            log.warning("camera %s: %s while at %s; no longer warning of it", name, why, camera.level.value)
            camera.level, camera.imminent_since = Level.NONE, None

    def _change(self, name: str, camera: _Camera, change: LevelChange, sent_at: float, replay: bool) -> None:
        """A change sounds. A replayed one (the state when this unit joined, a retained copy) sounds only when
        fresh (the live copy lost to a subscription just made); an older one is only taken, and an imminent one
        still repeats while its monitor is heard."""
        now = time.monotonic()
        camera.level, camera.change, camera.sent_at = change.level, change, sent_at
        stale = replay and time.time() - sent_at > FRESH_S
        log.info("camera %s: %s -> %s (%s)%s", name, change.previous.value, change.level.value, change.reason,
                 f" [the state when this unit joined, {time.time() - sent_at:.0f} s old]" if stale else "")
        if stale:
            camera.imminent_since, camera.repeats = (now, 0) if change.level is Level.IMMINENT else (None, 0)
            return
        self._hook(name, change)
        if change.level is Level.IMMINENT:
            camera.imminent_since, camera.repeats = now, 0
            self._sound(name, camera, Level.IMMINENT, 0)
            return
        camera.imminent_since = None
        if change.level is Level.CAUTION and change.previous is Level.NONE:
            if self.muted:
                log.info("camera %s: caution not sounded (muted)", name)
            elif now - camera.caution_sounded_at < self.policy.cooldown_s:
                log.info("camera %s: caution not sounded (one sounded %.1f s ago, cooldown %g s)", name,
                         now - camera.caution_sounded_at, self.policy.cooldown_s)
            else:
                camera.caution_sounded_at = now
                self._sound(name, camera, Level.CAUTION, 0)

    def tick(self) -> None:
        """Repeat the imminent sounds due, let go of cameras whose monitor fell silent, reap finished hooks."""
        self._hooks = [hook for hook in self._hooks if hook.poll() is None]
        now = time.monotonic()
        for name, camera in self.cameras.items():
            if camera.level is Level.NONE or camera.heard_at == 0.0:
                continue
            if now - camera.heard_at > self.policy.silent_s:
                log.warning("camera %s: nothing heard for %.0f s while at %s: its monitor is gone or unreachable; "
                            "no longer warning of it", name, now - camera.heard_at, camera.level.value)
                camera.level, camera.imminent_since = Level.NONE, None
                continue
            if camera.imminent_since is None or self.policy.repeat_s <= 0 or self.muted:
                continue
            if now - camera.imminent_since >= self.policy.repeat_s * (camera.repeats + 1):
                camera.repeats += 1
                self._sound(name, camera, Level.IMMINENT, camera.repeats)

    # -- doing ---------------------------------------------------------------------------------------------

    def _sound(self, name: str, camera: _Camera, level: Level, repeat: int) -> None:
        change = camera.change
        sounding = Sounding(name, level, repeat, change.captured_at if change else None, camera.sent_at)
        gain = GAINS[min(repeat, len(GAINS) - 1)] if level is Level.IMMINENT else 1.0
        with self._lock:
            self.soundings.append(sounding)
        self.output.play(self.sounds[level] * gain, sounding)

    def started(self, sounding: Sounding, at: float) -> None:
        """The output's note that ``sounding``'s first sample went out at ``at`` (its ``on_started``)."""
        with self._lock:
            sounding.started_at = at
        if sounding.captured_at is not None and sounding.repeat == 0:
            log.info("camera %s: %s sounded %.0f ms after the capture of the window's newest frame (%.0f ms after "
                     "the monitor sent it)", sounding.camera, sounding.level.value, (at - sounding.captured_at) * 1000,
                     (at - sounding.sent_at) * 1000)

    def _hook(self, name: str, change: LevelChange) -> None:
        for command in self.policy.hooks.get(change.level, []):
            env = {**os.environ, "CRASHWATCH_CAMERA": name, "CRASHWATCH_LEVEL": change.level.value,
                   "CRASHWATCH_PREVIOUS": change.previous.value,
                   "CRASHWATCH_PROBABILITY": "" if change.probability is None else f"{change.probability:.4f}"}
            try:
                self._hooks.append(subprocess.Popen(shlex.split(command), env=env, stdin=subprocess.DEVNULL))
            except OSError as err:
                log.error("camera %s: the %s hook %r could not run: %s", name, change.level.value, command,
                          err.strerror or err)
