"""``crashwatch review learn``: a new head from reviewers' verdicts, written as a new version of a model store
and run only when the gate passes.

The verdicts come as ``crashwatch review export`` writes them: confirmed events are crash clips whose
``event_time`` is the reviewer's mark, dismissed ones normal clips. A dismissed event's windows are fitted
towards 0; every other window (a confirmed event's up to its mark, the driving of ``data``) towards what the
running head says of it, so the head unlearns what reviewers dismissed and keeps the rest, its threshold
included (learning without forgetting; docs/review.md has the variants measured). The newest dismissed
events (``holdout_share``) stay out of the fit; the gate replays them, every confirmed event and the held-out
driving (``crashwatch.learn.gate``).
"""

from __future__ import annotations

import copy
import datetime
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx

from crashwatch.contract.bundle import GRAPH_FILES, GRAPH_OUTPUTS, MANIFEST, Manifest, describe_files, write_manifest
from crashwatch.contract.dataset import Clip, read_split
from crashwatch.contract.risk import sigmoid
from crashwatch.learn.features import ClipFeatures, FeatureReader, read_clips
from crashwatch.learn.fit import FitSettings, HeadWeights, fit_head
from crashwatch.learn.gate import HOLDOUT_SHARE, MAX_LEAD_LOSS, Replayed, judge
from crashwatch.learn.graphs import STATE_OUTPUT, head_graph, read_head, with_head
from crashwatch.learn.versions import ModelStore, StoreError
from crashwatch.monitor.evidence.durable import link_or_copy

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4  # logit: the written graph against the fitted head on the same states
VERDICT_SHARE = 0.02  # of the fit's weight, the verdicts' windows' where ``data`` is given (docs/review.md)


@dataclass(frozen=True)
class Source:
    """A research dataset's split (``crashwatch.contract.dataset``)."""

    folder: Path
    split: str

    def clips(self) -> list[Clip]:
        return read_split(self.folder, self.split)


@dataclass(frozen=True)
class LearnOptions:
    verdicts: Source  # what `crashwatch review export` wrote
    data: Source | None = None  # labelled driving the head should keep getting right (the calibration data)
    holdout: Source | None = None  # driving the gate replays, never fitted on
    holdout_share: float = HOLDOUT_SHARE
    verdict_share: float = VERDICT_SHARE
    max_lead_loss: float = MAX_LEAD_LOSS
    fit: FitSettings = field(default_factory=FitSettings)


def _held_out(dismissed: Sequence[Clip], share: float) -> set[Path]:
    """The newest ``share`` of the dismissed events (by when they were reviewed, else their order)."""
    count = math.floor(len(dismissed) * share + 0.5) if len(dismissed) > 1 else 0
    order = sorted(dismissed, key=lambda c: (float(c.meta.get("reviewed_at") or 0.0), c.line))
    return {c.video for c in order[len(order) - count:]} if count else set()


def _targets(clip: Clip, features: ClipFeatures, running: np.ndarray, dismissed: bool) -> tuple[np.ndarray, np.ndarray]:
    """The windows the fit uses and their targets: a dismissed event's all, towards 0; a clip with an event
    up to it (what follows is not a prediction), another's all, towards the running head's probability."""
    keep = np.ones(len(features.times), bool) if clip.event_time is None else features.times <= clip.event_time
    target = np.zeros(int(keep.sum()), np.float32) if dismissed else sigmoid(running[keep]).astype(np.float32)
    return features.states[keep], target


class Learner:
    """One update of ``store``'s current version."""

    def __init__(self, store: ModelStore, options: LearnOptions) -> None:
        self.store, self.options = store, options
        self.running = store.current
        self.running_path = store.path(self.running)
        self.manifest = Manifest.read(self.running_path)
        # Without its external data: a new version's graph keeps naming the text weights the bundle holds once
        graph = onnx.load(str(self.running_path / GRAPH_FILES[head_graph(self.manifest)]), load_external_data=False)
        _, self.running_head = read_head(graph)
        self._graph = graph
        self._root = store.path(store.names()[0])
        self.reader = FeatureReader(self._root, store.features())

    def _running_logits(self, features: ClipFeatures) -> np.ndarray:
        """The running version's logits: the root's own graph's where it runs, else its (fp32) head's."""
        return features.logits if self.running_path == self._root else self.running_head.logits(features.states)

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        o = self.options
        verdicts = o.verdicts.clips()
        unmarked = [c for c in verdicts if c.label == 1 and c.event_time is None]
        verdicts = [c for c in verdicts if c not in unmarked]
        if unmarked:
            log.warning("%d confirmed event(s) without a mark of the impact left out (give it: `crashwatch review "
                        "set EVENTS NAME confirmed --at SECONDS`): %s", len(unmarked),
                        ", ".join(c.name for c in unmarked))
        dismissed = [c for c in verdicts if c.label == 0]
        confirmed = [c for c in verdicts if c.label == 1]
        if not dismissed:
            raise StoreError(f"{o.verdicts.folder}: no dismissed event: a head update learns from false alerts")
        held = _held_out(dismissed, o.holdout_share)
        fitted = [c for c in verdicts if c.video not in held]
        calibrated_on = (self.manifest.raw.get("threshold_calibration") or {}).get("data")
        if o.data is None and calibrated_on:
            log.warning("the bundle's threshold was calibrated on %s: give it as --data so that the new head keeps "
                        "what the running one does there, not only on the verdicts' clips", calibrated_on)
        data = o.data.clips() if o.data else []
        holdout = o.holdout.clips() if o.holdout else []
        features: dict[Path, ClipFeatures] = {}
        for clips, what in ((verdicts, "verdicts"), (data, "data"), (holdout, "held-out driving")):
            features.update(zip([c.video for c in clips], read_clips(self.reader, [c.video for c in clips], what)))
        running = {video: self._running_logits(f) for video, f in features.items()}
        read_s = time.monotonic() - started

        parts = [(_targets(c, features[c.video], running[c.video], c.label == 0), True) for c in fitted] + \
                [(_targets(c, features[c.video], running[c.video], False), False) for c in data]
        states = np.concatenate([s for (s, _), _ in parts])
        targets = np.concatenate([y for (_, y), _ in parts])
        from_verdicts = np.concatenate([np.full(len(y), v) for (_, y), v in parts])
        weights = np.ones(len(targets), np.float64)
        if data:
            share = o.verdict_share
            weights[from_verdicts] = share * (~from_verdicts).sum() / max((1 - share) * from_verdicts.sum(), 1)
        fit_started = time.monotonic()
        head, fit = fit_head(self.running_head, states, targets, weights, o.fit)
        fit_s = time.monotonic() - fit_started

        gated = [c for c in dismissed if c.video in held] + confirmed + holdout
        gate = judge([Replayed(c, features[c.video].times, running[c.video], head.logits(features[c.video].states))
                      for c in gated],
                     self.manifest.threshold, max_lead_loss=o.max_lead_loss)
        report = {
            "running": self.running, "verdicts": {"confirmed": len(confirmed), "dismissed": len(dismissed),
                                                  "held_out": len(held), "unmarked": len(unmarked)},
            "data": None if o.data is None else {"folder": str(o.data.folder), "split": o.data.split,
                                                 "clips": len(data)},
            "holdout": None if o.holdout is None else {"folder": str(o.holdout.folder), "split": o.holdout.split,
                                                       "clips": len(holdout)},
            "fit": {**fit, "verdict_windows": int(from_verdicts.sum()), "verdict_share": o.verdict_share if data else None,
                    "steps": o.fit.steps, "pull": o.fit.pull},
            "gate": gate, "seconds": {"features": round(read_s, 1), "fit": round(fit_s, 1)},
        }
        name = self._write(head, report, verdicts[0])
        report["version"] = name
        report["seconds"]["total"] = round(time.monotonic() - started, 1)
        if gate["accepted"]:
            self.store.promote(name, {"gate": _brief(gate)})
        else:
            self.store.record({"action": "refused", "version": name, "running": self.running,
                               "reasons": gate["reasons"], "gate": _brief(gate)})
        return report

    def _write(self, head: HeadWeights, report: dict[str, Any], probe: Clip) -> str:
        """The new version beside the running one: its graph with the new head and the state as an output,
        the other files linked, the manifest's lineage saying where it came from; checked by opening it."""
        graph_name = head_graph(self.manifest)
        partial = self.store.folder / "versions" / f".partial-{int(time.time() * 1000)}"
        partial.mkdir(parents=True)
        try:
            raw = copy.deepcopy(self.manifest.raw)
            openvino = raw.pop("openvino", None)
            skipped = set(openvino.values()) if isinstance(openvino, dict) else set()
            skipped |= {f"{Path(f).stem}.bin" for f in skipped}
            for file in sorted(self.running_path.iterdir()):
                if file.is_file() and file.name not in skipped | {MANIFEST, GRAPH_FILES[graph_name]}:
                    link_or_copy(file, partial / file.name)
            written = partial / GRAPH_FILES[graph_name]
            onnx.save(with_head(self._graph, GRAPH_OUTPUTS[graph_name], head), str(written))
            onnx.checker.check_model(str(written))  # by its path: external weights found beside it
            raw["graphs"][graph_name]["outputs"] = [
                raw["graphs"][graph_name]["outputs"][0],
                {"name": STATE_OUTPUT, "dtype": "float32", "shape": ["batch", int(head.w1.shape[0])]}]
            raw["files"] = describe_files(partial)
            raw["lineage"] = {
                "parent": self.manifest.content_hash, "parent_version": self.running,
                "root": self.store.root(), "fitted_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"),
                "head": "fp32, fitted on cached last-token states (crashwatch review learn)",
                **{key: report[key] for key in ("verdicts", "data", "holdout", "fit")},
                "gate": _brief(report["gate"]),
            }
            write_manifest(partial, raw)
            content = Manifest.read(partial).content_hash
            name = self.store.new_name(content)
            partial.rename(self.store.folder / "versions" / name)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        self._check(name, head, probe)
        if openvino:
            log.info("%s: the new version runs its ONNX graphs (OpenVINO graphs are not rewritten)", name)
        return name

    def _check(self, name: str, head: HeadWeights, probe: Clip) -> None:
        """The written version, opened as the monitor opens it, gives the fitted head's logits on a clip."""
        written = FeatureReader(self.store.path(name), None).clip(probe.video)
        cached = self.reader.clip(probe.video)
        gap = float(np.max(np.abs(written.logits - head.logits(cached.states))))
        if gap > PARITY_TOLERANCE:
            raise StoreError(f"{name}: the written graph's logits differ from the fitted head's by {gap:.2g} on "
                             f"{probe.video.name} (tolerance {PARITY_TOLERANCE:g}); not used")
        log.info("%s: written graph matches the fitted head on %s (largest logit gap %.1e)", name, probe.video.name, gap)


def _brief(gate: dict[str, Any]) -> dict[str, Any]:
    return {key: gate[key] for key in ("accepted", "reasons", "running", "new", "lost", "clips")}

