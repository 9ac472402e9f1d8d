"""The frames between the capture and the windows: a buffer bounded in time, which a window reads its frames
from and a paced replay waits on."""

from __future__ import annotations

import collections
import threading
import time

from crashwatch.contract.window import grid_at_or_after, pick_frame
from crashwatch.monitor.frame import Frame


class FrameBuffer:
    """The newest frames, at most ``span`` seconds of them, shared between the capture and the query loop.

    ``since`` is the stream time of the first frame after the last ``clear`` (a reconnect): a window must not
    reach back past it. With ``paced`` (replay as fast as inference allows), ``push`` waits while the buffer
    already holds a frame at or past ``demand``, the stream time the query loop needs next, so that no
    stride is ever skipped; a live capture never waits.

    With a ``lattice`` (the window's frame spacing, when every window's nominal frame times lie on multiples of
    it), a frame that no nominal time can pick (a newer one arrived before the next lattice point) is dropped
    as the newer one comes in, so the buffer holds about two frames a lattice step rather than every frame: a
    1080p camera at 30 fps kept 1 GB of frames for a 4 s window otherwise. The first frame of a stream is kept,
    as windows reaching back before it are padded with it.
    """

    def __init__(self, span: float, paced: bool = False, lattice: float | None = None) -> None:
        self.span = span
        self.paced = paced
        self.lattice = lattice
        self.since: float | None = None
        self._first: Frame | None = None
        self._frames: collections.deque[Frame] = collections.deque()
        self._cond = threading.Condition()
        self._demand = float("-inf")
        self.closed = False

    def push(self, frame: Frame) -> None:
        with self._cond:
            while self.paced and not self.closed and self._frames and self._frames[-1].t >= self._demand:
                self._cond.wait(0.1)
            if self.since is None:
                self.since, self._first = frame.t, frame
            elif self.lattice is not None and self._frames and self._frames[-1] is not self._first \
                    and not _picks(self._frames[-1].t, frame.t, self.lattice):
                self._frames.pop()
            self._frames.append(frame)
            while self._frames and frame.t - self._frames[0].t > self.span:
                self._frames.popleft()
            self._cond.notify_all()

    def demand(self, t: float) -> None:
        """The query loop next needs a frame at or after stream time ``t``."""
        with self._cond:
            self._demand = t
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._frames.clear()
            self.since, self._first = None, None

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def snapshot(self) -> list[Frame]:
        with self._cond:
            return list(self._frames)

    def newest_t(self) -> float | None:
        with self._cond:
            return self._frames[-1].t if self._frames else None

    def wait_until(self, t: float, timeout: float) -> bool:
        """Wait until a frame at or after stream time ``t`` is in, or the buffer closes; True if it came."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (self._frames and self._frames[-1].t >= t - 1e-9):
                remaining = deadline - time.monotonic()
                if self.closed or remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True


def _picks(t: float, following: float, lattice: float) -> bool:
    """Whether a frame at ``t`` followed by one at ``following`` is what a window takes for the lattice point at
    or after ``t`` (the contract's rule, ``crashwatch.contract.window``)."""
    return pick_frame([t, following], grid_at_or_after(t, lattice)) == 0
