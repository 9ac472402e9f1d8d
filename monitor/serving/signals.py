"""Ctrl-C and SIGTERM as a stop event: the one place the runtime wires signals."""

from __future__ import annotations

import signal
import threading


def stop_on_signals(stop: threading.Event | None = None) -> threading.Event:
    """An event that SIGINT or SIGTERM sets (call from the main thread); loops that wait on it stop at once."""
    stop = stop or threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop
