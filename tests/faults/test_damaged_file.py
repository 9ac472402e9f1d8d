"""A real H.264 dashcam clip with 200 kB zeroed in the middle: the replay scores every frame that decodes, says
once where the damage was, counts it in status and in Prometheus' counter, and FFmpeg's own complaints stay off
the terminal."""

from __future__ import annotations

import subprocess
import sys

import cv2

from crashwatch.bench.process import free_port
from crashwatch.contract.dataset import read_split
from crashwatch.contract.video import probe_clip, read_frames
from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.messages import CollectingOutlet, Risk
from crashwatch.monitor.pipeline.camera import Monitor
from crashwatch.monitor.pipeline.options import MonitorOptions
from crashwatch.monitor.pipeline.source import parse_source
from tests.support.shared import CLIPS, REPO, need_shared


def _damage(tmp_path):
    data = bytearray(need_shared(CLIPS / "highway_test_small1.mp4").read_bytes())
    middle = len(data) // 2
    data[middle:middle + 200_000] = bytes(200_000)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(data)
    return damaged


def _opencv_decodes(path) -> int:
    """A second decoder's count, OpenCV's, reading on past failures to the header's frame count."""
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    decoded = sum(bool(capture.read()[0]) for _ in range(count))
    capture.release()
    return decoded


def test_a_clip_damaged_in_the_middle_is_scored_on_every_decodable_frame(tiny_bundle, tmp_path, caplog):
    damaged = _damage(tmp_path)
    info = probe_clip(damaged)
    decoded = info.num_frames - info.damaged_frames
    # OpenCV, reading the same file, gets as many, and the one frame FFmpeg patched over the missing data
    assert info.damaged and decoded in (_opencv_decodes(damaged) - 1, _opencv_decodes(damaged))
    outlet = CollectingOutlet()
    monitor = Monitor(RiskModel.open(tiny_bundle), MonitorOptions(source=parse_source(str(damaged)), replay="fast",
                                                                  camera="cab"), lambda status: outlet)
    with caplog.at_level("WARNING"):
        summary = monitor.run()
    assert summary["source_state"] == "ended"
    assert summary["frames"] == decoded  # every decodable frame, past the damage
    assert summary["frames_damaged"] == info.damaged_frames
    said = [r.getMessage() for r in caplog.records if "could not be decoded" in r.getMessage()]
    assert len(said) == 1 and str(damaged) in said[0] and "the replay goes on" in said[0]
    risks = [b for b in outlet.bodies if isinstance(b, Risk)]
    assert risks[-1].t > 3.0  # scored to the end of the 3.6 s clip, not stopped at the damage (1.4 s)
    assert monitor.status().frames_damaged == summary["frames_damaged"]


def test_ffmpeg_says_nothing_of_its_own_on_the_terminal(tiny_bundle, tmp_path):
    damaged = _damage(tmp_path)
    run = subprocess.run([sys.executable, "-m", "crashwatch", "monitor", "--bundle", str(tiny_bundle), "--source",
                          str(damaged), "--replay", "fast", "--pub", f"tcp://127.0.0.1:{free_port()}"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "could not be decoded" in run.stderr
    assert "[h264 @" not in run.stderr and "[h264 @" not in run.stdout  # FFmpeg's own lines


def test_dataset_index_reports_a_clip_damaged_in_the_middle_with_its_damaged_frames(tmp_path):
    damaged = _damage(tmp_path)
    source = tmp_path / "videos"
    for label in ("positive", "negative"):
        (source / label).mkdir(parents=True)
    damaged.rename(source / "positive" / "damaged.mp4")
    (source / "negative" / "sound.mp4").write_bytes(need_shared(CLIPS / "highway_test_small2.mp4").read_bytes())
    run = subprocess.run([sys.executable, "-m", "crashwatch", "dataset", "index", str(source), "--out",
                          str(tmp_path / "data")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert "damaged.mp4" in run.stderr and "damaged: frames 34 to 44 (1.36 to 1.76 s) do not decode" in run.stderr
    assert "sound.mp4" not in run.stderr


def test_a_research_split_reads_a_damaged_clip_on_its_whole_timeline(tmp_path, caplog):
    """Train and evaluation read every frame that decodes: a window over the damage takes the last whole frame
    before it, and the damage is said with the file, the line and the frames."""
    (tmp_path / "test").mkdir()
    _damage(tmp_path).rename(tmp_path / "test" / "damaged.mp4")
    (tmp_path / "test.jsonl").write_text('{"video": "damaged.mp4", "text": "q", "label": 0}\n')
    with caplog.at_level("WARNING"):
        clip, = read_split(tmp_path, "test")
    assert clip.info.damaged == ((34, 44),) and clip.info.num_frames == 88  # past the damage, to the end
    said = [r.getMessage() for r in caplog.records]
    assert any("line 1" in m and "damaged.mp4" in m and "34 to 44" in m for m in said), said
    before, inside, after = read_frames(clip.video, [33, 40, 45])
    assert (inside == before).all() and not (after == before).all()
