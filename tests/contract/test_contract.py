"""The training/serving contract: frame sampling, preprocessing and prompt, against transformers itself."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from crashwatch.contract.preprocess import PixelSpec, preprocess_frame
from crashwatch.contract.prompt import render_prompt
from crashwatch.contract.video import probe_clip, read_frames
from crashwatch.contract.window import (
    WindowSpec,
    arrived,
    grid_at_or_after,
    grid_at_or_before,
    pick_frame,
    pick_frames,
)
from tests.support.media import QUESTION, frame_index, write_video
from tests.support.reference import transformers_pixels
from tests.support.shared import CLIPS, SMOLVLM_TOKENIZER, need_shared

# -- frame sampling ------------------------------------------------------------------------------------------

def test_window_takes_newest_frame_at_or_before_each_nominal_time():
    window = WindowSpec(seconds=2.0, num_frames=5)  # nominal times end-2, end-1.5, ..., end
    timestamps = [i / 10 for i in range(50)]  # 10 fps
    assert pick_frames(timestamps, end=3.0, window=window) == [10, 15, 20, 25, 30]
    # An end between frames never takes a later frame: the monitor cannot see the future.
    assert pick_frames(timestamps, end=3.04, window=window) == [10, 15, 20, 25, 30]


def test_window_is_the_same_whatever_the_source_fps():
    window = WindowSpec(seconds=1.0, num_frames=3)
    for fps in (8.0, 20.0, 25.0, 30.0):
        timestamps = [i / fps for i in range(int(fps * 4))]
        picked = [timestamps[i] for i in pick_frames(timestamps, end=3.0, window=window)]
        assert picked == pytest.approx([2.0, 2.5, 3.0], abs=1 / fps)
        assert all(t <= n + 1e-9 for t, n in zip(picked, window.nominal_times(3.0)))


def test_window_longer_than_clip_repeats_first_frame():
    window = WindowSpec(seconds=4.0, num_frames=5)
    assert pick_frames([0.0, 0.5, 1.0], end=1.0, window=window) == [0, 0, 0, 0, 2]


def test_window_rejects_nonsense():
    with pytest.raises(ValueError):
        WindowSpec(0, 4)
    with pytest.raises(ValueError):
        WindowSpec(2.0, 0)
    with pytest.raises(ValueError):
        pick_frames([], 1.0, WindowSpec(1.0, 2))


def test_the_monitor_s_frame_buffer_keeps_every_frame_a_window_can_pick():
    """The buffer drops a frame no lattice point can pick (``_picks``) by the contract's own rule: whatever the
    frame rate and jitter, the frames it keeps give every window exactly the frames of the full stream."""
    from crashwatch.monitor.frame import Frame
    from crashwatch.monitor.pipeline.buffer import FrameBuffer

    rng = np.random.default_rng(0)
    window = WindowSpec(seconds=2.0, num_frames=5)
    for fps in (7.0, 10.0, 29.97, 30.0):
        times = np.cumsum(rng.uniform(0.5, 1.5, int(fps * 8)) / fps)
        buffer = FrameBuffer(span=60.0, lattice=window.spacing)
        for i, t in enumerate(times):
            buffer.push(Frame(i, float(t), 0.0, np.zeros((1, 1, 3), np.uint8)))
        kept = buffer.snapshot()
        assert len(kept) < len(times) / 2 or fps < 10
        for k in range(1, int(times[-1] / window.spacing)):
            end = k * window.spacing
            full = [int(i) for i in pick_frames(list(times), end, window)]
            mine = [kept[i].id for i in pick_frames([f.t for f in kept], end, window)]
            assert mine == full, (fps, end)


def test_grid_points_and_arrival_follow_the_stream_clock():
    assert grid_at_or_after(1.0000001, 0.5) == 1.0 and grid_at_or_after(1.01, 0.5) == 1.5
    assert grid_at_or_before(0.9999999, 0.5) == 1.0 and grid_at_or_before(0.99, 0.5) == 0.5
    assert arrived(1.0, 0.9999999) and not arrived(1.0, 0.99)
    assert pick_frame([0.0, 0.1, 0.30000000000000004], 0.3) == 2


def test_read_frames_returns_the_frames_asked_for(tmp_path):
    clip = write_video(tmp_path / "c.mp4", 40, fps=10, moving_box=False)
    info = probe_clip(clip)
    assert (info.num_frames, info.fps) == (40, 10.0)
    indices = pick_frames(info.timestamps(), end=3.9, window=WindowSpec(2.0, 3))
    frames = read_frames(clip, indices)
    assert indices == [19, 29, 39]
    for index, frame in zip(indices, frames):
        assert frame_index(frame) == index


# -- preprocessing ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["dad_000478.mp4", "highway_640.mp4", "nearmiss_cutin_854.mp4",
                                  "urban_beijing_1.mp4", "rollover_bus_320.mp4", "dad_000481_512sq.mp4"])
def test_preprocessing_matches_transformers_on_real_frames(name):
    clip = need_shared(CLIPS / name)
    frame = read_frames(clip, [5])[0]
    for image in (frame, cv2.rotate(frame, cv2.ROTATE_90_CLOCKWISE)):  # landscape and portrait
        ours = preprocess_frame(image, PixelSpec(512))
        theirs = transformers_pixels(image, 512)
        assert ours.shape == theirs.shape == (3, 512, 512)
        assert np.abs(ours - theirs).max() <= 0.05
        assert np.abs(ours - theirs).mean() < 1e-4


def test_preprocessing_rejects_wrong_frames():
    with pytest.raises(ValueError, match="colour frame"):
        preprocess_frame(np.zeros((10, 10), np.uint8), PixelSpec(64))
    with pytest.raises(ValueError, match="uint8"):
        preprocess_frame(np.zeros((10, 10, 3), np.float32), PixelSpec(64))


# -- prompt ----------------------------------------------------------------------------------------------------

def _transformers_prompt(window: WindowSpec, question: str, tokens_per_frame: int) -> str:
    """The prompt as transformers' SmolVLM processor writes it, from its own code: the chat template with a
    video then a question, and ``replace_video_token`` called with the window's frame timestamps."""
    from jinja2 import Template
    from transformers.models.smolvlm import processing_smolvlm as ps

    processor = SimpleNamespace(image_seq_len=tokens_per_frame, image_token="<image>",
                                fake_image_token="<fake_token_around_image>", global_image_token="<global-img>")
    metadata = SimpleNamespace(fps=10.0, timestamps=window.relative_times(), duration=window.seconds)
    video = ps.SmolVLMProcessor.replace_video_token(
        processor, {"pixel_values": np.zeros((1, window.num_frames)), "video_metadata": [metadata]}, 0)
    chat = Template(ps.DEFAULT_CHAT_TEMPLATE).render(
        messages=[{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}],
        add_generation_prompt=True,
    )
    return chat.replace("<video>", video)


@pytest.mark.parametrize("seconds,frames", [(3.5, 8), (2.0, 4), (75.0, 16)])
def test_prompt_token_ids_match_transformers_with_the_real_tokenizer(seconds, frames):
    from crashwatch.train.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(str(need_shared(SMOLVLM_TOKENIZER)))
    window = WindowSpec(seconds, frames)
    ours = tokenizer(render_prompt(QUESTION, window, 64), add_special_tokens=False)["input_ids"]
    theirs = tokenizer(_transformers_prompt(window, QUESTION, 64), add_special_tokens=False)["input_ids"]
    assert ours == theirs
    assert ours.count(49190) == 64 * frames  # <image>
    assert ours[-1] != 49279 and 49279 in ours  # ends with the assistant cue, after <end_of_utterance>


def test_builtin_tokenizer_keeps_special_tokens_whole_and_round_trips():
    from crashwatch.train.tokenizer import builtin_tokenizer

    tokenizer = builtin_tokenizer()
    text = render_prompt("Crash? ünïcode", WindowSpec(2.0, 3), 4)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids.count(tokenizer.convert_tokens_to_ids("<image>")) == 12
    assert tokenizer.decode(ids) == text


def test_label_cannot_reach_the_model_input(tiny_dataset):
    """The research code put the answer into an assistant turn at training time; here the input is built
    from the clip and its question only, and two samples that differ only in label are identical inputs."""
    from crashwatch.contract.dataset import read_split
    from crashwatch.contract.prompt import PromptEncoder
    from crashwatch.train.dataset import WindowDataset, model_inputs
    from crashwatch.train.tokenizer import builtin_tokenizer
    from crashwatch.train.windows import WindowSample

    assert "label" not in inspect.signature(model_inputs).parameters
    clip = read_split(tiny_dataset, "train")[0]
    prompt = PromptEncoder(builtin_tokenizer(), WindowSpec(2.0, 4), 4)
    dataset = WindowDataset([[WindowSample(clip, 2.5, 0)], [WindowSample(clip, 2.5, 1)]], prompt, PixelSpec(64))
    a, b = dataset[0], dataset[1]
    assert torch_equal(a["pixel_values"], b["pixel_values"]) and torch_equal(a["input_ids"], b["input_ids"])
    assert (float(a["labels"]), float(b["labels"])) == (0.0, 1.0)


def torch_equal(x, y) -> bool:
    return x.shape == y.shape and bool((x == y).all())
