"""Many cameras in one process, one model: each camera is the single-camera ``Monitor`` (its own capture,
prefetcher, window cache, alert tracker, recording and seq numbers), all calling one bundle whose graphs
batch what arrives together (``crashwatch.monitor.engines.batching``), all publishing on one socket through
channels of their own.

A camera that goes offline, stalls or sends 4K frames only holds up its own threads: capture and
preprocessing are per camera, and the shared graphs serve calls in arrival order, so under overload every
camera's effective stride grows alike and none starves. A camera whose file ends stops alone; a signal stops
them all. One camera (``crashwatch monitor --source``) is a fleet of one: its calls are not batched and there
is no process heartbeat.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

from crashwatch.contract.errors import CrashwatchError
from crashwatch.monitor.engines.batching import BatchingGraph, batching_engine
from crashwatch.monitor.engines.local import Runtime
from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.messages import Outlet, ProcessStatus, Status
from crashwatch.monitor.pipeline.camera import Monitor
from crashwatch.monitor.pipeline.options import PROCESS_CAMERA, MonitorOptions
from crashwatch.monitor.transports.zeromq import Publisher, Sink

log = logging.getLogger(__name__)


def resident_mb(pid: int | str = "self") -> float | None:
    """A process's resident memory (Linux; this process by default), None where it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class Fleet:
    """Runs one ``Monitor`` per camera on a shared model and publisher until every camera ends or ``stop``."""

    def __init__(self, model: RiskModel, cameras: Sequence[MonitorOptions], publisher: Publisher,
                 sinks_for: Callable[[str], list[Sink]] = lambda camera: [],
                 stop: threading.Event | None = None) -> None:
        self.model = model
        self.stop = stop or threading.Event()
        self.graphs: list[BatchingGraph] = []
        many = len(cameras) > 1
        # Batching joins the calls of several cameras (a Triton server batches them itself); one camera's
        # prefetch and head calls run side by side, as they would alone.
        if many and model.engine.runtime is not Runtime.TRITON:
            model.engine, self.graphs = batching_engine(model.engine)
        self.publisher = publisher
        self.monitors: list[Monitor] = []

        def outlet(camera: str) -> Callable[[Callable[[], Status]], Outlet]:
            return lambda status: publisher.channel(camera, status, sinks_for(camera))

        for options in cameras:
            try:
                self.monitors.append(Monitor(model, options, outlet(options.camera), stop=threading.Event()))
            except CrashwatchError as err:  # say which camera's settings are wrong
                if not many:
                    raise
                raise type(err)(f"camera {options.camera}: {err}") from None
        self.identity = self.monitors[0].identity if self.monitors else None
        # The process's own heartbeat (memory, batches) is for a fleet; one camera's status says it all.
        self.channel = publisher.channel(PROCESS_CAMERA, self.process_status) if many else None

    def process_status(self) -> ProcessStatus:
        cameras = {}
        for monitor in self.monitors:
            stats = monitor.stats
            cameras[monitor.options.camera] = {
                "state": monitor.capture.stats.state, "strides": stats.strides, "strides_skipped": stats.skipped,
                "effective_stride_s": stats.effective_stride_s}
        return ProcessStatus(cameras=cameras, batches={g.name: g.stats() for g in self.graphs}, memory_mb=resident_mb(),
                             model=self.identity)

    def run(self) -> dict[str, dict[str, Any]]:
        """Every camera's ``Monitor.summary``, by name, once all have stopped."""
        summaries: dict[str, dict[str, Any]] = {}
        errors: dict[str, BaseException] = {}

        def watch(monitor: Monitor) -> None:
            try:
                summaries[monitor.options.camera] = monitor.run()
            except BaseException as err:  # one camera's failure is reported; the others go on
                log.error("camera %s stopped: %s", monitor.options.camera, err)
                errors[monitor.options.camera] = err

        threads = [threading.Thread(target=watch, args=(m,), name=f"camera-{m.options.camera}") for m in self.monitors]
        for thread in threads:
            thread.start()
        relay = threading.Thread(target=self._relay_stop, name="fleet-stop", daemon=True)
        relay.start()
        try:
            for thread in threads:
                thread.join()
        finally:
            self.stop.set()
            if self.channel is not None:
                self.channel.close()
            for graph in self.graphs:
                graph.close()
        for camera, err in errors.items():
            summaries[camera] = {"strides": 0, "strides_skipped": 0, "alerts": 0, "frames": 0, "frames_dropped": 0,
                                 "source_state": "failed", "source_error": str(err)}
        return summaries

    def _relay_stop(self) -> None:
        """A stop of the whole process (a signal) stops every camera."""
        self.stop.wait()
        for monitor in self.monitors:
            monitor.stop.set()
