"""A bundle opened for inference: the two calls the monitor makes.

``RiskModel`` verifies the bundle (``contract.bundle``) on open, runs its graphs on the runtime asked for
(``monitor.runtime``), then encodes frames (once per frame, cacheable) and turns a window of cached frame
embeddings into its logit and probability.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from contract import bundle as layout
from contract.bundle import BundleError, Manifest
from contract.risk import sigmoid
from monitor.runtime import Runtime, open_engine

log = logging.getLogger(__name__)


class RiskModel:
    """A verified bundle, ready to encode frames and score windows."""

    def __init__(self, folder: str | Path, providers: Sequence[str] | None = None, threads: int | None = None,
                 runtime: Runtime | str = Runtime.ONNXRUNTIME) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise BundleError(f"{self.folder}: no such bundle folder")
        self.manifest = Manifest.read(self.folder)
        self.manifest.verify_files(self.folder)
        self.engine = open_engine(self.folder, self.manifest, Runtime(runtime), providers, threads)
        log.info("bundle %s (%s) on %s %s at %s", self.folder, self.manifest.precision, self.engine.runtime.value,
                 self.engine.device, self.engine.inference_precision)
        if self.manifest.zero_shot is not None:
            log.info("zero-shot baseline: %s's own answer, %s", self.manifest.zero_shot["model"],
                     " vs ".join(map(repr, self.manifest.zero_shot["answers"])))
        self._prompt_template, self._image_rows = self._load_prompt()

    def _load_prompt(self) -> tuple[np.ndarray, np.ndarray]:
        """The prompt's embeddings with zeros at image positions [L, D], and those positions."""
        def load(name: str) -> np.ndarray:
            try:
                return np.load(self.folder / name, allow_pickle=False)
            except (OSError, ValueError) as err:
                raise BundleError(f"{self.folder / name}: unreadable array ({err})") from None

        prompt_ids, token_ids, table = load(layout.PROMPT_IDS), load(layout.TOKEN_IDS), load(layout.TOKEN_EMBEDDINGS)
        m = self.manifest
        if table.shape != (token_ids.shape[0], m.hidden_size) or prompt_ids.ndim != 1:
            raise BundleError(f"{self.folder}: prompt arrays have shapes {prompt_ids.shape}, {token_ids.shape}, "
                              f"{table.shape}, inconsistent with hidden size {m.hidden_size}")
        image_rows = np.flatnonzero(prompt_ids == m.image_token_id)
        if image_rows.size != m.window.num_frames * m.tokens_per_frame:
            raise BundleError(f"{self.folder / layout.PROMPT_IDS}: {image_rows.size} image tokens, expected "
                              f"{m.window.num_frames} frames x {m.tokens_per_frame}")
        text = prompt_ids != m.image_token_id
        lookup = np.searchsorted(token_ids, prompt_ids[text])
        if np.any(lookup >= token_ids.size) or np.any(token_ids[lookup.clip(max=token_ids.size - 1)] != prompt_ids[text]):
            raise BundleError(f"{self.folder / layout.TOKEN_IDS}: does not cover every prompt token")
        template = np.zeros((prompt_ids.size, m.hidden_size), np.float32)
        template[text] = table[lookup]
        return template, image_rows

    def identity(self, demo: bool = False) -> dict[str, object]:
        """What names this model in ``status`` and alert starts: folder name, precision, alert threshold of
        the bundle, content hash, whether it is the demo model (generated scenes only), the runtime with the
        precision its matrix products run at, and for a zero-shot baseline the pretrained model and its answers
        (None for a trained model)."""
        m, e = self.manifest, self.engine
        zero_shot = None if m.zero_shot is None else {"model": m.zero_shot["model"], "answers": m.zero_shot["answers"]}
        return {"name": self.folder.name, "precision": m.precision, "threshold": m.threshold,
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
