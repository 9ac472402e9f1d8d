"""One camera's monitor: capture -> sliding window -> risk query every stride -> alerts to its outlet.

Threads: the capture (never waits for the model, except in ``fast`` replay where it waits so that no stride
is skipped), the prefetcher (encodes each coming window's frames as they arrive), the outlet's (a publisher
sends and keeps the one-second status heartbeat), the evidence's writers, and the query loop here, which scores the newest
window the prefetcher completed. Window ends lie on a grid of ``stride`` seconds anchored to the stream clock;
when the model is slower than the stride, the loop scores every second (third...) window: the effective
stride, published with its reason in ``risk`` and ``status``, grows by whole strides and windows still share
frames, so lag never grows and nothing is encoded twice.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from crashwatch.contract.window import EPSILON, WindowSpec
from crashwatch.monitor.engines.local import EngineError
from crashwatch.monitor.engines.model import RiskModel, Timing
from crashwatch.monitor.evidence.clips import EventRecorder
from crashwatch.monitor.evidence.keeper import Evidence, HeldEvidence, NoEvidence, RecordedEvidence
from crashwatch.monitor.evidence.lock import EventLocker
from crashwatch.monitor.evidence.ring import EVENTS_RING, EVENTS_RING_KEEP, LoopRecorder
from crashwatch.monitor.explain.explainer import Explainer
from crashwatch.monitor.explain.regions import StaticMask
from crashwatch.monitor.explain.worker import ExplainWorker
from crashwatch.monitor.frame import Frame
from crashwatch.monitor.messages import Alert, AlertEvent, Explanation, Level, Outlet, Risk, Status
from crashwatch.monitor.pipeline.alerts import AlertPolicy, AlertTracker, alert_starts
from crashwatch.monitor.pipeline.buffer import FrameBuffer
from crashwatch.monitor.pipeline.health import HealthWatch
from crashwatch.monitor.pipeline.levels import CAUTION_FRACTION, RISE_SECONDS, CautionPolicy, LevelTracker
from crashwatch.monitor.pipeline.options import SETTING, MonitorOptions, OptionsError
from crashwatch.monitor.pipeline.prefetch import WindowPrefetcher, first_window_end
from crashwatch.monitor.pipeline.preview import Previewer
from crashwatch.monitor.pipeline.scorer import WindowScore, WindowScorer
from crashwatch.monitor.pipeline.source import Capture
from crashwatch.monitor.transports.subscribe import explained

log = logging.getLogger(__name__)

MIN_STRIDE_S = 0.05  # no CPU scores a window more often; a shorter stride only multiplies skipped strides


class CameraLog(logging.LoggerAdapter):
    """A camera's log lines name the camera: a process may watch many."""

    def __init__(self, logger: logging.Logger, camera: str) -> None:
        super().__init__(logger, {"camera": camera})
        self.camera = camera

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"camera {self.camera}: {msg}", kwargs



@dataclass
class LoopStats:
    strides: int = 0
    skipped: int = 0
    last_end: float | None = None
    last_frame_ids: tuple[int, ...] = ()
    effective_stride_s: float | None = None  # between the last two windows scored
    stride_reason: str | None = None  # why it is longer than the stride (None when it is not)
    failures_seen: int = 0  # failed model calls counted when the last window was scored
    model_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=500))


class Monitor:
    """One camera's monitor. ``run`` blocks until the file ends or ``stop`` is set; returns a summary."""

    def __init__(self, model: RiskModel, options: MonitorOptions, outlet: Callable[[Callable[[], Status]], Outlet],
                 stop: threading.Event | None = None) -> None:
        """``outlet`` opens where the messages go, given the status to send as heartbeats."""
        self.model = model
        self.options = options
        self.stop = stop or threading.Event()
        options.check()
        self.log = CameraLog(log, options.camera)
        m = model.manifest
        seconds, frames = m.window.seconds, m.window.num_frames
        if options.window_seconds is not None and options.window_seconds != seconds:
            self.log.warning("window overridden: %.2f s instead of the bundle's %.2f s; the model was trained on %.2f s",
                             options.window_seconds, seconds, seconds)
            seconds = options.window_seconds
        if options.num_frames is not None and options.num_frames != frames:
            raise OptionsError(f"the bundle's prompt holds {frames} frames; a window of {options.num_frames} frames "
                             "needs a bundle exported for it")
        self.window = WindowSpec(seconds, frames)
        self.stride = options.stride if options.stride is not None else self.window.spacing
        if self.stride < MIN_STRIDE_S:  # nearly every stride would be skipped, and said only as a count
            given = options.stride is not None
            raise OptionsError(
                f"a stride of {self.stride:.4f} s ({'given' if given else 'the window frame spacing, '}"
                f"{'' if given else f'{seconds:g} s over {frames - 1} gaps'}) asks for more than "
                f"{1 / MIN_STRIDE_S:.0f} risk queries a second; give at least {MIN_STRIDE_S} s",
                SETTING["stride"] if given else SETTING["window_seconds"])
        # Window ends on the stride grid put every nominal frame time on multiples of the spacing.
        on_lattice = abs(self.stride / self.window.spacing - round(self.stride / self.window.spacing)) <= 1e-6
        if not on_lattice:
            self.log.warning("stride %.3f s is not a multiple of the frame spacing %.3f s: windows will share fewer "
                             "frames and each stride will cost more vision passes", self.stride, self.window.spacing)
        try:
            self.policy = AlertPolicy.around(m.threshold if options.alert_on is None else options.alert_on,
                                             **options.alert_overrides())
        except ValueError as err:
            raise OptionsError(str(err)) from None
        self.tracker = AlertTracker(self.policy)
        # The bundle's calibrated caution goes with its alert threshold; another alert threshold takes the default.
        calibrated = options.alert_on is None
        caution = options.caution_on if options.caution_on is not None else \
            m.caution_threshold if calibrated and m.caution_threshold is not None else CAUTION_FRACTION * self.policy.on
        rise = options.caution_rise_seconds if options.caution_rise_seconds is not None else \
            m.caution_rise_seconds if calibrated and m.caution_rise_seconds is not None else RISE_SECONDS
        try:
            self.levels = LevelTracker(CautionPolicy.around(min(caution, self.policy.on), options.caution_off,
                                                            rise_seconds=rise))
        except ValueError as err:
            raise OptionsError(str(err)) from None
        self.late_after_s = self.window.spacing  # a risk later than this after its newest frame is late
        self.realtime = self._realtime(model.timing())
        self.identity = model.identity(options.demo_model)
        self.scorer = WindowScorer(model, self.window, m.pixels)
        # The buffer holds full-resolution frames, so only what a window can still need; event clips take
        # their post-roll frames straight from the capture.
        span = self.window.seconds + 2 * self.stride + 0.5
        self.evidence = self._open_evidence(options)
        self.buffer = FrameBuffer(span, paced=options.replay == "fast",
                                  lattice=None if self.evidence.holds_frames or not on_lattice else self.window.spacing)
        self.health = HealthWatch(lambda health: self.outlet.publish(health))
        self.explainer = None if options.explain == "off" else ExplainWorker(
            Explainer(model, m.pixels, options.explain_mask or StaticMask()), self._explained,
            f"explain-{options.camera}")
        self._held: set[int] = set()  # alerts held back while the camera could not see (--degraded-alerts hold)
        on_frame = [self.evidence.feed, self.health.feed]
        if options.preview:
            on_frame.append(Previewer(lambda preview: self.outlet.publish(preview)).feed)
        self.capture = Capture(options.source, self.buffer, self.stop, realtime=options.replay == "realtime",
                               loop=options.loop, on_frame=on_frame,
                               backoff_initial=options.backoff_initial, backoff_max=options.backoff_max)
        self.prefetcher = WindowPrefetcher(self.buffer, self.scorer, self.window, self.stride, self.stop,
                                           paced=options.replay == "fast")
        self.stats = LoopStats()
        self.risks: list[Risk] = []  # every risk message, for replay evaluation
        self.alerts: list[Alert] = []
        self.outlet = outlet(self.status)

    def _realtime(self, timing: Timing | None) -> dict[str, Any] | None:
        """Whether this machine holds real time with this bundle, from the model's measured times: each frame
        encoded within the window's frame spacing, and a stride's new frames plus the score within the stride.
        Where it does not, one WARNING with the figures and the ways out. A risk later than one frame spacing
        after its newest frame's capture is marked ``late``."""
        if timing is None:
            return None
        spacing, stride = self.window.spacing, self.stride
        new = max(1, math.ceil(stride / spacing - 1e-9))  # frames a stride brings when windows share frames
        stride_ms = new * timing.encode_ms + timing.score_ms
        reasons = []
        if timing.encode_ms > spacing * 1000:
            reasons.append(f"a frame takes {timing.encode_ms:.0f} ms to encode, more than the {spacing:.2f} s "
                           "between a window's frames")
        if stride_ms > stride * 1000:
            reasons.append(f"a stride takes about {stride_ms:.0f} ms ({new} new frame(s) and the score, "
                           f"{timing.score_ms:.0f} ms), more than the {stride:.2f} s stride")
        if reasons:
            self.log.warning("this machine cannot hold real time with this bundle: %s. Windows will be scored "
                             "further apart and late (each risk later than %.2f s is marked late). Ways out: "
                             "smaller frames (a bundle exported at a smaller image size), another runtime "
                             "(--runtime), a longer frame spacing (a bundle with a longer window or fewer "
                             "frames), fewer cameras on this machine", "; ".join(reasons), self.late_after_s)
        return {"holds": not reasons, "encode_ms": round(timing.encode_ms, 1), "score_ms": round(timing.score_ms, 1),
                "spacing_s": spacing, "stride_s": stride, "late_after_s": self.late_after_s, "reasons": reasons}

    def _open_evidence(self, options: MonitorOptions) -> Evidence:
        """Events locked out of a loop recording (``--record``'s, or with ``--events`` alone the events folder's
        own small ring), event clips from memory (``--events-hold memory``), or nothing."""
        if options.record_dir is not None:
            ring, keep, events = options.record_dir, options.record_keep, options.events_dir or options.record_dir / "events"
        elif options.events_dir is None:
            return NoEvidence()
        elif options.events_hold == "memory":
            return HeldEvidence(EventRecorder(options.events_dir, options.camera, options.event_post_seconds,
                                              options.signer))
        else:
            ring, keep, events = options.events_dir / EVENTS_RING, EVENTS_RING_KEEP, options.events_dir
        recorder = LoopRecorder(ring, options.camera, keep, options.record_codec, options.record_segment_seconds,
                                lossless=not options.source.live, nominal_fps=lambda: self.capture.source_fps,
                                min_free=options.record_min_free, bitrate=options.record_bitrate)
        return RecordedEvidence(recorder, EventLocker(events, options.camera, recorder, options.event_post_seconds,
                                                      options.signer))

    # -- status ---------------------------------------------------------------------------------------------

    def status(self) -> Status:
        c = self.capture.stats
        newest = self.buffer.newest_t()
        latencies = np.asarray(self.stats.model_ms) if self.stats.model_ms else None
        outlet = getattr(self, "outlet", None)  # a publisher's first heartbeat may come before it is set
        delivery = outlet.delivery() if outlet is not None else {"publisher": None, "sinks": None}
        outage = c.outage_s()
        lag = (newest - self.stats.last_end) if newest is not None and self.stats.last_end is not None else None
        return Status(
            source={
                "kind": self.options.source.kind, "name": self.options.source.display, "state": c.state,
                "outages": c.outages, "reconnect_attempts": c.reconnect_attempts, "backoff_s": c.backoff_s,
                "outage_s": outage, "outages_total_s": c.outages_s + outage, "last_error": c.last_error,
            },
            capture_fps=round(c.fps, 2),
            frames_captured=c.frames,
            frames_dropped=c.dropped,
            frames_damaged=c.damaged,
            explanations=None if self.explainer is None else self.explainer.stats(),
            strides=self.stats.strides,
            strides_skipped=self.stats.skipped,
            stride_s=self.stride,
            effective_stride_s=self.stats.effective_stride_s,
            stride_reason=self.stats.stride_reason,
            lag_s=None if lag is None else lag + outage,  # nothing is seen while the source is away
            model_ms={f"p{q}": float(np.percentile(latencies, q)) for q in (50, 90, 99)} if latencies is not None else None,
            alert_active=self.tracker.active,
            level=self.levels.level.value,
            model=self.identity,
            publisher=delivery["publisher"],
            events=self.evidence.events(),
            recording=self.evidence.recording(),
            sinks=delivery["sinks"],
            model_calls=self.scorer.calls.status(),
            realtime=self.realtime,
            probability=self.risks[-1].probability if self.risks else None,
            camera_health=self.health.status(),
            controls=None if self.options.controls is None else {
                **self.options.controls.state.to_json(), "threshold_in_force": self.policy.on},
        )

    # -- the loop -------------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        caution = self.levels.policy
        self.log.info("monitoring %s: window %.2f s x %d frames, stride %.3f s, alert at %.3f (off below %.3f), "
                      "caution at %.3f (off below %.3f%s)", self.options.source.display, self.window.seconds,
                      self.window.num_frames, self.stride, self.policy.on, self.policy.off, caution.on, caution.off,
                      f", or rising to the alert within {caution.rise_seconds:g} s" if caution.rise_seconds else "")
        self.capture.start()
        self.prefetcher.start()
        next_end: float | None = None
        try:
            while not self.stop.is_set():
                since = self.buffer.since
                if since is None:
                    if self.buffer.closed:
                        break
                    self.buffer.wait_until(float("-inf"), 0.2)
                    continue
                earliest = first_window_end(since, self.stride)
                if next_end is None or next_end < earliest - EPSILON:
                    if next_end is not None:  # frames from before an outage are gone: start over
                        self.scorer.reset()
                        self.stats.last_frame_ids = ()
                    next_end = earliest
                self.buffer.demand(next_end)
                ready = self.prefetcher.ready_after(next_end, 0.2)
                if ready is None:
                    if self.prefetcher.finished:
                        if self.prefetcher.error is not None:
                            raise self.prefetcher.error
                        break
                    continue
                if self.buffer.since != since:  # the source came back meanwhile: plan from its first frame
                    continue
                end, taken = ready
                self.stats.skipped += int(round((end - next_end) / self.stride))
                self._stride(taken, end)
                next_end = end + self.stride
        finally:
            self.stop.set()
            self.buffer.close()
            if self.tracker.active:
                self._alert(self.tracker.finish(self.stats.last_end or 0.0), None)
            ended = self.levels.finish(self.stats.last_end or 0.0, self.policy.on)
            if ended is not None:
                self.outlet.publish(ended)
            self.capture.join(timeout=1.0)
            self.prefetcher.join(timeout=5.0)
            if self.explainer is not None:  # before the evidence closes: explanations go into its sidecars
                self.explainer.close()
            self.evidence.close()
            self.outlet.close()
        return self.summary()

    def _stride(self, taken: list[Frame], end: float) -> None:
        """Score the window ending at ``end`` from the frames the prefetcher took for it (oldest first); a model
        call that fails skips it (the scorer puts the error in ``status``)."""
        try:
            result = self.scorer.score(taken, end)
        except EngineError:
            self.stats.skipped += 1
            return
        self._pace(result)
        self.stats.strides += 1
        self.stats.last_end = end
        self.stats.model_ms.append(result.model_ms)
        # first, so the risk says this stride's state
        allowed = self._obey(end)
        self.evidence.risk(end, result.probability)  # before the alert's start, whose evidence takes its window's
        events = self.tracker.update(end, result.probability) if allowed else []
        for event in events:
            if event.event is AlertEvent.START and self.health.reasons() and self.options.degraded_alerts == "hold":
                self._held.add(event.alert_id)
        # The level goes out before the alert's evidence is opened: a cab unit sounds it without waiting for disk.
        open_id = self.tracker.alert_id
        if not allowed:
            level, change = Level.NONE, self.levels.finish(end, self.policy.on, "alerts turned off")
        else:
            level, change = self.levels.update(end, result.probability, self.policy.on,
                                               None if open_id in self._held else open_id, result.frames[-1].wall)
        risk = self._risk(result, level)
        self.risks.append(risk)
        self.outlet.publish(risk)
        if change is not None:
            self.outlet.publish(change)
        for event in events:
            self._alert(event, result)

    def _obey(self, t: float) -> bool:
        """Apply the operator's controls (``--mqtt``): a threshold set takes over the policy at once (off at its
        usual fraction); alerts turned off end an open one. Whether alerts may be raised."""
        controls = self.options.controls
        if controls is None:
            return True
        state = controls.state
        if state.threshold is not None and state.threshold != self.policy.on:
            overrides = {k: v for k, v in self.options.alert_overrides().items() if k != "off"}
            self.policy = self.tracker.policy = AlertPolicy.around(state.threshold, **overrides)
            self.log.warning("alert threshold set to %.3f by the operator (off below %.3f)", self.policy.on,
                             self.policy.off)
        if not state.alerts and self.tracker.active:
            self._alert(self.tracker.finish(t, reason="alerts turned off"), None)
        return state.alerts

    def _pace(self, result: WindowScore) -> None:
        """The effective stride from the last window to this one, and why it is longer than the stride (the
        measured vision and head times say which part cannot keep up)."""
        stats = self.stats
        ids = tuple(f.id for f in result.frames)
        if not stats.last_frame_ids or stats.last_end is None:  # the first window, or the first after an outage
            stats.effective_stride_s, stats.stride_reason = None, None
        else:
            effective = result.end - stats.last_end
            stats.effective_stride_s = round(effective, 6)
            stats.stride_reason = None if effective <= self.stride + EPSILON else self._why_slower(
                effective, len(set(ids) & set(stats.last_frame_ids)))
        stats.last_frame_ids = ids
        stats.failures_seen = self.scorer.calls.failures

    def _why_slower(self, effective: float, shared: int) -> str:
        calls = self.scorer.calls
        if calls.failures > self.stats.failures_seen:
            return (f"model calls failed meanwhile ({calls.last_error}): the windows they were for were skipped, "
                    f"this one {effective:.2f} s after the last")
        vision = float(np.median(self.scorer.vision_ms)) if self.scorer.vision_ms else 0.0
        head = float(np.median(self.scorer.head_ms)) if self.scorer.head_ms else 0.0
        spacing = self.window.spacing
        if vision > spacing * 1000:
            return (f"vision takes {vision:.0f} ms a frame, more than the {spacing:.2f} s between a window's frames: "
                    f"windows {effective:.2f} s apart share {shared} of {self.window.num_frames} frames; a faster "
                    "runtime (--runtime), int8 or smaller frames would let them overlap")
        return (f"the head takes {head:.0f} ms a window and vision {vision:.0f} ms a frame, more than the "
                f"{self.stride:.2f} s stride allows: windows {effective:.2f} s apart, sharing {shared} of "
                f"{self.window.num_frames} frames")

    def _alert(self, event: Alert, result: WindowScore | None) -> None:
        """Publish an alert event; a start first opens its evidence (an event folder's sidecar is on disk
        before the start is published)."""
        if event.event is AlertEvent.START:
            blind = self.health.reasons()
            event = dataclasses.replace(event, model=self.identity, camera_degraded=blind or None,
                                        caution_since=self.levels.caution_since)
            if result is not None:
                event = self.evidence.start(event, result.frames[0].t, result.end, self.buffer.snapshot())
            if event.alert_id in self._held:
                self.log.warning("alert %d held back: the camera cannot see well (%s)", event.alert_id, ", ".join(blind))
        elif event.event is AlertEvent.END:
            self.evidence.end(event)
        self.alerts.append(event)
        if event.alert_id not in self._held:
            self.outlet.publish(event)
            if self.explainer is not None and result is not None and event.event is not AlertEvent.END:
                self.explainer.submit(event, result.frames, result.states)
        self.log.warning("alert %d %s at %.2f s (probability %s, peak %.3f)", event.alert_id, event.event.value,
                    event.t, "n/a" if event.probability is None else f"{event.probability:.3f}", event.peak)

    def _explained(self, explanation: Explanation) -> None:
        """An explanation is ready (the explainer's thread): publish it and add it to the alert's evidence."""
        self.outlet.publish(explanation)
        self.evidence.explained(explanation.alert_id, explanation.to_wire())
        if explanation.state != "ready":
            self.log.warning("alert %d %s not explained: %s", explanation.alert_id, explanation.event,
                             explanation.reason)
        else:
            self.log.info("alert %d %s explained in %.0f ms: %s", explanation.alert_id, explanation.event,
                          explanation.compute_ms or 0, explained(explanation))

    def _risk(self, r: WindowScore, level: Level) -> Risk:
        newest = r.frames[-1]
        latency_ms = (time.time() - newest.wall) * 1000
        return Risk(t=r.end, window_start=r.end - self.window.seconds, frame_ids=[f.id for f in r.frames],
                    frame_times=[round(f.t, 4) for f in r.frames], probability=r.probability,
                    threshold=self.policy.on, alert_active=self.tracker.active, encode_ms=r.encode_ms,
                    score_ms=r.score_ms, frames_encoded=r.encoded, partial=r.partial, captured_at=newest.wall,
                    latency_ms=latency_ms, effective_stride_s=self.stats.effective_stride_s,
                    stride_reason=self.stats.stride_reason, late=latency_ms > self.late_after_s * 1000, level=level)

    def summary(self) -> dict[str, Any]:
        return {"strides": self.stats.strides, "strides_skipped": self.stats.skipped,
                "alerts": len(alert_starts(self.alerts)),
                "frames": self.capture.stats.frames, "frames_dropped": self.capture.stats.dropped,
                "frames_damaged": self.capture.stats.damaged,
                "source_state": self.capture.stats.state, "source_error": self.capture.stats.last_error}
