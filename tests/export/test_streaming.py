"""The streaming prompt layout: trained with its mask, exported as block and readout graphs, served from a
per-frame key/value cache that scores exactly what a full recomputation with the mask scores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from crashwatch.contract.bundle import Manifest
from crashwatch.contract.config import ConfigError
from crashwatch.contract.preprocess import preprocess_frames
from crashwatch.contract.prompt import PromptEncoder, PromptLayout, attention_allowed
from crashwatch.contract.risk import sigmoid
from crashwatch.contract.window import WindowSpec
from crashwatch.export.exporter import export_bundle
from crashwatch.export.parity import OPENVINO_TOLERANCE, TOLERANCES, reference_logit
from crashwatch.monitor.engines.local import Runtime, openvino_installed
from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.frame import Frame
from crashwatch.monitor.pipeline.scorer import WindowScorer
from crashwatch.train.checkpoint import load_checkpoint
from crashwatch.train.config import RunConfig
from crashwatch.train.tokenizer import builtin_tokenizer
from tests.support.media import QUESTION, write_training_clips, write_video
from tests.support.shared import CLIPS, REPO, TINY_CONFIG, need_shared

STRIDES = 22


def streaming_config() -> RunConfig:
    import yaml

    raw = yaml.safe_load(TINY_CONFIG.read_text())
    raw["prompt"] = {"layout": "streaming"}
    return RunConfig.from_dict(raw, "tiny streaming")


@pytest.fixture(scope="module")
def streaming_run(tmp_path_factory) -> Path:
    """The tiny config trained with the streaming layout, chosen on the command line as a user would."""
    root = tmp_path_factory.mktemp("streaming-run")
    data = write_training_clips(root / "data")
    result = subprocess.run([sys.executable, "-m", "crashwatch", "train", "--config", str(TINY_CONFIG), "--layout",
                             "streaming", "--data", str(data), "--out", str(root / "run")],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert json.loads((root / "run" / "crashwatch.json").read_text())["config"]["prompt"] == {"layout": "streaming"}
    return root / "run"


@pytest.fixture(scope="module")
def streaming_bundles(streaming_run, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("streaming-bundles")
    video = write_video(root / "parity.mp4", 30)
    export_bundle(streaming_run, root / "fp32", "fp32", video)
    export_bundle(streaming_run, root / "int8", "int8", video, openvino=openvino_installed())
    return {"fp32": root / "fp32", "int8": root / "int8"}


def test_a_frame_blocks_states_depend_on_that_frame_alone(streaming_run):
    """The mask the trainer gives the text model: changing frame 0 leaves every later block's hidden states as
    they were and changes the readout's; without the mask (the smolvlm layout's causal attention) it would not."""
    run = load_checkpoint(streaming_run)
    model, prompt = run.model, run.prompt()
    prefix, block, readout = prompt.lengths
    ids = torch.tensor([prompt.ids] * 2)
    segments = torch.tensor([prompt.segments] * 2)
    frames = torch.randn(2, run.config.num_frames, model.tokens_per_frame, model.text_model.config.hidden_size)
    frames[1, 1:] = frames[0, 1:]  # the two windows differ in their first frame only
    with torch.no_grad():
        from crashwatch.train.model import streaming_mask

        embeds = model.embed_prompt(ids, frames.flatten(0, 1))
        masked = model.text_model(inputs_embeds=embeds, attention_mask=streaming_mask(segments, embeds.dtype)).last_hidden_state
        causal = model.text_model(inputs_embeds=embeds).last_hidden_state
    later = slice(prefix + block, prefix + run.config.num_frames * block)
    assert torch.equal(masked[0, :prefix], masked[1, :prefix])
    assert (masked[0, later] - masked[1, later]).abs().max() < 1e-6
    assert (masked[0, -1] - masked[1, -1]).abs().max() > 1e-4
    assert (causal[0, later] - causal[1, later]).abs().max() > 1e-4


def test_the_attention_rule_of_the_layout():
    prompt = PromptEncoder(builtin_tokenizer(), WindowSpec(2.0, 3), 2, PromptLayout.STREAMING).encode(QUESTION)
    prefix, block, readout = prompt.lengths
    assert len(prompt.ids) == prefix + 3 * block + readout and block == 2 + 3
    allowed = attention_allowed(np.array(prompt.segments))
    first, second = prefix, prefix + block  # the first token of frames 0 and 1
    assert allowed[second, second] and not allowed[second, first] and not allowed[second, 0]
    assert not allowed[first, first + 1]  # causal within a block
    assert allowed[-1].all() and not allowed[-2, -1]  # the readout sees everything before it
    # The smolvlm layout of the same window holds timestamps; the streaming one does not.
    smolvlm = builtin_tokenizer().decode(PromptEncoder(builtin_tokenizer(), WindowSpec(2.0, 3), 2)(QUESTION))
    streaming = builtin_tokenizer().decode(prompt.ids)
    assert "Frame from 00:01" in smolvlm and "Frame from" not in streaming and QUESTION in streaming


def _clip_frames(path: Path, count: int) -> list[Frame]:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while len(frames) < count:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(Frame(len(frames), len(frames) / fps, 0.0, image))
    capture.release()
    return frames


def _strides(bundle: Path, runtime: Runtime = Runtime.ONNXRUNTIME):
    """The monitor's scorer over STRIDES consecutive strides of a real clip: its results and the pixels of each
    window's frames."""
    model = RiskModel.open(bundle, runtime=runtime)
    m = model.manifest
    frames = _clip_frames(need_shared(CLIPS / "highway_640.mp4"), 600)
    scorer = WindowScorer(model, m.window, m.pixels)
    ends = [m.window.seconds + k * m.window.spacing for k in range(STRIDES)]
    assert ends[-1] <= frames[-1].t
    results = [scorer.score(frames, end) for end in ends]
    pixels = [preprocess_frames([f.image for f in r.frames], m.pixels) for r in results]
    return model, results, pixels


@pytest.fixture(scope="module")
def fp32_strides(streaming_bundles):
    return _strides(streaming_bundles["fp32"])


def test_cached_streaming_strides_equal_a_full_recomputation_with_the_mask(streaming_run, fp32_strides):
    """Over 22 consecutive strides of a real dashcam clip the monitor computes each frame's block once and runs
    only the readout per stride; its probability equals PyTorch's text model over the whole prompt with the
    layout's mask (fp32, within 1e-5)."""
    model, results, pixels = fp32_strides
    assert model.manifest.layout is PromptLayout.STREAMING
    assert [r.encoded for r in results] == [model.manifest.window.num_frames] + [1] * (STRIDES - 1)
    run = load_checkpoint(streaming_run)
    worst = 0.0
    for result, window in zip(results, pixels):
        _, logit = reference_logit(run, window)
        worst = max(worst, abs(result.probability - float(sigmoid(logit))))
    assert worst <= 1e-5, worst
    print(f"fp32 cached streaming vs PyTorch masked recomputation, {STRIDES} strides: max |diff| {worst:.1e}")
    # The comparison can fail: the same frames with plain causal attention score otherwise.
    causal_run = load_checkpoint(streaming_run)
    causal_run.config.prompt.layout = PromptLayout.SMOLVLM.value
    _, causal = reference_logit(causal_run, pixels[-1])
    assert abs(float(sigmoid(causal)) - results[-1].probability) > 1e-5


@pytest.mark.parametrize("runtime", [Runtime.ONNXRUNTIME, Runtime.OPENVINO])
def test_int8_and_openvino_streaming_strides_stay_within_their_tolerance(streaming_bundles, fp32_strides, runtime):
    if runtime is Runtime.OPENVINO and not openvino_installed():
        pytest.skip("the openvino package is not installed (make test installs it: crashwatch[openvino])")
    _, exact, _ = fp32_strides
    model, approximate, _ = _strides(streaming_bundles["int8"], runtime)
    tolerance = (TOLERANCES["int8"] if runtime is Runtime.ONNXRUNTIME else OPENVINO_TOLERANCE).max_probability_diff
    worst = max(abs(a.probability - b.probability) for a, b in zip(exact, approximate))
    assert worst <= tolerance, (runtime, worst)
    print(f"{runtime.value} {model.engine.inference_precision} vs fp32, {STRIDES} strides: max |diff| {worst:.1e}")
    assert model.engine.runtime is runtime


def test_the_bundle_names_its_layout_and_graphs(streaming_bundles):
    manifest = Manifest.read(streaming_bundles["int8"])
    assert manifest.raw["version"] == 4 and manifest.layout is PromptLayout.STREAMING
    assert manifest.graphs == ("vision", "block", "readout") and "head.onnx" not in manifest.files
    segments = manifest.segments
    assert segments.block == manifest.tokens_per_frame + 3 and segments.state[0] == 2
    ids = np.load(streaming_bundles["int8"] / "prompt_ids.npy")
    assert ids.size == segments.prefix + manifest.window.num_frames * segments.block + segments.readout


def test_a_streaming_bundle_of_format_2_is_refused_with_what_to_do(streaming_bundles):
    """Format 3 changed the order of the readout's ``blocks``: an older streaming bundle would be fed wrongly."""
    from crashwatch.contract.bundle import BundleError

    raw = json.loads((streaming_bundles["int8"] / "manifest.json").read_text())
    raw["version"] = 2
    with pytest.raises(BundleError, match="streaming bundle of format version 2.*export it again"):
        Manifest.from_json(json.dumps(raw), "old/manifest.json")
    raw["prompt"] = {"layout": "smolvlm"}
    raw.pop("openvino", None)  # it and the shared weights name the streaming graphs
    raw.pop("shared_weights", None)
    assert Manifest.from_json(json.dumps(raw), "old/manifest.json").layout is PromptLayout.SMOLVLM


def test_a_streaming_bundle_is_refused_by_triton_with_the_reason(streaming_bundles, tmp_path):
    from crashwatch.monitor.engines.triton import TritonError
    from crashwatch.monitor.serving.triton.repository import RepositoryOptions, write_repository

    with pytest.raises(TritonError, match="'streaming'-layout bundle is not served on Triton"):
        write_repository(streaming_bundles["fp32"], tmp_path / "repo", RepositoryOptions(name="crashwatch"))
    assert not (tmp_path / "repo").exists()


def test_an_unknown_layout_and_a_zero_shot_streaming_run_are_refused():
    import yaml

    raw = yaml.safe_load(TINY_CONFIG.read_text())
    raw["prompt"] = {"layout": "sideways"}
    with pytest.raises(ConfigError, match="prompt.layout.*unknown prompt layout 'sideways'"):
        RunConfig.from_dict(raw, "cfg.yaml")
    from crashwatch.export.zeroshot import ZeroShotError, load_zero_shot

    with pytest.raises(ZeroShotError, match="prompt layout is 'streaming'"):
        load_zero_shot("HuggingFaceTB/SmolVLM2-256M-Video-Instruct", streaming_config())


def test_cameras_sharing_a_streaming_model_are_batched_and_each_gets_its_own_result(streaming_bundles):
    """As the fleet shares one model: the block and readout calls of cameras arriving together run as one batch
    (fp32 rows are independent) and each camera gets what it gets alone."""
    import threading

    from crashwatch.monitor.engines.batching import batching_engine

    model = RiskModel.open(streaming_bundles["fp32"])
    m = model.manifest
    rng = np.random.default_rng(0)
    windows = [rng.normal(size=(m.window.num_frames, 3, m.pixels.image_size, m.pixels.image_size)).astype(np.float32)
               for _ in range(4)]
    alone = [model.window_probability(model.encode_frames(w)) for w in windows]
    model.engine, graphs = batching_engine(model.engine)
    together: list[list[float]] = [[] for _ in windows]
    start = threading.Barrier(len(windows))

    def camera(i: int) -> None:
        for _ in range(5):
            start.wait()
            together[i].append(model.window_probability(model.encode_frames(windows[i])))

    threads = [threading.Thread(target=camera, args=(i,)) for i in range(len(windows))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = {graph.name: graph.stats() for graph in graphs}
    for graph in graphs:
        graph.close()
    for one, results in zip(alone, together):
        assert max(abs(r - one) for r in results) <= 1e-5
    assert set(stats) == {"vision", "block", "readout"}
    assert stats["block"]["max_batch"] > 1 and stats["readout"]["max_batch"] > 1


def test_a_window_without_each_frame_equals_pytorch_with_that_block_masked_out_of_the_readout(streaming_run,
                                                                                             fp32_strides):
    """The explanations' per-frame shares are exact: on a real clip the fp32 bundle's logit with frame k's block
    withheld (``keep``) equals PyTorch's text model over the whole prompt with the layout's mask and frame k's
    block masked out of the readout's attention, positions unchanged (within 1e-5); and differs from the whole
    window's, so the comparison can fail."""
    from crashwatch.train.model import streaming_mask

    model, results, pixels = fp32_strides
    frames, block = model.manifest.window.num_frames, model.layout.positions
    states = [model.encode_frames(pixels[-1][k:k + 1])[0] for k in range(frames)]
    keep = np.ones((frames, frames, block), np.float32)
    for k in range(frames):
        keep[k, k] = 0
    withheld = model.window_logits([states] * frames, keep)
    run = load_checkpoint(streaming_run)
    prompt = run.prompt()
    prefix, _, readout = prompt.lengths
    ids, segments = torch.tensor([prompt.ids]), torch.tensor([prompt.segments])
    with torch.no_grad():
        embeds = run.model.embed_prompt(ids, run.model.encode_frames(torch.from_numpy(pixels[-1])))
        whole = float(run.model.window_logits(embeds, torch.ones_like(ids), segments)[0])
        for k in range(frames):
            mask = streaming_mask(segments, embeds.dtype)
            mask[..., -readout:, prefix + k * block:prefix + (k + 1) * block] = torch.finfo(embeds.dtype).min
            hidden = run.model.text_model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
            reference = float(run.model.classify(hidden[:, -1])[0])
            assert abs(reference - float(withheld[k])) <= 1e-5, (k, reference, float(withheld[k]))
            assert abs(reference - whole) > 1e-4, k
        # A token map's cell (row 1, column 0 of the connector's 2x2 grid here: its third image token) of the
        # last frame, withheld from the readout, is exact alike.
        from crashwatch.monitor.explain.explainer import TokenCells

        token = int(model.layout.image_positions[2])
        mask = streaming_mask(segments, embeds.dtype)
        mask[..., -readout:, prefix + (frames - 1) * block + token] = torch.finfo(embeds.dtype).min
        hidden = run.model.text_model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        reference = float(run.model.classify(hidden[:, -1])[0])
        cells = TokenCells(model, 2)
        assert (cells.rows, cells.cols, cells.group) == (2, 2, 1)
        assert abs(reference - float(cells.logits(states, frames - 1, None, [(1, 0)])[0])) <= 1e-5


def test_the_text_weights_are_held_once_and_both_graphs_are_served_from_them(streaming_bundles):
    """Block and readout both run the text model: its weights lie once, in ``text.onnx.data``, which both
    graphs name; the monitor's sessions, given them from one mapping, compute what a session reading the
    graph's external data itself computes."""
    import onnx
    import onnxruntime as ort

    from crashwatch.contract.bundle import BundleError

    for folder in streaming_bundles.values():
        manifest = Manifest.read(folder)
        assert manifest.shared and all(set(t.names) == {"block", "readout"} for t in manifest.shared)
        block = onnx.load(str(folder / "block.onnx"), load_external_data=False)
        inline = [t.name for t in block.graph.initializer
                  if t.data_location != onnx.TensorProto.EXTERNAL and len(t.raw_data) >= 1024]
        assert inline == []  # every large weight of the block is shared with the readout
        assert not (folder / "block.onnx.data").exists() and not (folder / "readout.onnx.data").exists()
        hidden = manifest.hidden_size
        feed = {"inputs_embeds": np.random.default_rng(0).standard_normal((2, 7, hidden)).astype(np.float32)}
        served = RiskModel.open(folder, runtime="onnxruntime").engine.graphs["block"](feed)
        alone = ort.InferenceSession(str(folder / "block.onnx"), providers=["CPUExecutionProvider"]).run(None, feed)[0]
        np.testing.assert_array_equal(served, alone)
        prepacked = RiskModel.open(folder, runtime="onnxruntime", text_weights="prepacked")  # --text-weights prepacked
        np.testing.assert_allclose(prepacked.engine.graphs["block"](feed), served, rtol=1e-5, atol=1e-5)

    raw = json.loads((streaming_bundles["int8"] / "manifest.json").read_text())
    raw["shared_weights"]["tensors"][0]["offset"] = raw["files"]["text.onnx.data"]["bytes"]
    with pytest.raises(BundleError, match=r"tensor 0 .* does not fit text\.onnx\.data"):
        Manifest.from_json(json.dumps(raw), "edited/manifest.json")


def test_a_learnt_readout_keeps_naming_the_shared_weights(streaming_bundles, tmp_path):
    """``crashwatch review learn`` writes the readout again with another head: loaded without its external data,
    the new graph still names the text weights in ``text.onnx.data`` (no second copy) and computes with them."""
    import shutil

    import onnx
    import onnxruntime as ort

    from crashwatch.learn.graphs import STATE_OUTPUT, read_head, with_head

    folder = tmp_path / "version"
    shutil.copytree(streaming_bundles["int8"], folder)
    readout = onnx.load(str(folder / "readout.onnx"), load_external_data=False)
    _, head = read_head(readout)
    moved = type(head)(head.w1 * 1.5, head.b1 - 0.1, head.w2[::-1].copy(), head.b2 + 1.0)
    onnx.save(with_head(readout, "logits", moved), str(folder / "readout.onnx"))
    written = onnx.load(str(folder / "readout.onnx"), load_external_data=False)
    where = {t.name: {e.key: e.value for e in t.external_data}.get("location") for t in written.graph.initializer}
    shared = [t.names["readout"] for t in Manifest.read(streaming_bundles["int8"]).shared]
    assert shared and all(where[name] == "text.onnx.data" for name in shared)
    session = ort.InferenceSession(str(folder / "readout.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    feed = {i.name: rng.standard_normal([2 if isinstance(d, str) else d for d in i.shape]).astype(np.float32)
            for i in session.get_inputs()}
    feed["keep"] = np.ones_like(feed["keep"])
    logits, states = session.run(["logits", STATE_OUTPUT], feed)
    np.testing.assert_allclose(logits, moved.logits(states), atol=1e-5)
