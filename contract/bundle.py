"""The bundle format: what ``crashwatch export`` writes and the monitor reads, described once.

Layout (``manifest.json`` lists every file with its SHA-256; nothing else may be in the folder)::

    manifest.json         format version, prompt layout, model description, window, pixels, question,
                          threshold, graph inputs/outputs, file checksums, producing versions, parity figures;
                          for a zero-shot bundle (``export --zero-shot``) the pretrained model and its answers
    vision.onnx           pixels [F, 3, S, S] -> per-frame image embeddings [F, T, D]
    head.onnx             smolvlm layout: prompt embeddings [B, L, D] + attention mask [B, L] -> logits [B]
    block.onnx            streaming layout: a segment's embeddings [N, L, D] -> its keys and values at every
                          layer, the "state" [N, 2, layers, kv_heads, L, head_dim] (``crashwatch.export.streaming``)
    readout.onnx          streaming layout: readout embeddings [N, R, D] + the prefix's state [N, 2, layers,
                          kv_heads, P, head_dim] + the window's blocks' [N, 2, layers, kv_heads, F, B, head_dim]
                          -> logits [N]
    *.onnx.data           external weights of a large graph, next to the graph that names it
    text.onnx.data        streaming layout: the weights block and readout hold alike (the text model), once;
                          both graphs name them as external data, ``shared_weights`` lists where each lies
    *.openvino.xml        optional (``export --openvino``): the same graphs as OpenVINO IR with fp16 weights
                          (and their ``.bin`` files), run at the CPU's own inference precision; an int8
                          bundle's vision graph int8 (NNCF), ``openvino.weights`` says which
    prompt_ids.npy        the prompt's token ids [L] (int64); image positions hold the image token id
    token_ids.npy         the distinct ids the prompt uses, sorted [U]
    token_embeddings.npy  their rows of the text model's embedding table [U, D] (float32)

Version 2 named the prompt layout (``prompt``: ``smolvlm``, or ``streaming`` with its segments' lengths);
version 1, which had none, is read as the ``smolvlm`` layout. Version 3 moved the frame axis of the readout's
``blocks`` after the key/value heads; a version 2 streaming bundle must be exported again. Version 4 covers
the manifest itself: ``content_sha256`` hashes every field but the threshold and its calibration record
(``UNCOVERED``), so an edit of the window or the normalisation is refused at load rather than taken.

``build_manifest`` is what the exporter writes, ``Manifest.read`` what every reader gets: the two sides of
one format, kept in one module (past 300 lines) so that a change to one is made beside the other.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crashwatch.contract import __version__
from crashwatch.contract.errors import CrashwatchError
from crashwatch.contract.preprocess import PixelSpec
from crashwatch.contract.prompt import PromptLayout
from crashwatch.contract.versioned import parse_versioned_json, read_versioned_json
from crashwatch.contract.window import WindowSpec

FORMAT = "crashwatch-bundle"
VERSION = 4
READS = (1, 2, 3, 4)  # the versions this crashwatch reads (2 for the smolvlm layout only)
COVERED_SINCE = 4  # the first version whose manifest carries its own content hash
MANIFEST = "manifest.json"
CONTENT = "content_sha256"
# What may change without changing the model's output: the threshold (``crashwatch calibrate``) and its record.
UNCOVERED = ("threshold", "threshold_from_validation", "threshold_calibration", "caution_threshold",
             "caution_rise_seconds", CONTENT)
VISION = "vision.onnx"
HEAD = "head.onnx"
BLOCK = "block.onnx"
READOUT = "readout.onnx"
PROMPT_IDS = "prompt_ids.npy"
TOKEN_IDS = "token_ids.npy"
TOKEN_EMBEDDINGS = "token_embeddings.npy"
SHARED_WEIGHTS = "text.onnx.data"
SHARED_DTYPES = ("float32", "float16", "int8", "uint8", "int32", "int64")  # what a shared tensor may hold
PRECISIONS = ("fp32", "fp16", "int8")

# The graphs' input and output names: the exporter traces with them, the runtime feeds and reads them.
VISION_INPUT = "pixel_values"
VISION_OUTPUT = "frame_embeds"
HEAD_EMBEDS = "inputs_embeds"
HEAD_MASK = "attention_mask"
HEAD_OUTPUT = "logits"
BLOCK_EMBEDS = "inputs_embeds"
BLOCK_OUTPUT = "state"
READOUT_EMBEDS = "inputs_embeds"
READOUT_PREFIX = "prefix"
READOUT_BLOCKS = "blocks"
READOUT_KEEP = "keep"  # [N, F, B]: 0 withholds a block position from the readout (bundles from 2026-12-06 on)
READOUT_OUTPUT = "logits"

# Each layout's graphs, by name: their ONNX files and the output the runtime reads.
GRAPHS = {PromptLayout.SMOLVLM: ("vision", "head"), PromptLayout.STREAMING: ("vision", "block", "readout")}
GRAPH_FILES = {"vision": VISION, "head": HEAD, "block": BLOCK, "readout": READOUT}
GRAPH_OUTPUTS = {"vision": VISION_OUTPUT, "head": HEAD_OUTPUT, "block": BLOCK_OUTPUT, "readout": READOUT_OUTPUT}


# A model store (``crashwatch review learn``): versions of one bundle, the one to run named in ``CURRENT``.
CURRENT = "CURRENT"
VERSIONS = "versions"


def resolve_bundle(folder: Path) -> Path:
    """The bundle folder ``folder`` stands for: itself, or a model store's current version."""
    pointer = folder / CURRENT
    if not pointer.is_file():
        return folder
    name = pointer.read_text(encoding="utf-8").strip()
    version = folder / VERSIONS / name
    if not name or not (version / MANIFEST).is_file():
        raise BundleError(f"{pointer}: names version {name!r}, which {folder / VERSIONS} does not hold")
    return version


def openvino_file(graph: str) -> str:
    """The OpenVINO IR file of one of a bundle's graphs (``export --openvino``)."""
    return f"{graph}.openvino.xml"


@dataclass(frozen=True)
class StreamingSegments:
    """Token counts of a streaming prompt's segments: a window is ``prefix + block * num_frames + readout``;
    ``state`` is a segment's state shape without its batch and length, ``[2, layers, kv_heads, head_dim]``."""

    prefix: int
    block: int
    readout: int
    state: tuple[int, ...]  # four numbers, checked on read


class BundleError(CrashwatchError):
    """A bundle that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class SharedTensor:
    """One tensor of ``SHARED_WEIGHTS``: where it lies, what it holds, and its name in each graph using it."""

    offset: int
    bytes: int
    dtype: str
    shape: tuple[int, ...]
    names: dict[str, str]  # graph name -> initializer name


def _shared_tensors(raw: dict[str, Any], files: dict[str, Any], graphs: tuple[str, ...],
                    where: str) -> tuple[SharedTensor, ...]:
    """The manifest's ``shared_weights``, checked against its file's size and the layout's graphs."""
    entry = raw.get("shared_weights")
    if entry is None:
        return ()
    if entry.get("file") != SHARED_WEIGHTS or SHARED_WEIGHTS not in files:
        raise BundleError(f"{where}: `shared_weights` must name {SHARED_WEIGHTS}, one of the bundle's files")
    size = int(files[SHARED_WEIGHTS]["bytes"])
    tensors = tuple(SharedTensor(int(t["offset"]), int(t["bytes"]), str(t["dtype"]),
                                 tuple(int(n) for n in t["shape"]), {str(g): str(n) for g, n in t["names"].items()})
                    for t in entry["tensors"])
    for k, t in enumerate(tensors):
        if (t.dtype not in SHARED_DTYPES or t.offset < 0 or t.offset + t.bytes > size or not set(t.names) <= set(graphs)
                or int(np.prod(t.shape, dtype=np.int64)) * np.dtype(t.dtype).itemsize != t.bytes):
            raise BundleError(f"{where}: `shared_weights` tensor {k} ({t.names}) does not fit {SHARED_WEIGHTS} "
                              f"({size} bytes) or its own dtype and shape")
    return tensors


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_files(folder: Path) -> dict[str, dict[str, Any]]:
    """The manifest's ``files`` entry for every file in ``folder`` but the manifest: size and SHA-256."""
    return {p.name: {"bytes": p.stat().st_size, "sha256": sha256_of(p)}
            for p in sorted(folder.iterdir()) if p.name != MANIFEST}


def _graph_descriptions(segments: StreamingSegments | None, pixels: PixelSpec, tokens_per_frame: int,
                        hidden_size: int, window: WindowSpec) -> dict[str, Any]:
    """The manifest's ``graphs``: each graph of the layout with its file, inputs and outputs (symbolic sizes by
    name)."""
    frames, seq, size = "frames", "sequence", pixels.image_size
    vision = {
        "file": VISION,
        "inputs": [{"name": VISION_INPUT, "dtype": "float32", "shape": [frames, 3, size, size]}],
        "outputs": [{"name": VISION_OUTPUT, "dtype": "float32", "shape": [frames, tokens_per_frame, hidden_size]}],
    }
    if segments is None:
        return {"vision": vision, "head": {
            "file": HEAD,
            "inputs": [{"name": HEAD_EMBEDS, "dtype": "float32", "shape": ["batch", seq, hidden_size]},
                       {"name": HEAD_MASK, "dtype": "int64", "shape": ["batch", seq]}],
            "outputs": [{"name": HEAD_OUTPUT, "dtype": "float32", "shape": ["batch"]}],
        }}
    two, layers, heads, head_dim = segments.state
    return {"vision": vision, "block": {
        "file": BLOCK,
        "inputs": [{"name": BLOCK_EMBEDS, "dtype": "float32", "shape": ["batch", seq, hidden_size]}],
        "outputs": [{"name": BLOCK_OUTPUT, "dtype": "float32", "shape": ["batch", two, layers, heads, seq, head_dim]}],
    }, "readout": {
        "file": READOUT,
        "inputs": [{"name": READOUT_EMBEDS, "dtype": "float32", "shape": ["batch", segments.readout, hidden_size]},
                   {"name": READOUT_PREFIX, "dtype": "float32", "shape": ["batch", two, layers, heads, segments.prefix,
                                                                        head_dim]},
                   {"name": READOUT_BLOCKS, "dtype": "float32", "shape": ["batch", two, layers, heads,
                                                                        window.num_frames, segments.block, head_dim]},
                   {"name": READOUT_KEEP, "dtype": "float32", "shape": ["batch", window.num_frames, segments.block]}],
        "outputs": [{"name": READOUT_OUTPUT, "dtype": "float32", "shape": ["batch"]}],
    }}


def build_manifest(*, precision: str, backbone: str, hidden_size: int, tokens_per_frame: int, image_token_id: int,
                   parameters: int, head: dict[str, Any], window: WindowSpec, pixels: PixelSpec, question: str,
                   threshold: float, files: dict[str, dict[str, Any]], source_checkpoint: str,
                   validation: dict[str, Any], versions: dict[str, str], segments: StreamingSegments | None = None,
                   openvino: dict[str, Any] | None = None, zero_shot: dict[str, Any] | None = None,
                   shared_weights: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of a bundle as ``manifest.json`` holds it (``versions`` gets crashwatch's own added);
    ``segments`` for a streaming-layout bundle (none: the smolvlm layout); ``openvino``, where the bundle has
    OpenVINO graphs, names them (by graph name) and their parity figures; ``zero_shot``, where the head is a
    pretrained model's own answer, names the model and the answers (``model`` and ``answers``);
    ``shared_weights`` lists the tensors graphs share in ``SHARED_WEIGHTS`` (``crashwatch.export.sharing``)."""
    if precision not in PRECISIONS:
        raise BundleError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    prompt: dict[str, Any] = {"layout": PromptLayout.SMOLVLM.value}
    if segments is not None:
        prompt = {"layout": PromptLayout.STREAMING.value, "prefix": segments.prefix, "block": segments.block,
                  "readout": segments.readout, "state": list(segments.state)}
    return {
        "format": FORMAT,
        "version": VERSION,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "precision": precision,
        "prompt": prompt,
        "model": {"backbone": backbone, "hidden_size": hidden_size, "tokens_per_frame": tokens_per_frame,
                  "image_token_id": image_token_id, "parameters": parameters, "head": head},
        "window": {"seconds": window.seconds, "num_frames": window.num_frames},
        "pixels": {"image_size": pixels.image_size, "mean": list(pixels.mean), "std": list(pixels.std)},
        "question": question,
        "threshold": threshold,
        "graphs": _graph_descriptions(segments, pixels, tokens_per_frame, hidden_size, window),
        **({"openvino": openvino} if openvino is not None else {}),
        **({"zero_shot": zero_shot} if zero_shot is not None else {}),
        **({"shared_weights": shared_weights} if shared_weights is not None else {}),
        "files": files,
        "source_checkpoint": source_checkpoint,
        "validation": validation,
        "versions": {"crashwatch": __version__, **versions},
    }


def content_sha256(raw: dict[str, Any]) -> str:
    """The SHA-256 of everything in a manifest that defines the model's output (all but ``UNCOVERED``), as
    canonical JSON; the files' own checksums are in it, so it covers the graphs and arrays too."""
    defining = {key: value for key, value in raw.items() if key not in UNCOVERED}
    return hashlib.sha256(json.dumps(defining, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` with its content hash, so that ``Manifest.read`` notices any later edit."""
    stamped = {**manifest, CONTENT: content_sha256(manifest)}
    (folder / MANIFEST).write_text(json.dumps(stamped, indent=2) + "\n", encoding="utf-8")


def set_threshold(folder: Path, threshold: float, calibration: dict[str, Any],
                  caution: tuple[float, float] | None = None) -> None:
    """Make ``threshold`` a bundle's alert threshold (and ``caution``, the warning level below, its threshold and
    rising rule's look-ahead), keeping the one it replaces and how these were chosen (``crashwatch calibrate``)
    in the manifest."""
    raw = Manifest.read(folder).raw
    raw.setdefault("threshold_from_validation", raw["threshold"])
    raw["threshold"] = threshold
    raw["threshold_calibration"] = calibration
    if caution is not None:
        raw["caution_threshold"], raw["caution_rise_seconds"] = caution
    write_manifest(folder, raw)


@dataclass(frozen=True)
class Manifest:
    """The parts of ``manifest.json`` the runtime relies on (the rest is description for people)."""

    raw: dict[str, Any]
    precision: str
    window: WindowSpec
    pixels: PixelSpec
    tokens_per_frame: int
    hidden_size: int
    image_token_id: int
    question: str
    threshold: float
    files: dict[str, dict[str, Any]]
    layout: PromptLayout = PromptLayout.SMOLVLM
    segments: StreamingSegments | None = None  # the streaming layout's
    openvino: dict[str, Any] | None = None  # {graph name: file, ...} where the bundle has them
    zero_shot: dict[str, Any] | None = None  # {"model": id, "answers": [positive, negative], ...} for a zero-shot head
    caution_threshold: float | None = None  # the warning level below the alert (``crashwatch calibrate``)
    caution_rise_seconds: float | None = None  # and its rising rule's look-ahead
    shared: tuple[SharedTensor, ...] = ()  # the tensors its graphs hold once, in ``SHARED_WEIGHTS``

    @classmethod
    def read(cls, folder: Path) -> "Manifest":
        path = folder / MANIFEST
        return cls._parse(read_versioned_json(path, FORMAT, READS, BundleError, "crashwatch export"), str(path))

    @classmethod
    def from_json(cls, text: str | bytes, where: str) -> "Manifest":
        """A manifest received rather than read from a folder (a Triton server's,
        ``crashwatch.monitor.engines.triton``); ``where``
        names where it came from in errors."""
        return cls._parse(parse_versioned_json(text, where, FORMAT, READS, BundleError), where)

    @classmethod
    def _parse(cls, raw: dict[str, Any], where: str) -> "Manifest":
        try:
            model, window, pixels = raw["model"], raw["window"], raw["pixels"]
            prompt = raw.get("prompt", {"layout": PromptLayout.SMOLVLM.value})  # version 1 had no other layout
            layout = PromptLayout(prompt["layout"])
            segments = None if layout is PromptLayout.SMOLVLM else StreamingSegments(
                int(prompt["prefix"]), int(prompt["block"]), int(prompt["readout"]),
                tuple(int(v) for v in prompt["state"]))
            manifest = cls(
                raw=raw,
                precision=str(raw["precision"]),
                window=WindowSpec(float(window["seconds"]), int(window["num_frames"])),
                pixels=PixelSpec(int(pixels["image_size"]), _rgb(pixels["mean"]), _rgb(pixels["std"])),
                tokens_per_frame=int(model["tokens_per_frame"]),
                hidden_size=int(model["hidden_size"]),
                image_token_id=int(model["image_token_id"]),
                question=str(raw["question"]),
                threshold=float(raw["threshold"]),
                files=dict(raw["files"]),
                layout=layout,
                segments=segments,
                openvino=dict(raw["openvino"]) if raw.get("openvino") is not None else None,
                zero_shot=dict(raw["zero_shot"]) if raw.get("zero_shot") is not None else None,
                caution_threshold=float(raw["caution_threshold"]) if raw.get("caution_threshold") is not None else None,
                caution_rise_seconds=float(raw["caution_rise_seconds"]) if raw.get("caution_rise_seconds") is not None
                else None,
                shared=_shared_tensors(raw, dict(raw["files"]), GRAPHS[layout], where),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise BundleError(f"{where}: malformed manifest ({type(err).__name__}: {err})") from None
        if manifest.precision not in PRECISIONS:
            raise BundleError(f"{where}: unknown precision {manifest.precision!r}")
        if manifest.openvino is not None and not all(isinstance(manifest.openvino.get(k), str) and
                                                     manifest.openvino[k] in manifest.files for k in manifest.graphs):
            raise BundleError(f"{where}: `openvino` must name its {', '.join(manifest.graphs)} graphs among the "
                              "bundle's files")
        if segments is not None and raw.get("version") == 2:
            raise BundleError(f"{where}: a streaming bundle of format version 2, whose readout takes the window's "
                              "state in another order; export it again with this crashwatch")
        if segments is not None and (len(segments.state) != 4 or segments.block != manifest.tokens_per_frame + 3):
            raise BundleError(f"{where}: `prompt` of the streaming layout must give a block of tokens_per_frame + 3 "
                              "tokens (its image tokens and their three wrapper tokens) and a state of 4 numbers")
        if manifest.zero_shot is not None and not (
                isinstance(manifest.zero_shot.get("model"), str) and isinstance(manifest.zero_shot.get("answers"), list)
                and len(manifest.zero_shot["answers"]) == 2):
            raise BundleError(f"{where}: `zero_shot` must name its `model` and its two `answers`")
        if raw.get("version", 1) >= COVERED_SINCE and raw.get(CONTENT) != content_sha256(raw):
            raise BundleError(f"{where}: edited after export: its content hash no longer matches what defines the "
                              f"model (every field but {', '.join(UNCOVERED[:-1])}); export again, and change only "
                              "the threshold, with `crashwatch calibrate`")
        return manifest

    @property
    def graphs(self) -> tuple[str, ...]:
        """The names of the bundle's graphs (``vision`` and the text graphs of its layout)."""
        return GRAPHS[self.layout]

    @property
    def withholds(self) -> bool:
        """Whether a window's frames (and their image tokens) can be withheld from its score, positions unchanged:
        the head's attention mask does it in the smolvlm layout; the readout needs its ``keep`` input, which
        streaming bundles exported before 2026-12-06 lack (the monitor's explanations need it)."""
        if self.layout is PromptLayout.SMOLVLM:
            return True
        inputs = self.raw.get("graphs", {}).get("readout", {}).get("inputs", [])
        return any(isinstance(i, dict) and i.get("name") == READOUT_KEEP for i in inputs)

    @property
    def content_hash(self) -> str:
        """A short form of ``content_sha256``: the same model whatever its folder is called or where it is
        served from, and a new one after any re-export or edit. The threshold is not in it."""
        return content_sha256(self.raw)[:12]

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

    def verify_received(self, name: str, data: bytes, where: str) -> None:
        """A bundle file received whole from elsewhere (a Triton server) has the size and checksum listed here."""
        entry = self.files.get(name)
        if entry is None:
            raise BundleError(f"{where}: {name} is not one of the bundle's files")
        if len(data) != entry.get("bytes") or hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise BundleError(f"{where}: {name} differs from the manifest ({len(data)} bytes, the manifest says "
                              f"{entry.get('bytes')}, or another checksum)")


def _rgb(values: Any) -> tuple[float, float, float]:
    """A per-channel value of the manifest (``mean``, ``std``): three numbers, red first."""
    red, green, blue = (float(v) for v in values)
    return red, green, blue


def read_array(data: Path | bytes, where: str) -> np.ndarray:
    """One of a bundle's ``.npy`` arrays, from its file or as received; ``where`` names it in errors."""
    try:
        return np.load(data if isinstance(data, Path) else io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError) as err:
        raise BundleError(f"{where}: unreadable array ({err})") from None
