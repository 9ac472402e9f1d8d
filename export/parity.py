"""The export's check: the staged bundle against PyTorch fp32 on one window of real frames, per precision and
per runtime that will run it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crashwatch.contract.preprocess import preprocess_frames
from crashwatch.contract.risk import sigmoid
from crashwatch.contract.video import ClipInfo, probe_clip, read_frames
from crashwatch.contract.window import WindowSpec, pick_frames
from crashwatch.export.errors import ExportError
from crashwatch.monitor.engines.local import Runtime
from crashwatch.monitor.engines.model import RiskModel
from crashwatch.train.checkpoint import Checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tolerance:
    """Most the exported bundle may differ from PyTorch fp32 on one window of real frames."""

    min_embedding_cosine: float
    max_probability_diff: float


# fp32 should match up to float rounding; fp16 keeps about 3 decimal digits; dynamic int8 has margin for the
# outliers of real weights (the figures measured with random weights are in docs/benchmarks.md).
TOLERANCES = {
    "fp32": Tolerance(min_embedding_cosine=0.99999, max_probability_diff=1e-3),
    "fp16": Tolerance(min_embedding_cosine=0.999, max_probability_diff=0.01),
    "int8": Tolerance(min_embedding_cosine=0.99, max_probability_diff=0.05),
}
# OpenVINO's graphs have fp16 weights and run at bf16 on CPUs with bf16 units (8 bits of mantissa): held to the
# int8 tolerance.
OPENVINO_TOLERANCE = TOLERANCES["int8"]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def reference_logit(run: Checkpoint, pixels: np.ndarray) -> tuple[np.ndarray, float]:
    """PyTorch fp32 on one window's preprocessed frames ``[F, 3, S, S]``: their image embeddings ``[F, T, D]`` and
    the window's logit from the text model over the whole prompt, with the streaming layout's mask where the run
    has it: the full recomputation a bundle's cached path must equal."""
    model, prompt = run.model, run.prompt()
    ids = torch.tensor([prompt.ids])
    segments = None if prompt.segments is None else torch.tensor([prompt.segments])
    with torch.no_grad():
        embeds = model.encode_frames(torch.from_numpy(pixels))
        logit = model.window_logits(model.embed_prompt(ids, embeds), torch.ones_like(ids), segments)
    return embeds.numpy(), float(logit[0])


def parity_frames(clip: ClipInfo, window: WindowSpec) -> list[int]:
    """The frames of ``clip`` the check scores: its last window."""
    timestamps = clip.timestamps()
    return pick_frames(timestamps, timestamps[-1], window)


def check_parity(run: Checkpoint, folder: Path, video: Path, precision: str,
                 openvino: bool = False) -> dict[Runtime, dict[str, Any]]:
    """Score the last window of ``video`` with PyTorch fp32 and with the staged bundle, through the monitor's
    own loader, on onnxruntime (and OpenVINO with ``openvino``); fail when a difference passes its tolerance."""
    indices = parity_frames(probe_clip(video), run.config.window)
    pixels = preprocess_frames(read_frames(video, indices), run.config.pixels)
    torch_embeds, torch_logit = reference_logit(run, pixels)
    checks = [(Runtime.ONNXRUNTIME, precision, TOLERANCES[precision])]
    if openvino:
        checks.append((Runtime.OPENVINO, "OpenVINO", OPENVINO_TOLERANCE))
    results = {}
    for runtime, label, tolerance in checks:
        bundle = RiskModel.open(folder, runtime=runtime)
        onnx_embeds = bundle.embed_frames(pixels)
        onnx_logit = bundle.window_logit(bundle.encode_frames(pixels))
        figures = {
            "video": video.name,
            "frames": indices,
            "inference_precision": bundle.engine.inference_precision,
            "embedding_max_abs_diff": float(np.abs(torch_embeds - onnx_embeds).max()),
            "embedding_cosine": _cosine(torch_embeds, onnx_embeds),
            "torch_logit": torch_logit,
            "onnx_logit": onnx_logit,
            "logit_abs_diff": abs(torch_logit - onnx_logit),
            "probability_abs_diff": float(abs(sigmoid(torch_logit) - sigmoid(onnx_logit))),
            "tolerance": {"min_embedding_cosine": tolerance.min_embedding_cosine,
                          "max_probability_diff": tolerance.max_probability_diff},
        }
        log.info("parity %s on %s at %s: embedding cosine %.6f (max |diff| %.2e), probability |diff| %.2e", label,
                 runtime.value, figures["inference_precision"], figures["embedding_cosine"],
                 figures["embedding_max_abs_diff"], figures["probability_abs_diff"])
        if figures["embedding_cosine"] < tolerance.min_embedding_cosine or \
                figures["probability_abs_diff"] > tolerance.max_probability_diff:
            raise ExportError(f"{label} export does not match PyTorch within tolerance on {runtime.value}: "
                              f"embedding cosine {figures['embedding_cosine']:.6f} (min {tolerance.min_embedding_cosine}), "
                              f"probability |diff| {figures['probability_abs_diff']:.2e} "
                              f"(max {tolerance.max_probability_diff}); no bundle written")
        results[runtime] = figures
    return results
