"""`crashwatch dataset import`: each public set's own layout, replicated small with real videos (and the real DAD
and CCD clips of ../shared), read into the research format that the training reader accepts; every file or line
that cannot be used is reported with its reason."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from crashwatch.contract.dataset import DatasetError, read_split
from crashwatch.contract.video import read_frames
from crashwatch.datasets.importers import import_dataset
from tests.support.media import QUESTION, draw_frame, frame_index, write_video
from tests.support.shared import CLIPS, REPO, need_shared


def crashwatch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crashwatch", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


def lines(out: Path, split: str) -> dict[str, dict]:
    return {entry["video"]: entry for entry in map(json.loads, (out / f"{split}.jsonl").read_text().splitlines())}


def everything(out: Path) -> dict[str, dict]:
    return {name: entry for split in ("train", "val", "test") for name, entry in lines(out, split).items()}


def not_used(report) -> list[str]:
    return [str(p) for p in report.problems]


def write_frames(folder: Path, count: int, name: str = "{:06d}.jpg", first: int = 0) -> Path:
    """``count`` JPEG frames, named as DoTA names them (000000.jpg ...) unless told, frame i carrying i
    (``frame_index``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / name.format(first + i)), draw_frame(i, count, moving_box=False))
    return folder


def test_nexar_kaggle_layout_through_the_command(tmp_path):
    src = tmp_path / "nexar"
    rows = [("1", "3.2", "2.5", "1", "Day", "Urban"), ("2", "3.5", "1.0", "1", "Night", "Highway"),
            ("3", "2.8", "", "1", "Day", "Rural"), ("00004", "3.0", "2.0", "1", "Day", "Urban"),
            ("5", "", "", "0", "Day", "Urban"), ("6", "", "", "0", "Night", ""),
            ("7", "", "", "0", "Day", "Highway"), ("8", "", "", "0", "Dusk", "Urban"),
            ("9", "3.0", "2.0", "2", "Day", "Urban"),      # line 10: target 2
            ("10", "2.0", "3.0", "1", "Day", "Urban"),     # line 11: alert after the event
            ("11", "", "", "1", "Day", "Urban"),           # line 12: a collision without its time
            ("12", "soon", "", "1", "Day", "Urban"),       # line 13: not a number
            ("13", "", "", "0", "Day", "Urban"),           # line 14: no video
            ("14", "1.0", "", "0", "Day", "Urban")]        # line 15: normal driving with an event
    src.mkdir()
    with (src / "train.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "time_of_event", "time_of_alert", "target", "light_conditions", "scene"])
        writer.writerows(rows)
    for clip_id in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 77]:
        write_video(src / "train" / f"{clip_id:05d}.mp4", 40)
    (src / "test.csv").write_text("id\n100\n101\n")
    out = tmp_path / "data"

    result = crashwatch("dataset", "import", "nexar", str(src), "--out", str(out), "--split", "0.5,0.25,0.25")
    assert result.returncode == 0, result.stderr
    assert "imported 8 clips of nexar" in result.stdout and "train 4, val 2, test 2" in result.stdout
    table = src / "train.csv"
    for expected in (f"{table}:10: target must be 0 or 1, got '2'", f"{table}:11: time_of_alert 3.0 is after",
                     f"{table}:12: a collision (target 1) without time_of_event", f"{table}:13: time_of_event",
                     f"{table}:14: no video {src / 'train' / '00013.mp4'}", f"{table}:15: normal driving",
                     f"{src / 'train' / '00077.mp4'}: not named in train.csv", f"{src / 'test.csv'}: ids only"):
        assert expected in result.stdout, result.stdout
    # Rows 9-12 and 14 name videos that exist: those are not used either, and not reported twice.
    assert "not used (8):" in result.stdout and "00009.mp4: not named" not in result.stdout

    clips = everything(out)
    assert sorted(clips) == [f"{i:05d}.mp4" for i in range(1, 9)]
    assert clips["00001.mp4"] == {"video": "00001.mp4", "text": QUESTION, "label": 1, "event_time": 3.2,
                                  "alert_time": 2.5, "meta": {"source": "train/00001.mp4", "light_conditions": "Day",
                                                              "scene": "Urban"}}
    assert "alert_time" not in clips["00003.mp4"] and clips["00003.mp4"]["event_time"] == 2.8
    assert clips["00006.mp4"]["meta"] == {"source": "train/00006.mp4", "light_conditions": "Night"}
    assert "event_time" not in clips["00005.mp4"] and clips["00005.mp4"]["label"] == 0
    for split, count in (("train", 4), ("val", 2), ("test", 2)):
        read = read_split(out, split)
        assert len(read) == count and {c.label for c in read} == {0, 1}  # stratified
    timed = {c.name: c for split in ("train", "val", "test") for c in read_split(out, split)}["00002.mp4"]
    assert (timed.event_time, timed.alert_time, timed.meta["scene"]) == (3.5, 1.0, "Highway")
    report = json.loads((out / "import_report.json").read_text())
    assert report["counts"] == {"train": 4, "val": 2, "test": 2} and len(report["not_used"]) == 8

    missing = crashwatch("dataset", "import", "nexar", str(tmp_path), "--out", str(tmp_path / "x"))
    assert missing.returncode == 1 and f"no Nexar train.csv: looked for {tmp_path / 'train.csv'}" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = crashwatch("dataset", "import", "kitti", str(src), "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "'kitti' is not one of 'nexar', 'dad', 'ccd', 'dota'" in bad.stderr


def test_nexar_csv_without_its_columns_names_the_file(tmp_path):
    (tmp_path / "train.csv").write_text("video,label\n1,1\n")
    with pytest.raises(DatasetError, match=r"train.csv:1: missing column\(s\) \['id', 'time_of_event'"):
        import_dataset("nexar", tmp_path, tmp_path / "out", QUESTION)


def test_dad_videos_and_frame_folders_with_the_sets_own_split(tmp_path):
    src = tmp_path / "DAD"
    videos = src / "videos"
    for split, first in (("training", 1), ("testing", 500)):
        for k in range(4):
            write_video(videos / split / "positive" / f"{first + k:06d}.mp4", 100, fps=20)
            write_video(videos / split / "negative" / f"{first + k:06d}.mp4", 100, fps=20)
    # A clip held as its frames (001.jpg ... 100.jpg, as smallcorgi/Anticipating-Accidents once held them).
    write_frames(videos / "testing" / "positive" / "000900", 100, name="{:03d}.jpg", first=1)
    broken = write_frames(videos / "testing" / "positive" / "000901", 3)
    (broken / "000001.jpg").write_bytes(b"not a jpeg")
    (videos / "training" / "negative" / "notes.txt").write_text("downloaded 2024")
    (videos / "training" / "negative" / "000009.mp4").write_bytes(b"")
    out = tmp_path / "data"

    report = import_dataset("dad", src, out, QUESTION, val_fraction=0.25, seed=1)
    assert report.counts == {"train": 6, "val": 2, "test": 9}
    assert sorted(not_used(report)) == sorted([
        f"{broken / '000001.jpg'}: the image does not decode",
        f"{videos / 'training' / 'negative' / 'notes.txt'}: neither a video nor a folder of frames",
        f"{videos / 'training' / 'negative' / '000009.mp4'}: the file is empty"])
    clips = everything(out)
    assert clips["training-positive-000001.mp4"]["event_time"] == 4.5  # frame 90 at 20 fps
    assert clips["training-positive-000001.mp4"]["meta"] == {"source": "training/positive/000001.mp4"}
    assert "event_time" not in clips["testing-negative-000500.mp4"]
    assert set(lines(out, "test")) == {f"testing-{kind}-{500 + k:06d}.mp4" for kind in ("positive", "negative")
                                       for k in range(4)} | {"testing-positive-000900.mp4"}
    encoded = read_split(out, "test")
    clip = next(c for c in encoded if c.name == "testing-positive-000900.mp4")
    assert (clip.info.fps, clip.info.num_frames, clip.event_time) == (20.0, 100, 4.5)
    assert [frame_index(f) for f in read_frames(clip.video, [0, 9, 99])] == [0, 9, 99]  # in frame order
    assert not (out / ".import-frames").exists()
    assert {c.label for c in read_split(out, "val")} == {0, 1} and len(read_split(out, "train")) == 6


def test_dad_and_ccd_from_their_real_clips(tmp_path):
    """The real DAD and CCD clips in their sets' layouts: the event times the importers give are those the
    clips' manifest states (DAD's convention, and CCD's Crash-1500.txt line 000007)."""
    clips = need_shared(CLIPS / "MANIFEST.csv")
    manifest = {row["file"]: row for row in csv.DictReader(clips.open())}
    dad = tmp_path / "DAD" / "videos"
    for split, names in (("training", ["dad_000478", "dad_000487"]), ("testing", ["dad_000493"])):
        for name in names:
            os.makedirs(dad / split / "positive", exist_ok=True)
            os.symlink(CLIPS / f"{name}.mp4", dad / split / "positive" / f"{name[4:]}.mp4")
        os.makedirs(dad / split / "negative", exist_ok=True)
        os.symlink(CLIPS / "highway_test_video.mp4", dad / split / "negative" / "000001.mp4")
    report = import_dataset("dad", tmp_path / "DAD", tmp_path / "dad", QUESTION, val_fraction=0.0)
    assert report.counts == {"train": 3, "val": 0, "test": 2} and report.problems == []
    real = {c.name: c for c in read_split(tmp_path / "dad", "train")}["training-positive-000478.mp4"]
    assert real.event_time == float(manifest["dad_000478.mp4"]["event_time_s"]) == 4.5
    assert (real.info.fps, real.info.num_frames, real.info.duration) == (20.0, 100, 5.0)

    ccd = tmp_path / "CarCrash" / "videos"
    (ccd / "Crash-1500").mkdir(parents=True)
    os.symlink(CLIPS / "ccd_000007.mp4", ccd / "Crash-1500" / "000007.mp4")
    (ccd / "Normal").mkdir()
    os.symlink(CLIPS / "urban_beijing_1.mp4", ccd / "Normal" / "000001.mp4")
    # The clip's own line of Crash-1500.txt: the accident from frame 31 (0-based) of 50, ego car not involved.
    binlabels = ", ".join(["0"] * 31 + ["1"] * 19)
    (ccd / "Crash-1500.txt").write_text(f"000007,[{binlabels}],000290,0012,Day,Snowy,No\n")
    report = import_dataset("ccd", tmp_path / "CarCrash", tmp_path / "ccd", QUESTION, fractions=(1.0, 0.0, 0.0))
    crash, normal = sorted(read_split(tmp_path / "ccd", "train"), key=lambda c: c.name)
    assert crash.name == "crash-000007.mp4" and crash.event_time == float(manifest["ccd_000007.mp4"]["event_time_s"])
    assert crash.meta == {"timing": "Day", "weather": "Snowy", "ego_involved": False, "youtube_id": "0012",
                          "start_frame": "000290", "source": "Crash-1500/000007.mp4"}
    assert (crash.info.fps, crash.info.num_frames) == (10.0, 50)
    assert normal.name == "normal-000001.mp4" and normal.label == 0 and normal.event_time is None


def test_ccd_annotation_and_split_lists_with_malformed_lines(tmp_path):
    src = tmp_path / "CarCrash"
    videos = src / "videos"
    for k in range(1, 5):
        write_video(videos / "Crash-1500" / f"{k:06d}.mp4", 50)
        write_video(videos / "Normal" / f"{k:06d}.mp4", 50)
    write_video(videos / "Crash-1500" / "000005.mp4", 50)  # no line for it

    def ok(vid: str, first: int, ego: str = "Yes") -> str:
        """A good line: the accident from frame ``first``."""
        return f"{vid},[{', '.join(['0'] * first + ['1'] * (50 - first))}],000100,0001,Night,Rainy,{ego}"

    (videos / "Crash-1500.txt").write_text("\n".join([
        ok("000001", 20), ok("000002", 45, "No"), ok("000003", 0), ok("000004", 31),
        "000006,[" + ", ".join(["0"] * 49) + "],000100,0001,Day,Normal,Yes",          # line 5: 49 labels
        "000007,[" + ", ".join(["0"] * 50) + "],000100,0001,Day,Normal,Yes",          # line 6: no accident
        ok("000008", 10, "Maybe"),                                                    # line 7
        ok("000001", 12),                                                             # line 8: again
        "000009,[" + ", ".join(["0"] * 49 + ["2"]) + "],000100,0001,Day,Normal,Yes",  # line 9
        ok("000010", 30),                                                             # line 10: no video
    ]) + "\n")
    features = src / "vgg16_features"
    features.mkdir()
    (features / "train.txt").write_text("positive/000001.npz 1\npositive/000002.npz 1\nnegative/000001.npz 0\n"
                                        "negative/000002.npz 0\nnegative/000003.npz 0\nbroken line\n")
    (features / "test.txt").write_text("positive/000003.npz 1\npositive/000004.npz 1\nnegative/000004.npz 0\n")
    out = tmp_path / "data"

    report = import_dataset("ccd", src, out, QUESTION, val_fraction=0.4, seed=0)
    table = videos / "Crash-1500.txt"
    assert sorted(not_used(report)) == sorted([
        f"{videos / 'Crash-1500' / '000005.mp4'}: no line for it in Crash-1500.txt",
        f"{table}:5: expected a name, 50 frame labels and 5 fields (startframe, youtubeID, timing, weather, "
        "egoinvolve), got 55 comma-separated cells",
        f"{table}:6: no accident frame (every frame label is 0)",
        f"{table}:7: egoinvolve must be Yes or No, got 'Maybe'",
        f"{table}:8: 000001 again (first on line 1)",
        f"{table}:9: frame labels must be 0 or 1, got 2",
        f"{table}:10: no video {videos / 'Crash-1500' / '000010'}.mp4",
        f"{features / 'train.txt'}:6: expected 'positive/NAME.npz 1' or 'negative/NAME.npz 0', got 'broken line'",
    ])
    assert report.counts == {"train": 3, "val": 2, "test": 3}
    clips = everything(out)
    assert {name: clips[name].get("event_time") for name in clips if name.startswith("crash")} == {
        "crash-000001.mp4": 2.0, "crash-000002.mp4": 4.5, "crash-000003.mp4": 0.0, "crash-000004.mp4": 3.1}
    assert clips["crash-000002.mp4"]["meta"]["ego_involved"] is False
    assert set(lines(out, "test")) == {"crash-000003.mp4", "crash-000004.mp4", "normal-000004.mp4"}
    for split in ("train", "val", "test"):
        read_split(out, split)

    # Without the split lists (the videos downloaded alone) every clip is split by fractions.
    os.rename(features, tmp_path / "elsewhere")
    report = import_dataset("ccd", src, tmp_path / "data2", QUESTION, seed=0)
    assert sum(report.counts.values()) == 8 and report.split.startswith("split 0.7,0.15,0.15")


def test_dota_annotations_and_frames(tmp_path):
    src = tmp_path / "DoTA"
    annotations = src / "dataset" / "annotations"
    annotations.mkdir(parents=True)
    frames = src / "frames"

    def clip(name: str, count: int, start: int, end: int, **extra) -> None:
        write_frames(frames / name / "images", count)
        annotation = {"video_name": name, "num_frames": count, "anomaly_start": start, "anomaly_end": end,
                      "ego_involve": True, "night": False, "accident_id": 3, "accident_name": "lateral",
                      "labels": [{"frame_id": i, "image_path": f"frames/{name}/images/{i:06d}.jpg"}
                                 for i in range(count)], **extra}
        (annotations / f"{name}.json").write_text(json.dumps(annotation, indent=1))

    clip("a_000001", 30, 12, 20)
    clip("a_000100", 25, 20, 24, ego_involve=False, accident_name="turning", night=True)
    clip("b_000050", 30, 5, 9)
    clip("b_000200", 20, 8, 15)
    clip("c_000001", 20, 25, 28)                 # the anomaly past the frames
    clip("c_000002", 20, 5, 8, ignore=True)
    clip("c_000003", 20, 9, 4)                   # ends before it starts
    (annotations / "c_000004.json").write_text('{\n "video_name": "c_000004",\n "anomaly_start": 3,,\n}')
    (annotations / "c_000005.json").write_text(json.dumps({"video_name": "c_000005", "anomaly_start": 2,
                                                           "anomaly_end": 5}))  # no frames
    write_frames(frames / "d_000001", 10)         # frames without an annotation
    # video2frames.py's own output: the frames directly in the clip's folder.
    write_frames(frames / "e_000001", 15)
    (annotations / "e_000001.json").write_text(json.dumps({"anomaly_start": 7, "anomaly_end": 9}))
    for name, listed in (("train_split.txt", ["a_000001", "a_000100", "b_000050", "e_000001"]),
                         ("val_split.txt", ["b_000200"])):
        (src / "dataset" / name).write_text("\n".join(listed) + "\n")
    out = tmp_path / "data"

    report = import_dataset("dota", src, out, QUESTION, val_fraction=0.25, seed=0)
    assert sorted(not_used(report)) == sorted([
        f"{annotations / 'c_000001.json'}: anomaly_start 25 is past the 20 frames in {frames / 'c_000001' / 'images'}",
        f"{annotations / 'c_000002.json'}: marked ignore in its annotation",
        f"{annotations / 'c_000003.json'}: anomaly_end 4 is before anomaly_start 9",
        f"{annotations / 'c_000004.json'}:3: malformed JSON: Expecting property name enclosed in double quotes "
        "at column 21",
        f"{annotations / 'c_000005.json'}: no frames at {frames / 'c_000005' / 'images'}",
        f"{frames / 'd_000001'}: no annotation {annotations / 'd_000001'}.json",
    ])
    assert report.counts == {"train": 3, "val": 1, "test": 1}
    clips = everything(out)
    assert clips["a_000100.mp4"]["event_time"] == 2.0 and clips["a_000100.mp4"]["label"] == 1
    assert clips["a_000100.mp4"]["meta"] == {"ego_involved": False, "night": True, "accident_name": "turning",
                                             "accident_id": 3, "anomaly_end_s": 2.4,
                                             "source": "frames/a_000100/images"}
    assert clips["e_000001.mp4"]["meta"]["source"] == "frames/e_000001"
    assert list(lines(out, "test")) == ["b_000200.mp4"]
    test_clip = read_split(out, "test")[0]
    assert (test_clip.info.fps, test_clip.info.num_frames, test_clip.event_time) == (10.0, 20, 0.8)
    assert [frame_index(f) for f in read_frames(test_clip.video, [0, 19])] == [0, 19]
    assert set(lines(out, "train")) | set(lines(out, "val")) == {"a_000001.mp4", "a_000100.mp4", "b_000050.mp4",
                                                                 "e_000001.mp4"}


def test_a_small_set_keeps_each_class_in_each_split_and_says_what_a_split_lacks():
    from crashwatch.datasets.index import LabelledVideo, describe_splits, split_videos

    videos = [LabelledVideo(Path(f"{label}{i}.mp4"), label) for label in (0, 1) for i in range(3)]
    splits = split_videos(videos, (0.7, 0.15, 0.15), seed=0)  # round(3 x 0.15) = 0 left val and test empty
    for split in ("train", "val", "test"):
        assert sorted(v.label for v in splits[split]) == [0, 1], split
    assert describe_splits(splits) == ("train 2 (1 positive, 1 negative), val 2 (1 positive, 1 negative), "
                                       "test 2 (1 positive, 1 negative)")
    tiny = split_videos(videos[:3] + videos[3:4], (0.7, 0.15, 0.15), seed=0)  # one positive: train keeps it
    said = describe_splits(tiny)
    assert "train 2 (1 positive, 1 negative)" in said and "val holds one class only" in said
    assert said.endswith(": the set is too small to split")
