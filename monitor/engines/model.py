"""A bundle opened for inference: the two calls the monitor makes.

``RiskModel`` verifies the bundle (``crashwatch.contract.bundle``) on open, runs its graphs on the runtime asked for
(``crashwatch.monitor.engines.local``), then encodes frames (once per frame, cacheable) and turns a window of encoded frames
into its logit and probability. What a frame is encoded to depends on the bundle's prompt layout: its image
embeddings (``ChatLayout``, SmolVLM2's own layout, whose text model then runs over the whole prompt), or its
block's keys and values at every layer (``StreamingLayout``, after which a window runs only the readout).
``RiskModel.open`` reads a bundle's folder; ``RiskModel.from_triton`` takes the manifest, the prompt arrays and
the graphs from a Triton server instead (``crashwatch.monitor.engines.triton``): everything above the model is
the same.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np

from crashwatch.contract.bundle import (
    BLOCK_EMBEDS,
    HEAD_EMBEDS,
    HEAD_MASK,
    PROMPT_IDS,
    READOUT_BLOCKS,
    READOUT_EMBEDS,
    READOUT_KEEP,
    READOUT_PREFIX,
    TOKEN_EMBEDDINGS,
    TOKEN_IDS,
    VISION_INPUT,
    BundleError,
    Manifest,
    read_array,
    resolve_bundle,
)
from crashwatch.contract.prompt import PromptLayout
from crashwatch.contract.risk import sigmoid
from crashwatch.monitor.engines import choice
from crashwatch.monitor.engines.local import Engine, Graph, Runtime, TextWeights, open_engine

log = logging.getLogger(__name__)

PROMPT_ARRAYS = (PROMPT_IDS, TOKEN_IDS, TOKEN_EMBEDDINGS)


class ChatLayout:
    """The smolvlm layout: a frame is its image embeddings ``[T, D]``; a window's are merged into the prompt's
    embeddings and the head graph runs the text model over all of it. Withholding (``window_logits``) is by the
    head's attention mask over a frame's image tokens: every token after them stops seeing them, positions
    unchanged; the frame's timestamp and image markers stay. (Each call is given the engine's graphs: the fleet
    puts them behind batching after the model opened, ``crashwatch.monitor.serving.fleet``.)"""

    def __init__(self, manifest: Manifest, template: np.ndarray, image_rows: np.ndarray, graphs: Mapping[str, Graph],
                 origin: str) -> None:
        self._manifest, self._template, self._image_rows = manifest, template, image_rows
        self.positions = manifest.tokens_per_frame  # what ``keep`` covers of a frame: its image tokens
        self.image_positions = np.arange(manifest.tokens_per_frame)

    def frame_states(self, graphs: Mapping[str, Graph], frame_embeds: np.ndarray) -> np.ndarray:
        return frame_embeds

    def window_logit(self, graphs: Mapping[str, Graph], states: Sequence[np.ndarray]) -> float:
        return float(self.window_logits(graphs, [states])[0])

    def window_logits(self, graphs: Mapping[str, Graph], windows: Sequence[Sequence[np.ndarray]],
                      keep: np.ndarray | None = None) -> np.ndarray:
        """N windows' logits ``[N]``; ``keep`` ``[N, F, T]`` withholds the image tokens at 0."""
        m = self._manifest
        embeds = np.repeat(self._template[None], len(windows), 0)
        for n, states in enumerate(windows):
            _check_window(states, m.window.num_frames, (m.tokens_per_frame, m.hidden_size), "frame embeddings")
            embeds[n, self._image_rows] = np.concatenate(list(states))
        count, length = embeds.shape[0], embeds.shape[1]
        mask = np.ones((count, length), np.int64)
        if keep is not None:
            # The head reads the token at the mask's sum less one (training's right-padded batches): each row
            # withholding W tokens gets W more after its last, which no earlier token sees, so it reads its last.
            mask[:, self._image_rows] = keep.reshape(count, -1)
            withheld = length - mask.sum(1)
            extra = int(withheld.max())
            embeds = np.concatenate([embeds, np.zeros((count, extra, m.hidden_size), np.float32)], 1)
            mask = np.concatenate([mask, (np.arange(extra)[None] < withheld[:, None]).astype(np.int64)], 1)
        return np.asarray(graphs["head"]({HEAD_EMBEDS: embeds, HEAD_MASK: mask}), np.float32).reshape(-1)


@dataclass(frozen=True)
class Timing:
    """Milliseconds this machine takes to encode one frame (``encode_frames``) and score one window."""

    encode_ms: float
    score_ms: float


class Layout(Protocol):
    """How a prompt layout turns frames into a window's logit (``ChatLayout``, ``StreamingLayout``)."""

    def frame_states(self, graphs: Mapping[str, Graph], frame_embeds: np.ndarray) -> np.ndarray: ...

    def window_logit(self, graphs: Mapping[str, Graph], states: Sequence[np.ndarray]) -> float: ...

    def window_logits(self, graphs: Mapping[str, Graph], windows: Sequence[Sequence[np.ndarray]],
                      keep: np.ndarray | None = None) -> np.ndarray:
        """N windows' logits; ``keep`` ``[N, F, positions]`` (1 or 0) withholds a frame's positions at 0 from
        what follows them, positions unchanged."""

    @property
    def positions(self) -> int:
        """A frame's positions that ``keep`` covers."""

    @property
    def image_positions(self) -> np.ndarray:
        """Which of them hold the frame's image tokens, in the connector's order (row by row)."""


def _check_window(states: Sequence[np.ndarray], frames: int, shape: tuple[int, ...], what: str) -> None:
    if len(states) != frames or any(s.shape != shape for s in states):
        raise ValueError(f"a window needs {frames} {what} of shape {shape}, got "
                         f"{[tuple(s.shape) for s in states]}")


class StreamingLayout:
    """The streaming layout (``crashwatch.contract.prompt``): a frame is its block's state, the keys and values of every
    layer ``[2, layers, kv_heads, B, head_dim]``, computed from the frame alone; a window runs the readout
    graph over the prefix's state (computed once, here) and its frames'. Blocks go
    through the block graph one at a time, so a frame's state is the same whichever call computed it (an int8
    graph's dynamic scales would otherwise depend on the other frames of a call)."""

    def __init__(self, manifest: Manifest, template: np.ndarray, image_rows: np.ndarray, graphs: Mapping[str, Graph],
                 origin: str) -> None:
        segments, frames = manifest.segments, manifest.window.num_frames
        if segments is None:
            raise BundleError(f"{origin}: a streaming-layout manifest without its prompt segments")
        prefix, block, readout = segments.prefix, segments.block, segments.readout
        if template.shape[0] != prefix + frames * block + readout:
            raise BundleError(f"{origin}/{PROMPT_IDS}: {template.shape[0]} tokens, but the manifest's streaming "
                              f"segments make {prefix} + {frames} x {block} + {readout}")
        local = image_rows - prefix
        if np.any(local < 0) or np.any(local >= frames * block) or not np.array_equal(
                local.reshape(frames, -1) % block, np.tile(local[:local.size // frames], (frames, 1))):
            raise BundleError(f"{origin}/{PROMPT_IDS}: image tokens outside the frame blocks, or blocks that "
                              "differ from each other")
        self._block_template = template[prefix:prefix + block]
        self._block_rows = local[:local.size // frames]
        self._readout = template[None, prefix + frames * block:]
        self._manifest = manifest
        self._block = block
        self._keeps = manifest.withholds  # bundles exported before 2026-12-06 have no ``keep`` input
        self._buffers = threading.local()
        self.positions = block  # what ``keep`` covers of a frame: its whole block
        self.image_positions = self._block_rows
        self.prefix_state = graphs["block"]({BLOCK_EMBEDS: template[None, :prefix]})[0]

    def frame_states(self, graphs: Mapping[str, Graph], frame_embeds: np.ndarray) -> np.ndarray:
        states = []
        for embeds in frame_embeds:
            block = self._block_template.copy()
            block[self._block_rows] = embeds
            states.append(graphs["block"]({BLOCK_EMBEDS: block[None]})[0])
        return np.stack(states).astype(np.float32, copy=False)

    def window_logit(self, graphs: Mapping[str, Graph], states: Sequence[np.ndarray]) -> float:
        return float(self.window_logits(graphs, [states])[0])

    def window_logits(self, graphs: Mapping[str, Graph], windows: Sequence[Sequence[np.ndarray]],
                      keep: np.ndarray | None = None) -> np.ndarray:
        """N windows' logits ``[N]``; ``keep`` ``[N, F, B]`` withholds block positions at 0 from the readout."""
        m = self._manifest
        frames, (two, layers, heads, _, head_dim) = m.window.num_frames, self.prefix_state.shape
        count = len(windows)
        if keep is not None and not self._keeps:
            raise BundleError("this streaming bundle's readout has no `keep` input (exported before 2026-12-06): "
                              "export it again to withhold frames from its score")
        # The readout takes the frames after the key/value heads (``crashwatch.export.streaming``), copied into a
        # buffer of the calling thread's (each camera's scorer has one): 4 ms for the 500M's 44 MB, where a new
        # array each stride took 12 to 17 (its pages faulted in afresh).
        blocks = getattr(self._buffers, "blocks", None)
        if blocks is None or blocks.shape[0] != count:
            blocks = self._buffers.blocks = np.empty((count, two, layers, heads, frames, self._block, head_dim),
                                                     np.float32)
        for n, states in enumerate(windows):
            _check_window(states, frames, (two, layers, heads, self._block, head_dim), "frame states")
            np.stack(states, axis=3, out=blocks[n])
        prefix = self.prefix_state[None] if count == 1 else np.repeat(self.prefix_state[None], count, 0)
        feed = {READOUT_EMBEDS: np.repeat(self._readout, count, 0), READOUT_PREFIX: prefix, READOUT_BLOCKS: blocks}
        if self._keeps:
            feed[READOUT_KEEP] = np.ones((count, frames, self._block), np.float32) if keep is None else \
                np.ascontiguousarray(keep, np.float32)
        return np.asarray(graphs["readout"](feed), np.float32).reshape(-1)


LAYOUTS: dict[PromptLayout, type[ChatLayout] | type[StreamingLayout]] = {
    PromptLayout.SMOLVLM: ChatLayout, PromptLayout.STREAMING: StreamingLayout}


class _Recording:
    """A graph that keeps the inputs of its last call, so that ``--runtime auto`` times it on real ones."""

    def __init__(self, graph: Graph, name: str, feeds: dict[str, dict[str, np.ndarray]]) -> None:
        self.graph, self.name, self.feeds = graph, name, feeds

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        self.feeds[self.name] = {key: np.array(value) for key, value in feed.items()}
        return self.graph(feed)


def _graph_ms(graph: Graph, feed: dict[str, np.ndarray], repeats: int = 5) -> float:
    """The median milliseconds of ``graph`` on ``feed``."""
    return _median_ms(lambda: graph(feed), repeats)


def _median_ms(call: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


class RiskModel:
    """A verified bundle, ready to encode frames and score windows: ``open`` a bundle's folder, or take one
    ``from_triton``."""

    def __init__(self, name: str, origin: str, manifest: Manifest, arrays: Mapping[str, np.ndarray],
                 engine: Engine) -> None:
        """A bundle's verified ``manifest`` and prompt ``arrays`` on ``engine``; ``origin`` (the folder, or the
        server's URL) names it in logs and errors."""
        self.name = name
        self.manifest = manifest
        self.engine = engine
        self._timing: Timing | None = None
        log.info("bundle %s (%s) on %s %s at %s", origin, manifest.precision, engine.runtime.value, engine.device,
                 engine.inference_precision)
        if manifest.zero_shot is not None:
            log.info("zero-shot baseline: %s's own answer, %s", manifest.zero_shot["model"],
                     " vs ".join(map(repr, manifest.zero_shot["answers"])))
        self._prompt_template, image_rows = self._prompt(arrays, origin)
        self.layout: Layout = LAYOUTS[manifest.layout](manifest, self._prompt_template, image_rows, engine.graphs,
                                                       origin)

    @classmethod
    def open(cls, folder: str | Path, providers: Sequence[str] | None = None, threads: int | None = None,
             runtime: Runtime | str = Runtime.ONNXRUNTIME,
             text_weights: TextWeights | str = TextWeights.ONCE) -> "RiskModel":
        """The bundle in ``folder`` (or a model store's current version, ``contract.bundle.resolve_bundle``), its
        files checked against the manifest, its graphs on ``runtime`` (onnxruntime's shared text weights as
        ``text_weights`` says) and warmed up."""
        if not Path(folder).is_dir():
            raise BundleError(f"{folder}: no such bundle folder")
        folder = resolve_bundle(Path(folder))
        manifest = Manifest.read(folder)
        manifest.verify_files(folder)
        arrays = {name: read_array(folder / name, str(folder / name)) for name in PROMPT_ARRAYS}
        runtime = Runtime(runtime)
        opener = partial(open_engine, folder, manifest, providers=providers, threads=threads,
                         text_weights=TextWeights(text_weights))
        if runtime is not Runtime.AUTO:
            engine = opener(runtime)
            log.info("runtime %s (asked for)", runtime.value)
        else:
            engine = cls._auto_engine(folder, manifest, arrays, providers, threads, opener)
        model = cls(folder.name, str(folder), manifest, arrays, engine)
        model._warm_up()
        return model

    @classmethod
    def _auto_engine(cls, folder: Path, manifest: Manifest, arrays: Mapping[str, np.ndarray],
                     providers: Sequence[str] | None, threads: int | None, opener: Callable[..., Engine]) -> Engine:
        """``--runtime auto``: the one runtime that can serve the bundle here, or each graph on the runtime
        that ran it faster here, measured at the first start and cached (``choice``)."""
        kinds, why = choice.candidates(manifest, providers)
        if len(kinds) == 1:
            log.info("runtime %s (%s)", kinds[0].value, why)
            return opener(kinds[0])
        key = choice.cache_key(manifest, threads)
        known = choice.cached(key)
        if known is not None:
            engines = {r: opener(r, names=[name for name in manifest.graphs if known.graphs[name] is r])
                       for r in set(known.graphs.values())}  # each runtime only the graphs it runs
            log.info("runtimes per graph, as measured on this CPU before (%s): %s", choice.cache_path(), known.why)
            return Engine.combine(engines, known)
        log.info("timing each graph on %s (once for this CPU and bundle)", " and ".join(k.value for k in kinds))
        engines = {r: opener(r) for r in kinds}
        feeds: dict[str, dict[str, np.ndarray]] = {}
        probe = cls(folder.name, str(folder), manifest, arrays, replace(engines[kinds[0]], graphs={
            name: _Recording(graph, name, feeds) for name, graph in engines[kinds[0]].graphs.items()}))
        probe._warm_up()  # each graph's inputs from a real window
        for engine in engines.values():  # every graph's first calls are slower than the rest
            for name, feed in feeds.items():
                engine.graphs[name](feed)
        measured = choice.pick({name: {r.value: _graph_ms(e.graphs[name], feed) for r, e in engines.items()}
                                for name, feed in feeds.items()})
        choice.remember(key, measured)
        log.info("runtimes per graph: %s (kept in %s)", measured.why, choice.cache_path())
        return Engine.combine(engines, measured)

    @classmethod
    def from_triton(cls, url: str, timeout: float) -> "RiskModel":
        """The bundle a Triton server serves at ``triton://HOST:PORT/NAME`` (``crashwatch serve-triton``, or the
        repository of ``crashwatch export-triton``): its manifest and prompt arrays, checked against the manifest's
        checksums, and its graphs called over gRPC, each call within ``timeout`` seconds."""
        from crashwatch.monitor.engines.triton import TritonClient

        client = TritonClient(url, timeout)
        manifest, arrays = client.fetch_bundle()
        return cls(client.target.name, client.target.url, manifest, arrays, client.engine(manifest))

    def _prompt(self, arrays: Mapping[str, np.ndarray], origin: str) -> tuple[np.ndarray, np.ndarray]:
        """The prompt's embeddings with zeros at image positions [L, D], and those positions."""
        prompt_ids, token_ids, table = (arrays[name] for name in PROMPT_ARRAYS)
        m = self.manifest
        if table.shape != (token_ids.shape[0], m.hidden_size) or prompt_ids.ndim != 1:
            raise BundleError(f"{origin}: prompt arrays have shapes {prompt_ids.shape}, {token_ids.shape}, "
                              f"{table.shape}, inconsistent with hidden size {m.hidden_size}")
        image_rows = np.flatnonzero(prompt_ids == m.image_token_id)
        if image_rows.size != m.window.num_frames * m.tokens_per_frame:
            raise BundleError(f"{origin}/{PROMPT_IDS}: {image_rows.size} image tokens, expected "
                              f"{m.window.num_frames} frames x {m.tokens_per_frame}")
        text = prompt_ids != m.image_token_id
        lookup = np.searchsorted(token_ids, prompt_ids[text])
        if np.any(lookup >= token_ids.size) or np.any(token_ids[lookup.clip(max=token_ids.size - 1)] != prompt_ids[text]):
            raise BundleError(f"{origin}/{TOKEN_IDS}: does not cover every prompt token")
        template = np.zeros((prompt_ids.size, m.hidden_size), np.float32)
        template[text] = table[lookup]
        return template, image_rows

    def _warm_up(self) -> None:
        """One window of blank frames through every graph: a runtime's first calls of a graph (OpenVINO's above
        all: 874 and 451 ms against 270 ms for the 256M streaming stride, docs/benchmarks.md) are slower than the
        rest, and a stream's first windows should not pay for it."""
        size = self.manifest.pixels.image_size
        states = self.encode_frames(np.zeros((1, 3, size, size), np.float32))
        self.window_logit([states[0]] * self.manifest.window.num_frames)

    def timing(self) -> "Timing | None":
        """What this machine takes to encode a frame and to score a window (medians of a few calls, after the
        warm-up), measured at the first call and kept, so that a monitor can say at start whether it holds real
        time; None for a Triton server's model, whose times are the server's."""
        if self._timing is None and self.engine.runtime is not Runtime.TRITON:
            size = self.manifest.pixels.image_size
            pixels = np.zeros((1, 3, size, size), np.float32)
            window = [self.encode_frames(pixels)[0]] * self.manifest.window.num_frames
            self._timing = Timing(_median_ms(lambda: self.encode_frames(pixels)),
                                  _median_ms(lambda: self.window_logit(window)))
        return self._timing

    def identity(self, demo: bool = False) -> dict[str, object]:
        """What names this model in ``status`` and alert starts: folder name (or the Triton model's name),
        precision, alert threshold of the bundle, content hash, whether it is the demo model (generated scenes
        only), the runtime with the precision its matrix products run at, the prompt layout, and for a zero-shot
        baseline the pretrained model and its answers (None for a trained model)."""
        m, e = self.manifest, self.engine
        zero_shot = None if m.zero_shot is None else {"model": m.zero_shot["model"], "answers": m.zero_shot["answers"]}
        runtimes = None if e.runtimes is None else {name: r.value for name, r in e.runtimes.items()}
        return {"name": self.name, "precision": m.precision, "threshold": m.threshold,
                "hash": m.content_hash, "demo": demo, "runtime": e.runtime.value, "device": e.device,
                "inference_precision": e.inference_precision, "layout": m.layout.value, "zero_shot": zero_shot,
                "runtimes": runtimes, "runtime_choice": None if e.choice is None else e.choice.to_json()}

    @property
    def prompt_length(self) -> int:
        return int(self._prompt_template.shape[0])

    def embed_frames(self, pixels: np.ndarray) -> np.ndarray:
        """Preprocessed frames [F, 3, S, S] -> image embeddings [F, T, D] (float32): the vision graph."""
        feed = {VISION_INPUT: np.ascontiguousarray(pixels, np.float32)}
        return self.engine.graphs["vision"](feed).astype(np.float32)

    def encode_frames(self, pixels: np.ndarray) -> np.ndarray:
        """Preprocessed frames [F, 3, S, S] -> what a window's score needs of each frame, which depends on that
        frame alone (so the scorer caches it): its image embeddings [F, T, D], or in the streaming layout its
        block's state [F, 2, layers, kv_heads, B, head_dim]."""
        return self.layout.frame_states(self.engine.graphs, self.embed_frames(pixels))

    def window_logit(self, states: Sequence[np.ndarray]) -> float:
        """``encode_frames`` of one window's frames, oldest first (an array, or the frames' arrays one by one as
        the scorer caches them) -> the window's logit."""
        return self.layout.window_logit(self.engine.graphs, states)

    def window_logits(self, windows: Sequence[Sequence[np.ndarray]], keep: np.ndarray | None = None) -> np.ndarray:
        """Several windows' logits at once, ``keep`` ``[N, F, layout.positions]`` withholding positions at 0
        (``Layout.window_logits``): what an explanation asks (``crashwatch.monitor.explain``)."""
        return self.layout.window_logits(self.engine.graphs, windows, keep)

    def window_probability(self, states: Sequence[np.ndarray]) -> float:
        """The window's crash-risk probability."""
        return float(sigmoid(self.window_logit(states)))
