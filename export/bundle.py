"""``crashwatch export``: checkpoint -> bundle, checked against PyTorch before it is published.

The bundle is staged in ``OUT.partial`` and renamed to ``OUT`` only after the parity check passed, so a
failed or interrupted export never leaves something that looks like a bundle.
"""

from __future__ import annotations

import datetime
import json
import logging
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import crashwatch
from export.graphs import export_head, export_vision
from export.precision import CONVERTERS
from monitor import bundle as layout
from monitor.bundle import RiskModel, sha256_of
from monitor.preprocess import preprocess_frames
from monitor.video import probe_clip, read_frames
from monitor.window import pick_frames
from train.checkpoint import Checkpoint, load_checkpoint
from train.dataset import PromptEncoder

log = logging.getLogger(__name__)


class ExportError(Exception):
    """The export cannot be completed; the message says why (including parity figures over tolerance)."""


@dataclass(frozen=True)
class Tolerance:
    """Most the exported bundle may differ from PyTorch fp32 on one window of real frames."""

    min_embedding_cosine: float
    max_probability_diff: float


# fp32 should match up to float rounding. fp16 keeps ~3 decimal digits. Dynamic int8 measured a frame-embedding
# cosine of 0.9993 (vision) and >= 0.994 (text) with random weights; real weights have outliers, hence margin.
TOLERANCES = {
    "fp32": Tolerance(min_embedding_cosine=0.99999, max_probability_diff=1e-3),
    "fp16": Tolerance(min_embedding_cosine=0.999, max_probability_diff=0.01),
    "int8": Tolerance(min_embedding_cosine=0.99, max_probability_diff=0.05),
}


def export_bundle(checkpoint_dir: Path, out: Path, precision: str, video: Path, force: bool = False) -> dict[str, Any]:
    """Write the bundle for ``checkpoint_dir`` at ``out`` and return its manifest."""
    if precision not in TOLERANCES:
        raise ExportError(f"unknown precision {precision!r}; choose from {', '.join(TOLERANCES)}")
    if out.exists() and any(out.iterdir()) and not force:
        raise ExportError(f"{out}: exists and is not empty (use --force to replace it)")
    clip = probe_clip(video)
    run = load_checkpoint(checkpoint_dir)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _write_prompt(run, staging)
        _write_graphs(run, staging, precision)
        manifest = _manifest(run, checkpoint_dir, precision, staging)
        _write_manifest(staging, manifest)
        manifest["parity"] = _check_parity(run, staging, clip.path, precision)
        _write_manifest(staging, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    log.info("bundle written to %s", out)
    return manifest


def _write_prompt(run: Checkpoint, folder: Path) -> None:
    """The prompt's token ids and only the embedding rows they use: the monitor needs no tokenizer and no
    49k-row table. (The prompt depends on geometry and question only, both fixed in the bundle.)"""
    model = run.model
    ids = np.asarray(PromptEncoder(run.tokenizer, run.config.geometry, model.tokens_per_frame)(run.config.question),
                     np.int64)
    used = np.unique(ids[ids != model.image_token_id])
    with torch.no_grad():
        table = model.text_model.get_input_embeddings().weight[torch.from_numpy(used)].float().numpy()
    np.save(folder / layout.PROMPT_IDS, ids, allow_pickle=False)
    np.save(folder / layout.TOKEN_IDS, used, allow_pickle=False)
    np.save(folder / layout.TOKEN_EMBEDDINGS, table, allow_pickle=False)


def _write_graphs(run: Checkpoint, folder: Path, precision: str) -> None:
    if precision == "fp32":
        export_vision(run.model, folder / layout.VISION, run.config.image_size)
        export_head(run.model, folder / layout.HEAD)
        return
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".fp32-") as scratch:
        fp32 = Path(scratch)
        export_vision(run.model, fp32 / layout.VISION, run.config.image_size)
        export_head(run.model, fp32 / layout.HEAD)
        for name in (layout.VISION, layout.HEAD):
            log.info("converting %s to %s", name, precision)
            CONVERTERS[precision](fp32 / name, folder / name)


def _manifest(run: Checkpoint, checkpoint_dir: Path, precision: str, folder: Path) -> dict[str, Any]:
    import onnx
    import onnxruntime
    import transformers

    config, model = run.config, run.model
    files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_of(p)}
             for p in sorted(folder.iterdir()) if p.name != layout.MANIFEST}
    hidden = model.backbone.config.text_config.hidden_size
    frames, seq = "frames", "sequence"
    return {
        "format": layout.FORMAT,
        "version": layout.VERSION,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "precision": precision,
        "model": {
            "backbone": config.backbone.pretrained if not config.backbone.random_init else "random-init SmolVLM",
            "hidden_size": hidden,
            "tokens_per_frame": model.tokens_per_frame,
            "image_token_id": model.image_token_id,
            "parameters": model.parameter_counts()["total"],
            "head": {"hidden": config.head.hidden, "dropout": config.head.dropout},
        },
        "window": {"seconds": config.window_seconds, "num_frames": config.num_frames},
        "pixels": {"image_size": config.image_size, "mean": list(config.image_mean), "std": list(config.image_std)},
        "question": config.question,
        "threshold": run.threshold,
        "graphs": {
            "vision": {
                "file": layout.VISION,
                "inputs": [{"name": "pixel_values", "dtype": "float32", "shape": [frames, 3, config.image_size, config.image_size]}],
                "outputs": [{"name": "frame_embeds", "dtype": "float32", "shape": [frames, model.tokens_per_frame, hidden]}],
            },
            "head": {
                "file": layout.HEAD,
                "inputs": [{"name": "inputs_embeds", "dtype": "float32", "shape": ["batch", seq, hidden]},
                           {"name": "attention_mask", "dtype": "int64", "shape": ["batch", seq]}],
                "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch"]}],
            },
        },
        "files": files,
        "source_checkpoint": str(checkpoint_dir),
        "validation": run.meta.get("validation", {}),
        "versions": {
            "crashwatch": crashwatch.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
        },
    }


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / layout.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def _check_parity(run: Checkpoint, folder: Path, video: Path, precision: str) -> dict[str, Any]:
    """Score the last window of ``video`` with PyTorch fp32 and with the staged bundle, through the monitor's
    own loader; fail when the difference passes the precision's tolerance."""
    clip = probe_clip(video)
    indices = pick_frames(clip.timestamps(), clip.timestamps()[-1], run.config.geometry)
    pixels = preprocess_frames(read_frames(video, indices), run.config.pixels)
    model = run.model
    ids = torch.tensor([PromptEncoder(run.tokenizer, run.config.geometry, model.tokens_per_frame)(run.config.question)])
    with torch.no_grad():
        torch_embeds = model.encode_frames(torch.from_numpy(pixels))
        torch_logit = float(model.score(model.embed_prompt(ids, torch_embeds), torch.ones_like(ids))[0])
    bundle = RiskModel(folder)
    onnx_embeds = bundle.encode_frames(pixels)
    onnx_logit = bundle.score_logit(onnx_embeds)
    probability = lambda logit: 1.0 / (1.0 + np.exp(-logit))  # noqa: E731
    tolerance = TOLERANCES[precision]
    figures = {
        "video": video.name,
        "frames": indices,
        "embedding_max_abs_diff": float(np.abs(torch_embeds.numpy() - onnx_embeds).max()),
        "embedding_cosine": _cosine(torch_embeds.numpy(), onnx_embeds),
        "torch_logit": torch_logit,
        "onnx_logit": onnx_logit,
        "logit_abs_diff": abs(torch_logit - onnx_logit),
        "probability_abs_diff": float(abs(probability(torch_logit) - probability(onnx_logit))),
        "tolerance": {"min_embedding_cosine": tolerance.min_embedding_cosine,
                      "max_probability_diff": tolerance.max_probability_diff},
    }
    log.info("parity %s: embedding cosine %.6f (max |diff| %.2e), probability |diff| %.2e",
             precision, figures["embedding_cosine"], figures["embedding_max_abs_diff"], figures["probability_abs_diff"])
    if figures["embedding_cosine"] < tolerance.min_embedding_cosine or \
            figures["probability_abs_diff"] > tolerance.max_probability_diff:
        raise ExportError(f"{precision} export does not match PyTorch within tolerance: "
                          f"embedding cosine {figures['embedding_cosine']:.6f} (min {tolerance.min_embedding_cosine}), "
                          f"probability |diff| {figures['probability_abs_diff']:.2e} (max {tolerance.max_probability_diff}); "
                          "no bundle written")
    return figures
