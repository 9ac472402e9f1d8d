"""A bundle opened for inference with onnxruntime: the two calls the monitor makes.

``RiskModel`` verifies the bundle (``contract.bundle``) on open, then encodes frames (once per frame,
cacheable) and turns a window of cached frame embeddings into its logit and probability.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from contract import bundle as layout
from contract.bundle import BundleError, Manifest
from contract.risk import sigmoid

log = logging.getLogger(__name__)


def choose_providers(precision: str, requested: Sequence[str] | None = None) -> list[str]:
    """TensorRT, then CUDA, then CPU, as far as this onnxruntime offers them; a warning names any fallback."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise BundleError(f"execution provider(s) {missing} not available here; available: {available}")
        return list(requested)
    chosen = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    chosen.append("CPUExecutionProvider")
    if len(chosen) == 1 and precision == "fp16":
        log.warning("fp16 bundle on CPUExecutionProvider: no CUDA or TensorRT provider here (onnxruntime offers %s); "
                    "it runs, but fp16 is meant for GPUs and is no faster than fp32 on a CPU", available)
    return chosen


class RiskModel:
    """A verified bundle, ready to encode frames and score windows."""

    def __init__(self, folder: str | Path, providers: Sequence[str] | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise BundleError(f"{self.folder}: no such bundle folder")
        self.manifest = Manifest.read(self.folder)
        self.manifest.verify_files(self.folder)
        self.providers = choose_providers(self.manifest.precision, providers)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.vision = ort.InferenceSession(str(self.folder / layout.VISION), options, providers=self.providers)
            self.head = ort.InferenceSession(str(self.folder / layout.HEAD), options, providers=self.providers)
        except Exception as err:  # onnxruntime raises its own exception types, not importable portably
            raise BundleError(f"{self.folder}: onnxruntime cannot load a graph ({err})") from None
        running = self.vision.get_providers()[0]
        if running != self.providers[0]:
            log.warning("%s is installed but could not start (no usable GPU or driver?); running on %s",
                        self.providers[0], running)
        log.info("bundle %s (%s) on %s", self.folder, self.manifest.precision, running)
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
        the bundle, content hash, and whether it is the demo model (generated scenes only)."""
        m = self.manifest
        return {"name": self.folder.name, "precision": m.precision, "threshold": m.threshold,
                "hash": m.content_hash, "demo": demo}

    @property
    def prompt_length(self) -> int:
        return int(self._prompt_template.shape[0])

    def encode_frames(self, pixels: np.ndarray) -> np.ndarray:
        """Preprocessed frames [F, 3, S, S] -> image embeddings [F, T, D] (float32)."""
        feed = {layout.VISION_INPUT: np.ascontiguousarray(pixels, np.float32)}
        return self.vision.run([layout.VISION_OUTPUT], feed)[0].astype(np.float32)

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
        return float(self.head.run([layout.HEAD_OUTPUT], feed)[0][0])

    def window_probability(self, frame_embeds: np.ndarray) -> float:
        """The window's crash-risk probability."""
        return float(sigmoid(self.window_logit(frame_embeds)))
