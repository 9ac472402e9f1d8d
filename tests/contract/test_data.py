"""The dataset reader: every bad input gives an error naming file and line, or a counted, listed skip."""

from __future__ import annotations

import json
import logging
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crashwatch.contract.dataset import DatasetError, read_split
from crashwatch.contract.window import WindowSpec
from crashwatch.train.windows import clip_end_window, group_windows, training_windows
from tests.support.media import QUESTION, write_split, write_video

GOOD = {"video": "a.mp4", "text": QUESTION, "label": 1}


def _dataset(tmp_path, lines: list[str | bytes], videos=("a.mp4",)):
    root = tmp_path / "data"
    for name in videos:
        write_video(root / "train" / name, 12)
    raw = b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines)
    (root / "train.jsonl").write_bytes(raw)
    return root


BAD_LINES = [
    ('{"video": "a.mp4", "text": "q", "label": 1', "malformed JSON"),
    ('["a.mp4", "q", 1]', "expected a JSON object"),
    ('{"video": "a.mp4", "text": "q", "label": 2}', "must be 0 or 1"),
    ('{"video": "a.mp4", "text": "q", "label": "1"}', "'label' must be int"),
    ('{"video": "a.mp4", "text": "q", "label": true}', "'label' must be int"),
    ('{"video": "a.mp4", "text": 5, "label": 1}', "'text' must be str"),
    ('{"video": "a.mp4", "label": 1}', "missing key 'text'"),
    ('{"video": "a.mp4", "text": "q", "label": 1, "colour": "red"}', "unknown key"),
    ('{"video": "a.mp4", "text": "q", "label": 1, "event_time": -1}', "event_time"),
    ('{"video": "a.mp4", "text": "q", "label": 1, "alert_time": 2.0}', "'alert_time' 2.0 needs an 'event_time'"),
    ('{"video": "a.mp4", "text": "q", "label": 1, "event_time": 3, "alert_time": 4}', "at or after it, got 3"),
    ('{"video": "a.mp4", "text": "q", "label": 1, "event_time": 3, "alert_time": "1"}', "'alert_time' must be"),
    ('{"video": "a.mp4", "text": "q", "label": 1, "meta": ["Day"]}', "'meta' must be a JSON object, got list"),
    ('{"video": "a.mp4", "text": "q", "label": 1, "meta": {"w": {"x": 1}}}', "['w'] are not"),
    ('{"video": "missing.mp4", "text": "q", "label": 1}', "no such video file"),
    ('{"video": "../escape.mp4", "text": "q", "label": 1}', "must be relative and stay inside"),
    ('{"video": "/etc/passwd", "text": "q", "label": 1}', "must be relative and stay inside"),
]


@pytest.mark.parametrize("line,message", BAD_LINES)
def test_bad_line_names_file_line_and_problem(tmp_path, line, message):
    root = _dataset(tmp_path, [json.dumps(GOOD), line])
    with pytest.raises(DatasetError) as caught:
        read_split(root, "train")
    text = str(caught.value)
    assert f"{root / 'train.jsonl'}:2:" in text
    assert message in text


def test_alert_time_and_meta_are_read_and_optional(tmp_path):
    meta = {"weather": "Snowy", "ego_involved": False, "scene": None, "frames": 50}
    root = _dataset(tmp_path, [json.dumps({**GOOD, "event_time": 3.1, "alert_time": 2, "meta": meta}), json.dumps(GOOD)])
    timed, plain = read_split(root, "train")
    assert (timed.event_time, timed.alert_time, timed.meta) == (3.1, 2.0, meta)
    assert (plain.event_time, plain.alert_time, plain.meta) == (None, None, {})


def test_undecodable_and_empty_videos_are_named(tmp_path):
    root = _dataset(tmp_path, [json.dumps(GOOD), json.dumps({**GOOD, "video": "text.mp4"}),
                               json.dumps({**GOOD, "video": "empty.mp4"})])
    (root / "train" / "text.mp4").write_text("this is not a video")
    (root / "train" / "empty.mp4").write_bytes(b"")
    with pytest.raises(DatasetError) as caught:
        read_split(root, "train")
    assert len(caught.value.problems) == 2
    assert "train.jsonl:2:" in str(caught.value) and "text.mp4" in str(caught.value)
    assert "train.jsonl:3:" in str(caught.value) and "empty" in str(caught.value)


def test_link_out_of_the_dataset_is_refused(tmp_path):
    outside = write_video(tmp_path / "outside.mp4", 12)
    root = _dataset(tmp_path, [json.dumps({**GOOD, "video": "link.mp4"}), json.dumps(GOOD)])
    os.symlink(outside, root / "train" / "link.mp4")
    with pytest.raises(DatasetError, match="outside"):
        read_split(root, "train")


def test_non_utf8_and_huge_lines(tmp_path):
    root = _dataset(tmp_path, [json.dumps(GOOD), b'{"video": "\xff\xfe"}', b"x" * 100_000])
    with pytest.raises(DatasetError) as caught:
        read_split(root, "train")
    assert "train.jsonl:2: not UTF-8" in str(caught.value)
    assert "train.jsonl:3: line is 100000 bytes" in str(caught.value)


def test_skip_bad_counts_and_lists_what_it_drops(tmp_path, caplog):
    root = _dataset(tmp_path, [json.dumps(GOOD), "not json", json.dumps({**GOOD, "label": 7})])
    with caplog.at_level(logging.WARNING):
        clips = read_split(root, "train", skip_bad=True)
    assert [c.line for c in clips] == [1]
    warning = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "skipping 2 bad line(s)" in warning and "train.jsonl:2:" in warning and "train.jsonl:3:" in warning


def test_missing_jsonl_and_all_bad(tmp_path):
    with pytest.raises(DatasetError, match="cannot read"):
        read_split(tmp_path, "train")
    root = _dataset(tmp_path, ["{}"])
    with pytest.raises(DatasetError, match="no usable clips"):
        read_split(root, "train", skip_bad=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                         st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
                                      lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                                      max_leaves=10).map(lambda v: json.dumps(v).encode())))
def test_arbitrary_lines_give_a_clear_error_never_a_crash(tmp_path_factory, payload):
    root = tmp_path_factory.mktemp("fuzz")
    write_video(root / "train" / "a.mp4", 6)
    (root / "train.jsonl").write_bytes(payload.replace(b"\n", b" ") + b"\n" + json.dumps(GOOD).encode() + b"\n")
    try:
        clips = read_split(root, "train")
    except DatasetError as err:
        assert "train.jsonl:1:" in str(err)
    else:
        assert len(clips) >= 1


def test_training_windows_are_labelled_by_the_event(tmp_path):
    root = tmp_path / "d"
    write_split(root, "train", [{"video": "crash.mp4", "text": "q", "label": 1, "event_time": 4.0},
                                {"video": "calm.mp4", "text": "q", "label": 0}], frames=60, fps=10)
    crash, calm = read_split(root, "train")
    window = WindowSpec(2.0, 5)  # a frame every 0.5 s: windows every 0.5 s back from the latest end
    windows = training_windows(crash, window, horizon=2.0, per_clip=8)
    assert [w.end for w in windows] == pytest.approx([2.0, 2.5, 3.0, 3.5, 4.0])
    assert [w.label for w in windows] == [1, 1, 1, 1, 1]
    windows = training_windows(crash, window, horizon=1.0, per_clip=8)
    assert [w.label for w in windows] == [0, 0, 1, 1, 1]
    assert [w.end for w in training_windows(crash, window, 2.0, 3)] == pytest.approx([2.0, 3.0, 4.0])  # spread
    calm_windows = training_windows(calm, window, 2.0, 20)
    assert all(w.label == 0 for w in calm_windows) and calm_windows[-1].end == pytest.approx(5.9)
    assert [w.end for w in calm_windows] == pytest.approx([5.9 - 0.5 * k for k in range(7, -1, -1)])
    assert clip_end_window(crash).end == pytest.approx(5.9) and clip_end_window(crash).label == 1
    assert training_windows(crash, window, 2.0, 1) == [clip_end_window(crash)]
    groups = group_windows(windows + calm_windows, 3)
    assert [len(g) for g in groups] == [3, 2, 3, 3, 2] and all(len({w.clip for w in g}) == 1 for g in groups)


def _dataset_clips(tmp_path, count=2):
    root = tmp_path / "d"
    write_split(root, "train", [{"video": f"c{i}.mp4", "text": "q", "label": 0} for i in range(count)], frames=40, fps=10)
    return root


def test_a_group_of_windows_reads_each_shared_frame_once(tmp_path):
    from crashwatch.contract.preprocess import PixelSpec
    from crashwatch.contract.prompt import PromptEncoder
    from crashwatch.train.dataset import Collator, WindowDataset, model_inputs
    from crashwatch.train.tokenizer import load_tokenizer

    root = _dataset_clips(tmp_path)
    window = WindowSpec(2.0, 5)
    samples = [w for clip in read_split(root, "train") for w in training_windows(clip, window, 2.0, 20)]
    prompt = PromptEncoder(load_tokenizer("builtin"), window, 4)
    dataset = WindowDataset(group_windows(samples, 4), prompt, PixelSpec(64))
    item = dataset[0]
    assert item["pixel_values"].shape == (4 + 4, 3, 64, 64)  # 4 windows 0.5 s apart: 8 distinct frames
    assert item["window_frames"].tolist() == [[k, k + 1, k + 2, k + 3, k + 4] for k in range(4)]
    for row, sample in zip(range(4), dataset.groups[0]):  # each window is the frames the contract picks
        alone = model_inputs(sample.clip, sample.end, prompt, PixelSpec(64))
        assert torch_equal(item["pixel_values"][item["window_frames"][row]], alone["pixel_values"])
        assert torch_equal(item["input_ids"][row], alone["input_ids"])
    batch = Collator(0)([dataset[0], dataset[1]])
    assert batch["pixel_values"].shape[0] == 8 + dataset[1]["pixel_values"].shape[0]
    assert batch["window_frames"][4:].min() == 8 and batch["labels"].shape == (len(dataset.groups[0]) + len(dataset.groups[1]),)
    assert [w for group in dataset.groups for w in group] == samples


def test_the_frame_cache_serves_the_same_inputs_without_decoding_again(tmp_path):
    from crashwatch.contract.preprocess import PixelSpec
    from crashwatch.contract.prompt import PromptEncoder
    from crashwatch.contract.video import VideoError
    from crashwatch.train.dataset import WindowDataset
    from crashwatch.train.tokenizer import load_tokenizer

    root = _dataset_clips(tmp_path)
    window = WindowSpec(2.0, 4)
    groups = group_windows([w for clip in read_split(root, "train") for w in training_windows(clip, window, 2.0, 3)], 2)
    prompt = PromptEncoder(load_tokenizer("builtin"), window, 4)
    plain = WindowDataset(groups, prompt, PixelSpec(64))
    cached = WindowDataset(groups, prompt, PixelSpec(64), cache_frames=True)
    decoded = [plain[i] for i in range(len(groups))]
    first = [cached[i] for i in range(len(groups))]
    for video in root.glob("train/*.mp4"):
        video.write_bytes(b"")  # nothing left to decode: the second epoch must come from memory
    for index, item in enumerate(decoded):
        again = cached[index]
        assert torch_equal(again["pixel_values"], item["pixel_values"])  # the same floats as without the cache
        assert torch_equal(first[index]["input_ids"], item["input_ids"]) and torch_equal(again["labels"], item["labels"])
    frames = sum(item["pixel_values"].shape[0] for item in decoded)
    assert cached.cache_bytes() == frames * 64 * 64 * 3 and plain.cache_bytes() == 0
    with pytest.raises(VideoError):  # the uncached dataset does decode again
        plain[0]


def test_mirrored_windows_flip_the_frames_and_their_geometry_together(tmp_path):
    import torch

    from crashwatch.contract.preprocess import PixelSpec
    from crashwatch.contract.prompt import PromptEncoder
    from crashwatch.contract.sidecars import geometry_path
    from crashwatch.train.dataset import WindowDataset
    from crashwatch.train.geometry import mirrored_motion, mirrored_nearest, mirrored_targets
    from crashwatch.train.tokenizer import load_tokenizer

    root = tmp_path / "d"
    write_split(root, "train", [{"video": "c.mp4", "text": "q", "label": 0}], frames=40, fps=10)
    # one car right of centre: its box moves left and its distance shrinks frame by frame
    frames = [{"ego_speed": 10.0, "agents": [[200 - i, 60, 300 - i, 120, 9.0 - 0.2 * i, 1.2]]} for i in range(40)]
    geometry_path(root / "train" / "c.mp4").write_text(json.dumps({"size": [320, 180], "frames": frames}))
    window = WindowSpec(2.0, 4)
    groups = group_windows([w for clip in read_split(root, "train") for w in training_windows(clip, window, 2.0, 3)], 2)
    prompt = PromptEncoder(load_tokenizer("builtin"), window, 4)
    plain = WindowDataset(groups, prompt, PixelSpec(64), with_geometry=True)
    mirrored = WindowDataset(groups, prompt, PixelSpec(64), with_geometry=True, mirror=1.0)
    for index in range(len(groups)):
        item, flipped = plain[index], mirrored[index]
        assert torch.equal(flipped["pixel_values"], item["pixel_values"].flip(-1))
        assert torch.equal(flipped["geometry"], torch.from_numpy(mirrored_targets(item["geometry"].numpy())))
        assert torch.equal(flipped["nearest"], torch.from_numpy(mirrored_nearest(item["nearest"].numpy())))
        assert torch.equal(flipped["motion"], torch.from_numpy(mirrored_motion(item["motion"].numpy())))
        assert not torch.equal(flipped["geometry"], item["geometry"]) and not torch.equal(flipped["nearest"], item["nearest"])
    torch.manual_seed(0)
    half = WindowDataset(groups * 30, prompt, PixelSpec(64), mirror=0.5)
    flips = sum(not torch.equal(half[i]["pixel_values"], plain[i % len(groups)]["pixel_values"]) for i in range(60))
    assert 15 < flips < 45  # about half, drawn at each read


def torch_equal(x, y) -> bool:
    return x.shape == y.shape and bool((x == y).all())


def test_dataset_check_reports_each_split_and_names_every_problem(tiny_dataset):
    from click.testing import CliRunner

    from crashwatch.cli import main

    ok = CliRunner().invoke(main, ["dataset", "check", str(tiny_dataset)])
    assert ok.exit_code == 0, ok.output
    assert "train: 6 clips, 3 positive, 3 negative" in ok.output and "every line and video is usable" in ok.output
    with (tiny_dataset / "val.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"video": "none.mp4", "text": "q", "label": 1}\n')
    (tiny_dataset / "test.jsonl").write_text("not json\n", encoding="utf-8")
    bad = CliRunner().invoke(main, ["dataset", "check", str(tiny_dataset)])
    assert bad.exit_code == 1
    assert "val.jsonl:5:" in bad.output and "test.jsonl:1:" in bad.output and "train: 6 clips" in bad.output
