"""Vision passes ahead of the head: the frames a coming window takes are encoded as they arrive.

Windows end on a grid of ``stride`` seconds anchored to the stream clock, so a window's frames sit at nominal
times known in advance, and the frame for each is fixed the moment a frame at or past that time arrives. This
thread encodes it then, in parallel with the query loop's head pass over an earlier window, and marks a window
complete once its last frame is encoded; the loop scores the newest complete window. A head slower than the
stride so lengthens the effective stride by whole strides, and consecutive windows still share frames, instead
of every window starting over. Vision slower than the frame spacing cannot keep up with every frame: live, the
next window is then one that has not begun yet, its frames encoded as each arrives, so a window is scored
about one vision pass plus its frames' backlog after its last frame, ``v + (F - 1)(v - d)`` for F frames
spaced d and a pass of v seconds, instead of all F passes after it; latency stays bounded under overload and
the effective stride is about ``F v``. A vision call that fails for a reason that may pass (``EngineError``: a
Triton server away) is retried after a pause; live, the retry is for the newest window by then, so the windows
in between are skipped strides.
"""

from __future__ import annotations

import logging
import statistics
import threading

from crashwatch.contract.window import EPSILON, WindowSpec, arrived, grid_at_or_after, grid_at_or_before, pick_frame
from crashwatch.monitor.engines.local import EngineError
from crashwatch.monitor.frame import Frame
from crashwatch.monitor.pipeline.buffer import FrameBuffer
from crashwatch.monitor.pipeline.scorer import WindowScorer

log = logging.getLogger(__name__)

RETRY_S = 0.5  # pause after a failed vision call (the scorer counts it for status)


def first_window_end(since: float, stride: float) -> float:
    """The first grid point at or after ``since``: windows are scored from the stream's first frame on, those
    shorter than the window padded with their first frame as training pads short clips."""
    return grid_at_or_after(since, stride)


class WindowPrefetcher(threading.Thread):
    """Encodes the frames of coming windows as they arrive and says which window is complete.

    With ``paced`` (replay as fast as inference allows) every window on the grid is completed in turn; live, the
    next window is the newest whose last frame has arrived, so a prefetcher that fell behind catches up at once.
    """

    def __init__(self, buffer: FrameBuffer, scorer: WindowScorer, window: WindowSpec, stride: float,
                 stop: threading.Event, paced: bool) -> None:
        super().__init__(name="prefetch", daemon=True)
        self.buffer = buffer
        self.scorer = scorer
        self.window = window
        self.stride = stride
        self.stop_event = stop
        self.paced = paced
        self._cond = threading.Condition()
        # The newest window whose frames are all encoded: its end and the frames it takes (kept here, as the
        # buffer may drop them before a slow head gets to the window).
        self._complete: tuple[float, list[Frame]] | None = None
        self._finished = False
        self.error: BaseException | None = None

    def ready_after(self, end: float, timeout: float) -> tuple[float, list[Frame]] | None:
        """The newest complete window (its end and frames), once one ending at or after ``end`` is; None if none
        is within ``timeout`` seconds or the prefetcher has finished (``finished`` tells which)."""
        def ready() -> bool:
            return self._complete is not None and self._complete[0] >= end - EPSILON

        with self._cond:
            self._cond.wait_for(lambda: self._finished or ready(), timeout)
            return self._complete if ready() else None

    @property
    def finished(self) -> bool:
        with self._cond:
            return self._finished

    def run(self) -> None:
        try:
            self._run()
        except BaseException as err:  # the query loop reports it; a vanished prefetcher would stall the monitor
            log.exception("prefetching frames failed")
            self.error = err
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def _vision_behind(self) -> bool:
        """Whether recent vision passes take longer than the window's frame spacing."""
        recent = list(self.scorer.vision_ms)[-8:]
        return len(recent) >= 4 and statistics.median(recent) / 1000 > self.window.spacing

    def _run(self) -> None:
        since: float | None = None
        done: float | None = None  # the last window this prefetcher completed, since ``since``
        ahead: float | None = None  # live, vision behind: the window being encoded as its frames arrive
        fixed: tuple[float, list[Frame]] | None = None  # a window's end and the frames it has taken so far
        while not self.stop_event.is_set():
            current = self.buffer.since
            if current is None:
                if self.buffer.closed:
                    return
                self.buffer.wait_until(float("-inf"), 0.2)
                continue
            if current != since:  # the first frame, or the first after an outage: windows start over
                since, done, ahead, fixed = current, None, None, None
                self._set_complete(None)
            target = first_window_end(since, self.stride) if done is None else done + self.stride
            frames = self.buffer.snapshot()
            if not frames or self.buffer.since != since:
                continue
            newest = frames[-1].t
            if not self.paced and ahead is not None:
                target = ahead
            elif not self.paced:
                target = max(target, grid_at_or_before(newest, self.stride))
                if self._vision_behind():  # the next window not begun yet: each frame encoded as it comes
                    target = ahead = max(target, grid_at_or_after(newest + self.window.seconds, self.stride))
            times = [f.t for f in frames]
            waiting_for = None
            # The frames this window already took stay its own while it waits for the rest (the buffer may drop
            # them meanwhile).
            taken = list(fixed[1]) if fixed is not None and fixed[0] == target else []
            try:
                for nominal in self.window.nominal_times(target)[len(taken):]:
                    if not arrived(nominal, newest):
                        waiting_for = nominal
                        break
                    taken.append(frames[pick_frame(times, nominal)])
                    self.scorer.encode(taken[-1])
            except EngineError:
                self.stop_event.wait(RETRY_S)
                continue
            fixed = (target, taken)
            if waiting_for is None:
                done, ahead = target, None
                self._set_complete((target, taken))
            elif not self.buffer.wait_until(waiting_for, 0.2) and self.buffer.closed:
                return  # the file ended before this window did

    def _set_complete(self, window: tuple[float, list[Frame]] | None) -> None:
        with self._cond:
            self._complete = window
            self._cond.notify_all()
