"""A bundle opened for inference: the two calls the monitor makes.

``RiskModel`` verifies the bundle (``contract.bundle``) on open, runs its graphs on the runtime asked for
(``monitor.runtime``), then encodes frames (once per frame, cacheable) and turns a window of cached frame
embeddings into its logit and probability. ``RiskModel.from_triton`` takes the manifest, the prompt arrays and
the graphs from a Triton server instead (``monitor.triton``): everything above the model is the same.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from contract import bundle as layout
from contract.bundle import BundleError, Manifest
from contract.risk import sigmoid
from monitor.runtime import Engine, Runtime, open_engine

log = logging.getLogger(__name__)

PROMPT_ARRAYS = (layout.PROMPT_IDS, layout.TOKEN_IDS, layout.TOKEN_EMBEDDINGS)


def read_array(data: Path | bytes, where: str) -> np.ndarray:
    """One of a bundle's ``.npy`` arrays, from its file or as received; ``where`` names it in errors."""
    try:
        return np.load(data if isinstance(data, Path) else io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError) as err:
        raise BundleError(f"{where}: unreadable array ({err})") from None


class RiskModel:
    """A verified bundle, ready to encode frames and score windows."""

    def __init__(self, folder: str | Path, providers: Sequence[str] | None = None, threads: int | None = None,
                 runtime: Runtime | str = Runtime.ONNXRUNTIME) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise BundleError(f"{folder}: no such bundle folder")
        manifest = Manifest.read(folder)
        manifest.verify_files(folder)
        engine = open_engine(folder, manifest, Runtime(runtime), providers, threads)
        arrays = {name: read_array(folder / name, str(folder / name)) for name in PROMPT_ARRAYS}
        self._open(folder.name, str(folder), manifest, arrays, engine)

    @classmethod
    def from_triton(cls, url: str, timeout: float) -> "RiskModel":
        """The bundle a Triton server serves at ``triton://HOST:PORT/NAME`` (``crashwatch serve-triton``, or the
        repository of ``crashwatch export-triton``): its manifest and prompt arrays, checked against the manifest's
        checksums, and its graphs called over gRPC, each call within ``timeout`` seconds."""
        from monitor.triton.client import TritonClient

        client = TritonClient(url, timeout)
        manifest, arrays = client.fetch_bundle()
        model = cls.__new__(cls)
        model._open(client.target.name, client.target.url, manifest, arrays, client.engine(manifest))
        return model

    def _open(self, name: str, origin: str, manifest: Manifest, arrays: Mapping[str, np.ndarray],
              engine: Engine) -> None:
        """``origin`` (the folder, or the server's URL) names the bundle in logs and errors."""
        self.name = name
        self.manifest = manifest
        self.engine = engine
        log.info("bundle %s (%s) on %s %s at %s", origin, manifest.precision, engine.runtime.value, engine.device,
                 engine.inference_precision)
        if manifest.zero_shot is not None:
            log.info("zero-shot baseline: %s's own answer, %s", manifest.zero_shot["model"],
                     " vs ".join(map(repr, manifest.zero_shot["answers"])))
        self._prompt_template, self._image_rows = self._prompt(arrays, origin)

    def _prompt(self, arrays: Mapping[str, np.ndarray], origin: str) -> tuple[np.ndarray, np.ndarray]:
        """The prompt's embeddings with zeros at image positions [L, D], and those positions."""
        prompt_ids, token_ids, table = (arrays[name] for name in PROMPT_ARRAYS)
        m = self.manifest
        if table.shape != (token_ids.shape[0], m.hidden_size) or prompt_ids.ndim != 1:
            raise BundleError(f"{origin}: prompt arrays have shapes {prompt_ids.shape}, {token_ids.shape}, "
                              f"{table.shape}, inconsistent with hidden size {m.hidden_size}")
        image_rows = np.flatnonzero(prompt_ids == m.image_token_id)
        if image_rows.size != m.window.num_frames * m.tokens_per_frame:
            raise BundleError(f"{origin}/{layout.PROMPT_IDS}: {image_rows.size} image tokens, expected "
                              f"{m.window.num_frames} frames x {m.tokens_per_frame}")
        text = prompt_ids != m.image_token_id
        lookup = np.searchsorted(token_ids, prompt_ids[text])
        if np.any(lookup >= token_ids.size) or np.any(token_ids[lookup.clip(max=token_ids.size - 1)] != prompt_ids[text]):
            raise BundleError(f"{origin}/{layout.TOKEN_IDS}: does not cover every prompt token")
        template = np.zeros((prompt_ids.size, m.hidden_size), np.float32)
        template[text] = table[lookup]
        return template, image_rows

    def identity(self, demo: bool = False) -> dict[str, object]:
        """What names this model in ``status`` and alert starts: folder name (or the Triton model's name),
        precision, alert threshold of the bundle, content hash, whether it is the demo model (generated scenes
        only), the runtime with the precision its matrix products run at, and for a zero-shot baseline the
        pretrained model and its answers (None for a trained model)."""
        m, e = self.manifest, self.engine
        zero_shot = None if m.zero_shot is None else {"model": m.zero_shot["model"], "answers": m.zero_shot["answers"]}
        return {"name": self.name, "precision": m.precision, "threshold": m.threshold,
                "hash": m.content_hash, "demo": demo, "runtime": e.runtime.value, "device": e.device,
                "inference_precision": e.inference_precision, "zero_shot": zero_shot}

    @property
    def prompt_length(self) -> int:
        return int(self._prompt_template.shape[0])

    def encode_frames(self, pixels: np.ndarray) -> np.ndarray:
        """Preprocessed frames [F, 3, S, S] -> image embeddings [F, T, D] (float32)."""
        feed = {layout.VISION_INPUT: np.ascontiguousarray(pixels, np.float32)}
        return self.engine.vision(feed).astype(np.float32)

    def window_logit(self, frame_embeds: np.ndarray) -> float:
        """Image embeddings of one window's frames, oldest first [num_frames, T, D] -> the window's logit."""
        m = self.manifest
        expected = (m.window.num_frames, m.tokens_per_frame, m.hidden_size)
        if frame_embeds.shape != expected:
            raise ValueError(f"a window needs frame embeddings of shape {expected}, got {frame_embeds.shape}")
        embeds = self._prompt_template.copy()
        embeds[self._image_rows] = frame_embeds.reshape(-1, m.hidden_size)
        mask = np.ones((1, embeds.shape[0]), np.int64)
        feed = {layout.HEAD_EMBEDS: embeds[None], layout.HEAD_MASK: mask}
        return float(self.engine.head(feed)[0])

    def window_probability(self, frame_embeds: np.ndarray) -> float:
        """The window's crash-risk probability."""
        return float(sigmoid(self.window_logit(frame_embeds)))
