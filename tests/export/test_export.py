"""Export of the tiny model in every precision, parity with PyTorch, the torch-free loader, and bad bundles."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from crashwatch.contract.bundle import BundleError, Manifest
from crashwatch.contract.preprocess import preprocess_frames
from crashwatch.contract.prompt import PromptEncoder
from crashwatch.contract.video import probe_clip, read_frames
from crashwatch.contract.window import pick_frames
from crashwatch.export.exporter import ExportError, export_bundle
from crashwatch.export.parity import OPENVINO_TOLERANCE, TOLERANCES
from crashwatch.monitor.engines.local import Runtime, cpu_model, openvino_installed
from crashwatch.monitor.engines.model import RiskModel
from crashwatch.train.checkpoint import load_checkpoint
from tests.support.imports import FORBID_TORCH
from tests.support.media import QUESTION, write_video
from tests.support.shared import REPO


@pytest.fixture
def run(tiny_run) -> Path:
    return tiny_run


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "parity.mp4", 40, fps=10)


@pytest.fixture(scope="module")
def bundles(tiny_run, video, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    made = {}
    # fp32 as a user makes it, through the command; the other precisions in-process (faster).
    result = subprocess.run([sys.executable, "-m", "crashwatch", "export", "--checkpoint", str(tiny_run), "--out",
                             str(root / "fp32"), "--video", str(video)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "parity on parity.mp4" in result.stdout
    made["fp32"] = root / "fp32"
    for precision in ("fp16", "int8"):
        export_bundle(tiny_run, root / precision, precision, video, openvino=precision == "int8" and openvino_installed())
        made[precision] = root / precision
    return made


needs_openvino = pytest.mark.skipif(not openvino_installed(), reason="the openvino package is not installed "
                                    "(make test installs it: crashwatch[openvino])")


def _window(video: Path, config) -> np.ndarray:
    clip = probe_clip(video)
    indices = pick_frames(clip.timestamps(), 2.7, config.window)
    return preprocess_frames(read_frames(video, indices), config.pixels)


def _torch_probability(run: Path, pixels: np.ndarray) -> float:
    checkpoint = load_checkpoint(run)
    model = checkpoint.model
    ids = torch.tensor([PromptEncoder(checkpoint.tokenizer, checkpoint.config.window, model.tokens_per_frame)(QUESTION)])
    with torch.no_grad():
        return float(torch.sigmoid(model(torch.from_numpy(pixels)[None], ids, torch.ones_like(ids)).logits[0]))


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_bundle_manifest_and_parity(bundles, precision):
    folder = bundles[precision]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["precision"] == precision and manifest["version"] == 4 and manifest["prompt"] == {"layout": "smolvlm"}
    assert set(manifest["files"]) == {p.name for p in folder.iterdir()} - {"manifest.json"}
    assert {"vision.onnx", "head.onnx", "prompt_ids.npy", "token_ids.npy", "token_embeddings.npy"} <= set(manifest["files"])
    assert manifest["window"] == {"seconds": 2.0, "num_frames": 4} and manifest["question"] == QUESTION
    parity = manifest["parity"]
    tolerance = TOLERANCES[precision]
    assert parity["embedding_cosine"] >= tolerance.min_embedding_cosine
    assert parity["probability_abs_diff"] <= tolerance.max_probability_diff
    assert {"torch", "transformers", "onnxruntime", "onnx"} <= set(manifest["versions"])
    # The token table holds the rows the prompt uses, not the whole vocabulary.
    prompt_ids = np.load(folder / "prompt_ids.npy")
    assert len(np.load(folder / "token_ids.npy")) == len(set(prompt_ids.tolist()) - {manifest["model"]["image_token_id"]})


def test_precisions_really_differ(bundles):
    ops = lambda p: {n.op_type for n in onnx.load(str(p)).graph.node}  # noqa: E731
    assert "MatMulInteger" in ops(bundles["int8"] / "vision.onnx") | ops(bundles["int8"] / "head.onnx")
    fp16 = onnx.load(str(bundles["fp16"] / "head.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in fp16.graph.initializer)
    assert fp16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # callers keep float32


def test_attention_is_exported_without_the_nan_guard(bundles):
    """Eager attention: the SDPA decomposition's IsNaN/Where over every attention matrix cost a fifth of the
    int8 run time (docs/benchmarks.md); a change of exporter or attention setting that brings it back fails here."""
    ops = [n.op_type for n in onnx.load(str(bundles["fp32"] / "head.onnx")).graph.node]
    assert "Softmax" in ops and "IsNaN" not in ops


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_every_vision_layer_runs_fused_attention_and_gelu(run, bundles, precision):
    """``crashwatch.export.fusion``: every layer of the tower, in every precision (the fusion precedes the conversion), or
    the int8 vision pass is a fifth slower (docs/benchmarks.md); a change of exporter that breaks the match fails here."""
    layers = load_checkpoint(run).model.backbone.config.vision_config.num_hidden_layers
    ops = [n.op_type for n in onnx.load(str(bundles[precision] / "vision.onnx")).graph.node]
    assert ops.count("MultiHeadAttention") == ops.count("FastGelu") == layers
    assert not {"Softmax", "Tanh", "IsNaN"} & set(ops)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_loader_scores_a_window_like_pytorch(run, bundles, precision, tmp_path):
    other = write_video(tmp_path / "other.mp4", 30, fps=10, size=(120, 80))
    config = load_checkpoint(run).config
    pixels = _window(other, config)
    model = RiskModel.open(bundles[precision])
    onnx_probability = model.window_probability(model.encode_frames(pixels))
    assert onnx_probability == pytest.approx(_torch_probability(run, pixels), abs=TOLERANCES[precision].max_probability_diff)


def test_a_window_without_a_frames_image_tokens_equals_pytorch_with_them_masked(run, bundles, tmp_path):
    """The smolvlm layout's withholding (the explanations' per-frame shares): the fp32 head's logit with frame
    k's image tokens masked equals PyTorch's text model over the whole prompt with the same 2-D mask, reading
    the last token (within 1e-5); and the whole window's differs."""
    other = write_video(tmp_path / "other.mp4", 30, fps=10, size=(120, 80))
    checkpoint = load_checkpoint(run)
    pixels = _window(other, checkpoint.config)
    model = RiskModel.open(bundles["fp32"])
    frames, tokens = checkpoint.config.num_frames, model.layout.positions
    keep = np.ones((frames, frames, tokens), np.float32)
    for k in range(frames):
        keep[k, k] = 0
    states = list(model.encode_frames(pixels))
    withheld = model.window_logits([states] * frames, keep)
    ids = torch.tensor([PromptEncoder(checkpoint.tokenizer, checkpoint.config.window, tokens)(QUESTION)])
    rows = torch.nonzero(ids[0] == checkpoint.model.image_token_id)[:, 0].view(frames, tokens)
    with torch.no_grad():
        embeds = checkpoint.model.embed_prompt(ids, checkpoint.model.encode_frames(torch.from_numpy(pixels)))
        whole = float(checkpoint.model.window_logits(embeds, torch.ones_like(ids))[0])
        for k in range(frames):
            mask = torch.ones_like(ids)
            mask[0, rows[k]] = 0
            hidden = checkpoint.model.text_model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
            reference = float(checkpoint.model.classify(hidden[:, -1])[0])
            assert abs(reference - float(withheld[k])) <= 1e-5, (k, reference, float(withheld[k]))
            assert abs(reference - whole) > 1e-5, k
    assert model.window_logit(states) == pytest.approx(whole, abs=1e-5)


def test_monitor_runs_a_bundle_where_torch_cannot_be_imported(run, bundles, tmp_path):
    other = write_video(tmp_path / "other.mp4", 30, fps=10)
    config = load_checkpoint(run).config
    expected = _torch_probability(run, _window(other, config))
    script = FORBID_TORCH + textwrap.dedent(f"""
        from crashwatch.monitor.engines.model import RiskModel
        from crashwatch.contract.preprocess import PixelSpec, preprocess_frames
        from crashwatch.contract.video import probe_clip, read_frames
        from crashwatch.contract.window import WindowSpec, pick_frames
        model = RiskModel.open({str(bundles["fp32"])!r})
        m = model.manifest
        clip = probe_clip({str(other)!r})
        indices = pick_frames(clip.timestamps(), 2.7, m.window)
        pixels = preprocess_frames(read_frames(clip.path, indices), m.pixels)
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("torch was importable")
        assert not any(k.split(".")[0] in ("torch", "transformers") for k in sys.modules)
        print(model.window_probability(model.encode_frames(pixels)))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.strip()) == pytest.approx(expected, abs=1e-3)


def _copy(bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(bundle, target)
    return target


def _flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage,message", [
    (lambda b: _flip_byte(b / "vision.onnx"), "vision.onnx: checksum differs"),
    (lambda b: (b / "head.onnx").write_bytes((b / "head.onnx").read_bytes()[:1000]), "head.onnx: 1000 bytes"),
    (lambda b: (b / "token_ids.npy").unlink(), "token_ids.npy: missing"),
    (lambda b: (b / "notes.txt").write_text("hello"), "not in the manifest: notes.txt"),
    (lambda b: (b / "manifest.json").unlink(), "manifest.json: missing; is"),
    (lambda b: (b / "manifest.json").write_text("{not json"), "manifest.json: unreadable"),
    (lambda b: _edit_manifest(b, version=5), "format version 5; this crashwatch reads version 1, 2, 3 and 4 (upgrade"),
    (lambda b: _edit_manifest(b, prompt={"layout": "sideways"}), "malformed manifest"),
    (lambda b: _edit_manifest(b, precision="int4"), "unknown precision 'int4'"),
    (lambda b: _edit_manifest(b, window={"seconds": 2.0, "num_frames": 5}), "manifest.json: edited after export"),
    (lambda b: _edit_manifest(b, pixels={"image_size": 64, "mean": [0.4, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}),
     "manifest.json: edited after export"),
    (lambda b: _edit_manifest(b, model=None), "malformed manifest"),
])
def test_damaged_bundles_are_refused_with_the_file_named(bundles, tmp_path, damage, message):
    bundle = _copy(bundles["fp32"], tmp_path)
    damage(bundle)
    with pytest.raises(BundleError) as caught:
        RiskModel.open(bundle)
    assert message in str(caught.value)


def _edit_manifest(bundle: Path, **changes) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.update(changes)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_export_failing_parity_writes_nothing(run, video, tmp_path, monkeypatch):
    from crashwatch.export import parity

    monkeypatch.setitem(parity.TOLERANCES, "fp32", parity.Tolerance(1.1, 0.0))
    with pytest.raises(ExportError, match="does not match PyTorch within tolerance"):
        export_bundle(run, tmp_path / "b", "fp32", video)
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.partial").exists()


def test_export_refuses_to_overwrite(run, video, bundles):
    with pytest.raises(ExportError, match="use --force"):
        export_bundle(run, bundles["fp32"], "fp32", video)


def test_an_8x8_patch_grid_exports_and_quantizes(tmp_path):
    """An 8x8 patch grid (128 px): the exported graph passes ONNX's strict shape inference (the exporter's
    recorded shapes are dropped) and int8 conversion, and matches PyTorch."""
    from crashwatch.export.graphs import export_vision
    from crashwatch.export.precision import to_int8
    from crashwatch.train.config import load_config
    from crashwatch.train.model import CrashRiskModel
    from tests.support.shared import TINY_CONFIG

    config = load_config(TINY_CONFIG)
    config.backbone.architecture["vision_config"]["image_size"] = 128
    model = CrashRiskModel.from_backbone_config(config.backbone, config.head, 257, 128).eval()
    export_vision(model, tmp_path / "vision.onnx")
    onnx.shape_inference.infer_shapes(onnx.load(str(tmp_path / "vision.onnx")), strict_mode=True)
    to_int8(tmp_path / "vision.onnx", tmp_path / "vision-int8.onnx")
    import onnxruntime as ort
    pixels = np.random.default_rng(0).uniform(-1, 1, (2, 3, 128, 128)).astype(np.float32)
    fp32, int8 = (ort.InferenceSession(str(tmp_path / name)).run(None, {"pixel_values": pixels})[0]
                  for name in ("vision.onnx", "vision-int8.onnx"))
    with torch.no_grad():
        reference = model.encode_frames(torch.from_numpy(pixels)).numpy()
    assert np.abs(fp32 - reference).max() < 1e-4 and int8.shape == reference.shape


@needs_openvino
def test_openvino_graphs_are_exported_checked_and_run(run, bundles, tmp_path):
    folder = bundles["int8"]  # exported with openvino=True
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["openvino"]
    assert {entry["vision"], entry["head"], "vision.openvino.bin", "head.openvino.bin"} <= set(manifest["files"])
    assert entry["parity"]["embedding_cosine"] >= OPENVINO_TOLERANCE.min_embedding_cosine
    assert entry["parity"]["probability_abs_diff"] <= OPENVINO_TOLERANCE.max_probability_diff
    assert "openvino" in manifest["versions"]
    # the int8 bundle's OpenVINO vision graph is NNCF's, calibrated on frames the parity check does not score
    assert entry["weights"] == {"vision": "int8", "head": "fp16"}
    assert len(entry["calibration"]["frames"]) == 16
    assert not set(entry["calibration"]["frames"]) & set(entry["parity"]["frames"])
    import openvino as ov

    compiled = ov.Core().compile_model(str(folder / entry["vision"]), "CPU")
    ran = {op.get_rt_info()["runtimePrecision"].astype(str) for op in compiled.get_runtime_model().get_ops()
           if op.get_rt_info()["layerType"].astype(str) in ("FullyConnected", "MatMul", "Convolution")}
    assert ran & {"i8", "u8"}, ran
    model = RiskModel.open(folder, runtime="openvino")
    identity = model.identity()
    assert identity["runtime"] == "openvino" and identity["inference_precision"] in ("int8+bf16", "int8+fp32")
    pixels = _window(write_video(tmp_path / "other.mp4", 30, fps=10, size=(120, 80)), load_checkpoint(run).config)
    probability = model.window_probability(model.encode_frames(pixels))
    assert probability == pytest.approx(_torch_probability(run, pixels), abs=OPENVINO_TOLERANCE.max_probability_diff)
    assert RiskModel.open(folder, runtime="onnxruntime").identity()["runtime"] == "onnxruntime"


@needs_openvino
def test_auto_times_each_graph_on_both_runtimes_once_and_keeps_the_choice(run, bundles, tmp_path, monkeypatch,
                                                                         caplog):
    monkeypatch.setenv("CRASHWATCH_CACHE_DIR", str(tmp_path / "cache"))
    plain = RiskModel.open(bundles["fp32"], runtime="auto")  # no OpenVINO graphs: nothing to choose
    assert plain.engine.runtime is Runtime.ONNXRUNTIME and plain.engine.choice is None

    first = RiskModel.open(bundles["int8"], runtime="auto")
    measured = first.engine.choice
    assert measured is not None and not measured.cached and set(measured.graphs) == set(first.manifest.graphs)
    for name, times in measured.timings_ms.items():  # each graph on the runtime that ran it faster
        assert set(times) == {"onnxruntime", "openvino"} and all(ms > 0 for ms in times.values())
        assert measured.graphs[name].value == min(times, key=times.__getitem__)
    (key,) = json.loads((tmp_path / "cache" / "runtimes.json").read_text())
    assert cpu_model() in key and first.manifest.content_hash in key

    with caplog.at_level("INFO"):
        again = RiskModel.open(bundles["int8"], runtime="auto")  # from the cache: nothing timed
    assert again.engine.choice.cached and again.engine.choice.graphs == measured.graphs
    assert "as measured on this CPU before" in caplog.text and "timing each graph" not in caplog.text
    identity = again.identity()
    assert identity["runtimes"] == {name: r.value for name, r in measured.graphs.items()}
    assert identity["runtime_choice"]["cached"] is True
    # Whichever runtime serves each graph, the answer is the model's.
    pixels = _window(write_video(tmp_path / "other.mp4", 30, fps=10, size=(120, 80)), load_checkpoint(run).config)
    assert again.window_probability(again.encode_frames(pixels)) == pytest.approx(
        _torch_probability(run, pixels), abs=OPENVINO_TOLERANCE.max_probability_diff)
    # Asked for, a runtime is taken as it is; OpenVINO then runs a bundle's ONNX graphs, saying the export did not
    # check that path.
    assert RiskModel.open(bundles["int8"], runtime="onnxruntime").engine.choice is None
    with caplog.at_level("WARNING"):
        assert RiskModel.open(bundles["fp32"], runtime="openvino").engine.runtime is Runtime.OPENVINO
    assert "did not cover" in caplog.text


@pytest.mark.parametrize("tower,frame", [
    (128, 64),  # frames smaller than the tower: a 4x4 patch grid on buckets of the tower's 8x8 position table
    (96, 96),   # a 6x6 patch grid, refused before the position ids were exported as a constant
])
def test_frames_smaller_than_the_tower_train_and_export(tmp_path, video, tower, frame):
    """A frame size below the tower's: trained (as built), exported at fp32 with its parity check, and the vision
    graph equal to PyTorch's ``encode_frames`` on the same pixels; tokens per frame follow the frame size."""
    import onnxruntime as ort

    from crashwatch.train.config import load_config
    from crashwatch.train.fit import train
    from tests.support.media import write_split
    from tests.support.shared import TINY_CONFIG

    config = load_config(TINY_CONFIG)
    config.backbone.architecture["vision_config"]["image_size"] = tower
    config.image_size = frame
    for split in ("train", "val"):
        write_split(tmp_path / "data", split, [{"video": f"{split}{i}.mp4", "text": QUESTION, "label": i % 2}
                                               for i in range(2)], frames=20)
    train(config, tmp_path / "data", tmp_path / "run", max_steps=0)
    manifest = export_bundle(tmp_path / "run", tmp_path / "bundle", "fp32", video)

    tokens = (frame // 16) ** 2 // 2**2
    model = load_checkpoint(tmp_path / "run").model
    assert model.tokens_per_frame == tokens and manifest["model"]["tokens_per_frame"] == tokens
    assert manifest["pixels"]["image_size"] == frame
    assert manifest["parity"]["embedding_cosine"] >= TOLERANCES["fp32"].min_embedding_cosine
    pixels = np.random.default_rng(1).uniform(-1, 1, (3, 3, frame, frame)).astype(np.float32)
    onnx_embeds = ort.InferenceSession(str(tmp_path / "bundle" / "vision.onnx")).run(None, {"pixel_values": pixels})[0]
    with torch.no_grad():
        torch_embeds = model.encode_frames(torch.from_numpy(pixels)).numpy()
    assert onnx_embeds.shape == (3, tokens, 64)
    assert np.abs(onnx_embeds - torch_embeds).max() < 1e-5


def test_a_checkpoint_whose_token_count_disagrees_is_refused(run, tmp_path):
    from crashwatch.train.checkpoint import CheckpointError

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    meta = json.loads((copy / "crashwatch.json").read_text())
    meta["tokens_per_frame"] += 1
    (copy / "crashwatch.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="crashwatch.json: tokens_per_frame is 5, but 64 px frames make 4"):
        load_checkpoint(copy)


def test_the_content_hash_covers_all_that_defines_the_model_and_not_the_threshold(bundles, tmp_path):
    from crashwatch.contract.bundle import UNCOVERED, content_sha256, set_threshold

    bundle = _copy(bundles["fp32"], tmp_path)
    manifest = Manifest.read(bundle)
    assert manifest.raw["content_sha256"] == content_sha256(manifest.raw)
    set_threshold(bundle, 0.42, {"by": "a test"})
    recalibrated = RiskModel.open(bundle)
    assert (recalibrated.manifest.content_hash, recalibrated.manifest.threshold) == (manifest.content_hash, 0.42)
    covered = [key for key in manifest.raw if key not in UNCOVERED]
    assert {"window", "pixels", "prompt", "model", "question", "graphs", "files"} <= set(covered)
    for key in covered:
        edited = json.loads(json.dumps(manifest.raw))
        value = edited[key]  # changed in kind, so that only the hash can tell
        edited[key] = {**value, "edited": 1} if isinstance(value, dict) else value + 1 if isinstance(value, int) \
            else value + " edited" if isinstance(value, str) else value + [1]
        with pytest.raises(BundleError) as refused:
            Manifest.from_json(json.dumps(edited), f"{key}/manifest.json")
        if key not in ("format", "version", "precision"):  # those the reader refuses by name first
            assert "edited after export" in str(refused.value), key
