"""systemd's service protocol (``sd_notify``, a datagram to ``$NOTIFY_SOCKET``) for a monitor run as a
``Type=notify`` service with a watchdog (``crashwatch service``).

``READY=1`` goes once the monitor does its job: the first window scored, or every source being retried (a
camera down at boot must not hold the service in "activating" until systemd gives up on it). ``WATCHDOG=1`` goes
every half watchdog period only while every online camera makes progress (a window scored or a stride skipped
within the period, or three strides where those are longer): a model call that never returns or a capture
that hangs on an open connection stops the pings, and systemd restarts the service. A source that is down is
the monitor's own business (it retries and reports it), so it does not stop the pings. Without
``$NOTIFY_SOCKET`` (not under systemd) nothing is sent.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Mapping, Sequence

from crashwatch.monitor.pipeline.camera import Monitor

log = logging.getLogger(__name__)

ONLINE = "online"


class Notifier:
    """Sends notifications to the service manager named by ``env`` (the process's environment by default)."""

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        path = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path  # "@": the abstract namespace
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and mine else None

    @property
    def active(self) -> bool:
        return bool(self.address)

    def send(self, *assignments: str) -> None:
        """``KEY=VALUE`` lines in one datagram; a manager that went away is logged, never raised."""
        if not self.active:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(assignments).encode(), self.address)
        except OSError as err:
            log.warning("cannot notify systemd at %s: %s", os.environ.get("NOTIFY_SOCKET"), err)


class Watchdog(threading.Thread):
    """Tells systemd when ``monitors`` are ready, feeds its watchdog while they make progress, and says it is
    stopping once ``stop`` is set."""

    def __init__(self, notifier: Notifier, monitors: Sequence[Monitor], stop: threading.Event) -> None:
        super().__init__(name="systemd-watchdog", daemon=True)
        self.notifier = notifier
        self.monitors = list(monitors)
        self.stop = stop
        self.period = notifier.watchdog_s
        self._progress = {id(m): (-1, time.monotonic()) for m in self.monitors}  # strides run, when that changed

    def run(self) -> None:
        ready, stalled = False, False
        tick = min(self.period / 2, 1.0) if self.period else 1.0
        while not self.stop.wait(tick):
            now = time.monotonic()
            if not ready and self._ready():
                self.notifier.send("READY=1", f"STATUS={self._summary()}")
                ready = True
            if not ready or not self.period:
                continue
            stuck = self._stuck(now)
            if stuck and not stalled:
                log.error("no progress on %s: systemd's watchdog is no longer fed (the service will be restarted)",
                          ", ".join(stuck))
            stalled = bool(stuck)
            if not stalled:
                self.notifier.send("WATCHDOG=1", f"STATUS={self._summary()}")
        self.notifier.send("STOPPING=1")

    def _ready(self) -> bool:
        states = [m.capture.stats.state for m in self.monitors]
        return any(m.stats.strides for m in self.monitors) or all(s == "reconnecting" for s in states)

    def _stuck(self, now: float) -> list[str]:
        """The online cameras that ran no stride for longer than they may."""
        stuck = []
        for monitor in self.monitors:
            done = monitor.stats.strides + monitor.stats.skipped
            seen, since = self._progress[id(monitor)]
            if done != seen or monitor.capture.stats.state != ONLINE:
                self._progress[id(monitor)] = (done, now)
            elif now - since > max(self.period or 0.0, 3 * monitor.stride):
                stuck.append(f"camera {monitor.options.camera}")
        return stuck

    def _summary(self) -> str:
        return "; ".join(f"{m.options.camera} {m.capture.stats.state}, {m.stats.strides} strides"
                         for m in self.monitors)


def quote(argument: str) -> str:
    """One argument as systemd's ``ExecStart=`` reads it back: quoted where it has spaces or quotes, ``%`` and
    ``$`` doubled so that systemd expands neither."""
    text = argument.replace("%", "%%").replace("$", "$$")
    if text and not any(c in text for c in " \t\"'\\;"):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unit_text(name: str, command: Sequence[str], working_directory: str, watchdog_s: int, user_unit: bool,
              run_as: str | None) -> str:
    """A ``Type=notify`` unit that runs ``command`` in ``working_directory`` (so that its relative paths keep
    their meaning) and restarts it when it fails or stops feeding the watchdog: a user unit (``systemctl
    --user``), or a system one run as ``run_as`` (None: root)."""
    lines = [
        "[Unit]",
        f"Description=crashwatch monitor {name}",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={' '.join(quote(a) for a in command)}",
        f"WorkingDirectory={quote(working_directory)}",
        "Environment=PYTHONUNBUFFERED=1",
        f"WatchdogSec={watchdog_s}",
        "TimeoutStartSec=300",  # the model is loaded and warmed up before READY=1
        "TimeoutStopSec=20",
        "Restart=on-failure",
        "RestartSec=5",
        *([f"User={run_as}"] if run_as and not user_unit else []),
        "",
        "[Install]",
        f"WantedBy={'default.target' if user_unit else 'multi-user.target'}",
    ]
    return "\n".join(lines) + "\n"
