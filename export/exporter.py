"""``crashwatch export``: checkpoint (or a pretrained model's zero-shot answer) -> bundle, checked against
PyTorch before it is published.

The bundle is staged in ``OUT.partial`` and renamed to ``OUT`` only after the parity check passed, so a
failed or interrupted export never leaves something that looks like a bundle.
"""

from __future__ import annotations

import importlib.util
import logging
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from crashwatch.contract.bundle import (
    BLOCK,
    GRAPH_FILES,
    GRAPHS,
    HEAD,
    PRECISIONS,
    PROMPT_IDS,
    READOUT,
    TOKEN_EMBEDDINGS,
    TOKEN_IDS,
    VISION,
    StreamingSegments,
    build_manifest,
    describe_files,
    openvino_file,
    write_manifest,
)
from crashwatch.contract.preprocess import preprocess_frames
from crashwatch.contract.prompt import PromptLayout
from crashwatch.contract.video import probe_clip, read_frames
from crashwatch.export.errors import ExportError
from crashwatch.export.fusion import fuse_vision
from crashwatch.export.graphs import export_block, export_head, export_readout, export_vision, state_shape
from crashwatch.export.parity import check_parity, parity_frames
from crashwatch.export.precision import CONVERTERS, to_openvino, to_openvino_int8
from crashwatch.export.sharing import share_weights
from crashwatch.export.zeroshot import DEFAULT_ANSWERS, load_zero_shot
from crashwatch.monitor.engines.local import Runtime, openvino_installed
from crashwatch.train.checkpoint import Checkpoint, load_checkpoint
from crashwatch.train.config import load_config

log = logging.getLogger(__name__)

CALIBRATION_FRAMES = 16  # as many as NNCF's int8 vision graph was measured with (docs/benchmarks.md)


@dataclass(frozen=True)
class Calibration:
    """The real frames an int8 graph's activation ranges come from: the clip, its frame indices, preprocessed."""

    video: str
    indices: list[int]
    pixels: np.ndarray


def export_bundle(checkpoint_dir: Path, out: Path, precision: str, video: Path, force: bool = False,
                  openvino: bool = False) -> dict[str, Any]:
    """Write the bundle for the trained run at ``checkpoint_dir`` at ``out`` and return its manifest; with
    ``openvino``, OpenVINO graphs beside the ONNX ones, checked against PyTorch as well."""
    clip = _check_request(out, precision, video, force, openvino)
    return _publish(load_checkpoint(checkpoint_dir), str(checkpoint_dir), out, precision, clip, openvino)


def export_zero_shot(model: str, config_path: Path, out: Path, precision: str, video: Path,
                     answers: Sequence[str] = DEFAULT_ANSWERS, force: bool = False,
                     openvino: bool = False) -> dict[str, Any]:
    """Write a zero-shot baseline bundle of the pretrained ``model`` (``crashwatch.export.zeroshot``: its own logit of the
    first answer minus the second's) on the window, frame size and question of the run configuration at
    ``config_path``, checked like any other export; return its manifest."""
    clip = _check_request(out, precision, video, force, openvino)
    return _publish(load_zero_shot(model, load_config(config_path), answers), model, out, precision, clip, openvino)


def _check_request(out: Path, precision: str, video: Path, force: bool, openvino: bool) -> Path:
    """Refuse what cannot be exported before any model is loaded; the parity clip, probed."""
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if openvino and not openvino_installed():
        raise ExportError("--openvino: the openvino package is not installed (pip install 'crashwatch[openvino]')")
    if openvino and precision == "int8" and importlib.util.find_spec("nncf") is None:
        raise ExportError("--openvino at int8: the nncf package, which quantizes OpenVINO's vision graph, is not "
                          "installed (pip install 'crashwatch[train]')")
    if out.exists() and any(out.iterdir()) and not force:
        raise ExportError(f"{out}: exists and is not empty (use --force to replace it)")
    return probe_clip(video).path


def _publish(run: Checkpoint, source: str, out: Path, precision: str, clip: Path, openvino: bool) -> dict[str, Any]:
    """Stage the bundle of ``run``, check it against PyTorch on ``clip``, and only then move it to ``out``."""
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _write_prompt(run, staging)
        calibration = _calibration_frames(run, clip) if openvino and precision == "int8" else None
        shared = _write_graphs(run, staging, precision, openvino, calibration)
        manifest = _manifest(run, source, precision, staging, openvino, shared, calibration)
        write_manifest(staging, manifest)
        parity = check_parity(run, staging, clip, precision, openvino)
        manifest["parity"] = parity[Runtime.ONNXRUNTIME]
        if openvino:
            manifest["openvino"]["parity"] = parity[Runtime.OPENVINO]
        write_manifest(staging, manifest)
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
    49k-row table. (The prompt depends on the window and question only, and a zero-shot model's answers: all
    fixed in the bundle.)"""
    model = run.model
    ids = np.asarray(run.prompt_ids(), np.int64)
    used = np.unique(ids[ids != model.image_token_id])
    with torch.no_grad():
        table = model.text_model.get_input_embeddings().weight[torch.from_numpy(used)].float().numpy()
    np.save(folder / PROMPT_IDS, ids, allow_pickle=False)
    np.save(folder / TOKEN_IDS, used, allow_pickle=False)
    np.save(folder / TOKEN_EMBEDDINGS, table, allow_pickle=False)


def _calibration_frames(run: Checkpoint, clip: Path) -> Calibration:
    """``CALIBRATION_FRAMES`` frames spread over the parity clip, none of those the parity check scores, for
    the OpenVINO int8 vision graph's activation ranges."""
    info = probe_clip(clip)
    scored = set(parity_frames(info, run.config.window))
    others = [i for i in range(info.num_frames) if i not in scored]
    indices = sorted({others[round(k)] for k in np.linspace(0, len(others) - 1, min(CALIBRATION_FRAMES, len(others)))})
    return Calibration(clip.name, indices, preprocess_frames(read_frames(clip, indices), run.config.pixels))


def _write_graphs(run: Checkpoint, folder: Path, precision: str, openvino: bool,
                  calibration: Calibration | None) -> dict[str, Any] | None:
    """The fp32 graphs of the run's layout traced once (into the bundle itself for fp32), then converted to what
    is asked for (OpenVINO's vision graph to int8 with ``calibration``); the streaming layout's text weights
    then held once (``crashwatch.export.sharing``), the manifest's ``shared_weights`` returned."""
    graphs = GRAPHS[run.config.layout]
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".fp32-") as scratch:
        fp32 = folder if precision == "fp32" else Path(scratch)
        export_vision(run.model, fp32 / VISION)
        fuse_vision(fp32 / VISION, run.model.backbone.config.vision_config.num_attention_heads)
        if run.config.layout is PromptLayout.STREAMING:
            export_block(run.model, fp32 / BLOCK)
            export_readout(run.model, fp32 / READOUT, run.prompt().lengths, run.config.window.num_frames)
        else:
            export_head(run.model, fp32 / HEAD)
        for graph in graphs:
            name = GRAPH_FILES[graph]
            if precision != "fp32":
                log.info("converting %s to %s", name, precision)
                CONVERTERS[precision](fp32 / name, folder / name)
            if openvino and graph == "vision" and calibration is not None:
                log.info("quantizing %s to int8 for OpenVINO (NNCF, %d frames of %s)", name,
                         len(calibration.indices), calibration.video)
                to_openvino_int8(fp32 / name, folder / openvino_file(graph), calibration.pixels)
            elif openvino:
                log.info("converting %s to OpenVINO IR", name)
                to_openvino(fp32 / name, folder / openvino_file(graph))
    return share_weights(folder, graphs[1:]) if run.config.layout is PromptLayout.STREAMING else None


def _manifest(run: Checkpoint, source: str, precision: str, folder: Path, openvino: bool,
              shared: dict[str, Any] | None, calibration: Calibration | None) -> dict[str, Any]:
    import onnx
    import onnxruntime
    import transformers

    config, model = run.config, run.model
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "transformers": transformers.__version__, "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__}
    if openvino:
        import openvino as ov

        versions["openvino"] = ov.__version__
    lengths = run.prompt().lengths
    segments = None if lengths is None else StreamingSegments(*lengths, state=state_shape(model))
    openvino_graphs: dict[str, Any] = {graph: openvino_file(graph) for graph in GRAPHS[config.layout]}
    openvino_graphs["weights"] = {graph: "int8" if graph == "vision" and calibration else "fp16"
                                  for graph in GRAPHS[config.layout]}
    if calibration is not None:
        openvino_graphs["calibration"] = {"video": calibration.video, "frames": calibration.indices,
                                          "method": "NNCF post-training quantization (transformer)"}
    return build_manifest(
        precision=precision,
        backbone=config.backbone.pretrained if not config.backbone.random_init else "random-init SmolVLM",
        hidden_size=model.backbone.config.text_config.hidden_size,
        tokens_per_frame=model.tokens_per_frame,
        image_token_id=model.image_token_id,
        parameters=model.parameter_counts()["total"],
        head=model.head.describe(),
        window=config.window,
        pixels=config.pixels,
        question=config.question,
        threshold=run.threshold,
        files=describe_files(folder),
        source_checkpoint=source,
        validation=run.meta.get("validation", {}),
        versions=versions,
        segments=segments,
        openvino=openvino_graphs if openvino else None,
        zero_shot=run.meta.get("zero_shot"),
        shared_weights=shared,
    )
