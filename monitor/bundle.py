"""A crashwatch bundle: the ONNX graphs and everything the monitor needs to run them without torch.

Layout (``manifest.json`` lists every file with its SHA-256; nothing else may be in the folder)::

    manifest.json         format version, model description, window geometry, question, threshold,
                          graph inputs/outputs, file checksums, producing versions, parity figures
    vision.onnx           pixels [F, 3, S, S] -> per-frame image embeddings [F, T, D]
    head.onnx             prompt embeddings [B, L, D] + attention mask [B, L] -> logits [B]
    *.onnx.data           external weights of a large graph, next to the graph that names it
    prompt_ids.npy        the prompt's token ids [L] (int64); image positions hold the image token id
    token_ids.npy         the distinct ids the prompt uses, sorted [U]
    token_embeddings.npy  their rows of the text model's embedding table [U, D] (float32)

``RiskModel`` verifies all of it on open, then offers the two calls the monitor makes: encode frames (once
per frame, cacheable) and score a window of cached frame embeddings.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from monitor.versioned import read_versioned_json

log = logging.getLogger(__name__)

FORMAT = "crashwatch-bundle"
VERSION = 1
MANIFEST = "manifest.json"
VISION = "vision.onnx"
HEAD = "head.onnx"
PROMPT_IDS = "prompt_ids.npy"
TOKEN_IDS = "token_ids.npy"
TOKEN_EMBEDDINGS = "token_embeddings.npy"
PRECISIONS = ("fp32", "fp16", "int8")


class BundleError(Exception):
    """A bundle that cannot be used; the message names the file and what is wrong."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def set_threshold(folder: Path, threshold: float, calibration: dict[str, Any]) -> None:
    """Make ``threshold`` a bundle's alert threshold, keeping the one it replaces and how this one was chosen
    (``crashwatch calibrate``) in the manifest."""
    path = folder / MANIFEST
    raw = Manifest.read(folder).raw
    raw.setdefault("threshold_from_validation", raw["threshold"])
    raw["threshold"] = threshold
    raw["threshold_calibration"] = calibration
    path.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Manifest:
    """The parts of ``manifest.json`` the runtime relies on (the rest is description for people)."""

    raw: dict[str, Any]
    precision: str
    window_seconds: float
    num_frames: int
    image_size: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    tokens_per_frame: int
    hidden_size: int
    image_token_id: int
    question: str
    threshold: float
    files: dict[str, dict[str, Any]]

    @classmethod
    def read(cls, folder: Path) -> "Manifest":
        path = folder / MANIFEST
        raw = read_versioned_json(path, FORMAT, VERSION, BundleError, "crashwatch export")
        try:
            model, window, pixels = raw["model"], raw["window"], raw["pixels"]
            manifest = cls(
                raw=raw,
                precision=str(raw["precision"]),
                window_seconds=float(window["seconds"]),
                num_frames=int(window["num_frames"]),
                image_size=int(pixels["image_size"]),
                image_mean=tuple(float(v) for v in pixels["mean"]),
                image_std=tuple(float(v) for v in pixels["std"]),
                tokens_per_frame=int(model["tokens_per_frame"]),
                hidden_size=int(model["hidden_size"]),
                image_token_id=int(model["image_token_id"]),
                question=str(raw["question"]),
                threshold=float(raw["threshold"]),
                files=dict(raw["files"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise BundleError(f"{path}: malformed manifest ({type(err).__name__}: {err})") from None
        if manifest.precision not in PRECISIONS:
            raise BundleError(f"{path}: unknown precision {manifest.precision!r}")
        return manifest

    def verify_files(self, folder: Path) -> None:
        """Every listed file present with its size and checksum, and nothing unlisted beside them."""
        for name, entry in self.files.items():
            path = folder / name
            if Path(name).name != name:
                raise BundleError(f"{folder / MANIFEST}: file entry {name!r} is not a plain file name")
            if not path.is_file():
                raise BundleError(f"{path}: missing from the bundle")
            size = path.stat().st_size
            if size != entry.get("bytes"):
                raise BundleError(f"{path}: {size} bytes, the manifest says {entry.get('bytes')} (truncated or changed)")
            if sha256_of(path) != entry.get("sha256"):
                raise BundleError(f"{path}: checksum differs from the manifest (the file was changed)")
        extra = sorted(p.name for p in folder.iterdir() if p.name != MANIFEST and p.name not in self.files)
        if extra:
            raise BundleError(f"{folder}: file(s) not in the manifest: {', '.join(extra)}")


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
            self.vision = ort.InferenceSession(str(self.folder / VISION), options, providers=self.providers)
            self.head = ort.InferenceSession(str(self.folder / HEAD), options, providers=self.providers)
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

        prompt_ids, token_ids, table = load(PROMPT_IDS), load(TOKEN_IDS), load(TOKEN_EMBEDDINGS)
        m = self.manifest
        if table.shape != (token_ids.shape[0], m.hidden_size) or prompt_ids.ndim != 1:
            raise BundleError(f"{self.folder}: prompt arrays have shapes {prompt_ids.shape}, {token_ids.shape}, "
                              f"{table.shape}, inconsistent with hidden size {m.hidden_size}")
        image_rows = np.flatnonzero(prompt_ids == m.image_token_id)
        if image_rows.size != m.num_frames * m.tokens_per_frame:
            raise BundleError(f"{self.folder / PROMPT_IDS}: {image_rows.size} image tokens, expected "
                              f"{m.num_frames} frames x {m.tokens_per_frame}")
        text = prompt_ids != m.image_token_id
        lookup = np.searchsorted(token_ids, prompt_ids[text])
        if np.any(lookup >= token_ids.size) or np.any(token_ids[lookup.clip(max=token_ids.size - 1)] != prompt_ids[text]):
            raise BundleError(f"{self.folder / TOKEN_IDS}: does not cover every prompt token")
        template = np.zeros((prompt_ids.size, m.hidden_size), np.float32)
        template[text] = table[lookup]
        return template, image_rows

    @property
    def prompt_length(self) -> int:
        return int(self._prompt_template.shape[0])

    def encode_frames(self, pixels: np.ndarray) -> np.ndarray:
        """Preprocessed frames [F, 3, S, S] -> image embeddings [F, T, D] (float32)."""
        return self.vision.run(None, {"pixel_values": np.ascontiguousarray(pixels, np.float32)})[0].astype(np.float32)

    def score_logit(self, frame_embeds: np.ndarray) -> float:
        """Image embeddings of one window's frames, oldest first [num_frames, T, D] -> the window's logit."""
        m = self.manifest
        expected = (m.num_frames, m.tokens_per_frame, m.hidden_size)
        if frame_embeds.shape != expected:
            raise ValueError(f"a window needs frame embeddings of shape {expected}, got {frame_embeds.shape}")
        embeds = self._prompt_template.copy()
        embeds[self._image_rows] = frame_embeds.reshape(-1, m.hidden_size)
        mask = np.ones((1, embeds.shape[0]), np.int64)
        return float(self.head.run(None, {"inputs_embeds": embeds[None], "attention_mask": mask})[0][0])

    def score(self, frame_embeds: np.ndarray) -> float:
        """The window's crash-risk probability."""
        return float(1.0 / (1.0 + np.exp(-self.score_logit(frame_embeds))))
