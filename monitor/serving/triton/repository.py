"""A bundle as a Triton model repository: what ``crashwatch export-triton`` writes for NVIDIA's Triton container,
and, with the graphs on the Python backend, what ``crashwatch serve-triton`` serves from the nvidia-pytriton wheel.

Layout, for ``--name NAME``::

    REPO/NAME_vision/config.pbtxt   pixel_values [frames, 3, S, S] -> frame_embeds [frames, T, D]; frames the batch
    REPO/NAME_vision/1/vision.onnx  (and vision.onnx.data where the bundle has one)
    REPO/NAME_head/config.pbtxt     inputs_embeds [batch, L, D] + attention_mask [batch, L] -> logits [batch]
    REPO/NAME_head/1/head.onnx
    REPO/NAME_bundle/config.pbtxt   Python backend, no inputs: one UINT8 output per file, its bytes
    REPO/NAME_bundle/1/model.py, manifest.json, prompt_ids.npy, token_ids.npy, token_embeddings.npy

The configs are built from the manifest's own description of the graphs (``graphs`` in ``manifest.json``): Triton's
batch dimension is implicit when ``max_batch_size`` > 0, so a graph's first (symbolic) dimension is left out of
``dims``, other symbolic ones are -1, and the head's logits, of the batch dimension alone, are ``dims: [1]``
reshaped to ``[]``. int8 bundles get no dynamic batching (``_batching``).
"""

from __future__ import annotations

import enum
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from crashwatch.contract.bundle import Manifest
from crashwatch.monitor.engines.triton import BUNDLE_FILES, TritonError, check_servable, model_name

BACKEND_MODEL = Path(__file__).with_name("backend") / "model.py"
VERSION = "1"  # the one version folder of every model
DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class Backend(str, enum.Enum):
    """How the two graphs are served."""

    ONNXRUNTIME = "onnxruntime_onnx"  # Triton's onnxruntime backend: NVIDIA's container
    PYTHON = "python"  # crashwatch's Python model running onnxruntime: the nvidia-pytriton wheel's server


@dataclass(frozen=True)
class RepositoryOptions:
    name: str = "crashwatch"
    max_batch: int = 8
    queue_delay_us: int = 2000
    instances: int = 1
    gpu: bool = False

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise TritonError(f"--name {self.name!r}: letters, digits, '_', '.' and '-' only, starting with a letter "
                              "or digit (it names the models and their folders)")


def write_repository(bundle: Path, out: Path, options: RepositoryOptions, backend: Backend = Backend.ONNXRUNTIME,
                     link: bool = False) -> Manifest:
    """Write ``out`` (which must not exist) for the verified bundle in ``bundle``; with ``link`` the bundle's files
    are symbolic links instead of copies (``serve-triton``'s working repository)."""
    if not bundle.is_dir():
        raise TritonError(f"{bundle}: no such bundle folder")
    manifest = Manifest.read(bundle)
    manifest.verify_files(bundle)
    check_servable(manifest, str(bundle))
    if out.exists():
        raise TritonError(f"{out}: already exists (use --force to replace it)")
    staging = out.with_name(f".{out.name}.partial")  # a failure leaves nothing at ``out``
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _write(bundle, staging, manifest, options, backend, _link if link else shutil.copy2)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _write(bundle: Path, out: Path, manifest: Manifest, options: RepositoryOptions, backend: Backend,
           put: Callable[[Path, Path], object]) -> None:
    for part in ("vision", "head"):
        graph = manifest.raw["graphs"][part]
        folder = out / model_name(options.name, part) / VERSION
        folder.mkdir(parents=True)
        for file in (graph["file"], graph["file"] + ".data"):
            if file in manifest.files:
                put(bundle / file, folder / file)
        if backend is Backend.PYTHON:
            shutil.copy2(BACKEND_MODEL, folder / "model.py")
        (folder.parent / "config.pbtxt").write_text(graph_config(manifest, part, options, backend, bundle.name),
                                                    encoding="utf-8")
    folder = out / model_name(options.name, "bundle") / VERSION
    folder.mkdir(parents=True)
    for file in BUNDLE_FILES.values():
        put(bundle / file, folder / file)
    shutil.copy2(BACKEND_MODEL, folder / "model.py")
    (folder.parent / "config.pbtxt").write_text(bundle_config(manifest, options, bundle.name), encoding="utf-8")


def _link(source: Path, target: Path) -> None:
    target.symlink_to(source.resolve())


def graph_config(manifest: Manifest, part: str, options: RepositoryOptions, backend: Backend, label: str) -> str:
    """``config.pbtxt`` of the vision or head graph; ``label`` names the bundle in its opening comment."""
    graph = manifest.raw["graphs"][part]
    what = ("the vision graph: frames -> per-frame image embeddings" if part == "vision" else
            "the head: prompt embeddings with the image embeddings merged in, and the mask -> one logit per window")
    lines = [f"# crashwatch bundle {label!r} ({manifest.precision}, content {manifest.content_hash}): {what}.",
             "# max_batch_size > 0: the first dimension (frames, windows) is the batch, left out of dims.",
             f'name: "{model_name(options.name, part)}"']
    if backend is Backend.ONNXRUNTIME:
        lines += [f'platform: "{backend.value}"', f'default_model_filename: "{graph["file"]}"']
    else:
        lines += ["# Triton's Python backend running the ONNX graph with onnxruntime (crashwatch serve-triton).",
                  f'backend: "{backend.value}"',
                  f'parameters {{ key: "onnx_file" value {{ string_value: "{graph["file"]}" }} }}']
    lines.append(f"max_batch_size: {options.max_batch}")
    lines += _tensors("input", graph["inputs"])
    lines += _tensors("output", graph["outputs"])
    lines += _batching(manifest, options)
    kind = "KIND_GPU" if options.gpu and backend is Backend.ONNXRUNTIME else "KIND_CPU"
    lines.append(f"instance_group [ {{ count: {options.instances} kind: {kind} }} ]")
    return "\n".join(lines) + "\n"


def _batching(manifest: Manifest, options: RepositoryOptions) -> list[str]:
    if manifest.precision == "int8":
        return ["# No dynamic_batching: this bundle is int8, quantized dynamically (onnxruntime computes each",
                "# activation's scale over the whole batch as it runs), so two cameras' requests run as one batch",
                "# would change each other's results (measured: 0.0075 logit on the 256M head). Each request runs",
                "# alone (the frames of one request, where it sends several, as its one batch)."]
    return ["# Requests of several cameras are run together: at fp32 and fp16 a frame's embeddings and a window's",
            "# logit do not depend on what else is in the batch (within float rounding).",
            f"dynamic_batching {{ max_queue_delay_microseconds: {options.queue_delay_us} }}"]


def bundle_config(manifest: Manifest, options: RepositoryOptions, label: str) -> str:
    """``config.pbtxt`` of the model that serves the manifest and prompt arrays."""
    lines = [f"# crashwatch bundle {label!r} ({manifest.precision}, content {manifest.content_hash}): its manifest",
             "# and prompt arrays, each output the bytes of one file (checked against the manifest's checksums by",
             "# the client), so that `crashwatch monitor --model triton://HOST:PORT/NAME` needs no copy of the bundle.",
             f'name: "{model_name(options.name, "bundle")}"',
             'backend: "python"',
             "max_batch_size: 0",
             "output ["]
    lines.append(",\n".join(f'  {{ name: "{output}" data_type: TYPE_UINT8 dims: [ -1 ] }}' for output in BUNDLE_FILES))
    lines.append("]")
    lines += [f'parameters {{ key: "{output}" value {{ string_value: "{file}" }} }}'
              for output, file in BUNDLE_FILES.items()]
    lines.append("instance_group [ { count: 1 kind: KIND_CPU } ]")
    return "\n".join(lines) + "\n"


def _tensors(kind: str, specs: list[dict[str, Any]]) -> list[str]:
    """Graph inputs or outputs as Triton declares them, their first (batch) dimension left out."""
    entries = []
    for spec in specs:
        dims = [d if isinstance(d, int) else -1 for d in spec["shape"][1:]]
        if spec["dtype"] not in DTYPES:
            raise TritonError(f"graph {kind} {spec['name']!r}: dtype {spec['dtype']!r} has no Triton type here")
        entry = f'  {{ name: "{spec["name"]}" data_type: {DTYPES[spec["dtype"]]} '
        # A tensor of the batch dimension alone: Triton wants at least one dim, so [1] shown, [] to the model.
        entry += f"dims: [ {', '.join(map(str, dims))} ] }}" if dims else "dims: [ 1 ] reshape: { shape: [ ] } }"
        entries.append(entry)
    return [f"{kind} ["] + [",\n".join(entries)] + ["]"]
