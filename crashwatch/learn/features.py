"""What the head reads, window by window: each clip replayed once through the bundle, every window on the
monitor's stride grid giving its logit and its last-token state, cached on disk.

A head update changes nothing before the head, so the states of a store's versions are those of its first
(``root``): they are computed once per clip and kept in ``STORE/features/ROOT/``, keyed by the video's
content, and every later update (and its gate) reuses them. The logit kept beside them is the root bundle's
own graph's, int8 head and all, so the gate compares a new head with exactly what the monitor ran.
Frames are encoded one a call and windows scored one a call, as the monitor's scorer does (an int8 graph's
dynamic scales depend on what else is in a call).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import onnx

from crashwatch.contract.bundle import GRAPH_FILES, GRAPH_OUTPUTS, sha256_of
from crashwatch.contract.preprocess import preprocess_frame
from crashwatch.contract.video import ClipInfo, iter_frames, probe_clip
from crashwatch.contract.window import pick_frames
from crashwatch.learn.graphs import STATE_OUTPUT, head_graph, with_state
from crashwatch.monitor.engines.model import RiskModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipFeatures:
    """One clip's windows: their ends (stream seconds), the root bundle's logit and the last-token state."""

    times: np.ndarray  # [W]
    logits: np.ndarray  # [W]
    states: np.ndarray  # [W, hidden] float32

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial.npz")
        np.savez(partial, times=self.times, logits=self.logits, states=self.states)
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> "ClipFeatures":
        with np.load(path) as data:
            return cls(data["times"], data["logits"], data["states"])


def window_ends(info: ClipInfo, stride: float) -> np.ndarray:
    """Where the monitor's windows end when it replays the clip at ``stride``: the stride grid from the first
    frame to the last (the first windows repeat the first frame, as the monitor's do)."""
    last = info.timestamps()[-1]
    return np.arange(int(last / stride + 1e-6) + 1) * stride


class FeatureReader:
    """A bundle opened to give every window's logit and state; ``cache`` (a folder) keeps them per clip."""

    def __init__(self, bundle: Path, cache: Path | None) -> None:
        import onnxruntime as ort

        self.model = RiskModel.open(bundle, runtime="onnxruntime")
        manifest = self.model.manifest
        self.stride = manifest.window.spacing
        name = head_graph(manifest)
        proto = with_state(onnx.load(str(bundle / GRAPH_FILES[name])))
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        outputs = [GRAPH_OUTPUTS[name], STATE_OUTPUT]

        def logit_and_state(feed: dict[str, np.ndarray]) -> np.ndarray:
            logits, states = session.run(outputs, feed)
            return np.concatenate([logits.reshape(-1, 1), states], 1)

        # The layout builds each window's feed as for the monitor; this graph answers with the state beside
        # the logit, which ``window_logits`` hands back flattened.
        self._graphs = {**self.model.engine.graphs, name: logit_and_state}
        self._cache = cache

    def clip(self, video: Path) -> ClipFeatures:
        """The clip's features, from the cache where it holds them."""
        path = None if self._cache is None else self._cache / f"{sha256_of(video)[:24]}-{self.stride:g}.npz"
        if path is not None and path.is_file():
            return ClipFeatures.load(path)
        features = self._replay(video)
        if path is not None:
            features.save(path)
        return features

    def _replay(self, video: Path) -> ClipFeatures:
        m = self.model.manifest
        info = probe_clip(video)
        ends = window_ends(info, self.stride)
        picks = [pick_frames(info.timestamps(), float(end), m.window) for end in ends]
        last_use = {index: n for n, frames in enumerate(picks) for index in frames}
        encoded: dict[int, np.ndarray] = {}
        rows, done = [], 0
        for index, image in iter_frames(video, [i for frames in picks for i in frames]):
            encoded[index] = self.model.encode_frames(preprocess_frame(image, m.pixels)[None])[0]
            while done < len(picks) and all(i in encoded for i in picks[done]):
                window = [encoded[i] for i in picks[done]]
                rows.append(self.model.layout.window_logits(self._graphs, [window]))
                done += 1
                for i in [i for i in encoded if last_use[i] < done]:
                    del encoded[i]
        table = np.stack(rows).astype(np.float32)
        return ClipFeatures(ends.astype(np.float64), table[:, 0], np.ascontiguousarray(table[:, 1:]))


def read_clips(reader: FeatureReader, videos: Iterable[Path], what: str,
               progress: Callable[[str], None] = log.info) -> list[ClipFeatures]:
    """Every clip's features, saying every few seconds how far it got."""
    videos = list(videos)
    clips, said = [], time.monotonic()
    for number, video in enumerate(videos, 1):
        clips.append(reader.clip(video))
        if time.monotonic() - said > 10 or number == len(videos):
            progress(f"{what}: {number}/{len(videos)} clips read")
            said = time.monotonic()
    return clips
