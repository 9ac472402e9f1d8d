"""The benchmark suite in smoke mode, and the embedded demo, as a new user runs them."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from crashwatch.bench.process import free_port
from crashwatch.demo import DEMO_BUNDLE, DEMO_DRIVE, demo_event_time
from crashwatch.monitor.engines.local import openvino_installed
from tests.support.media import write_video
from tests.support.shared import REPO


def test_bench_smoke_prints_and_writes_every_measurement(tiny_bundle, tmp_path):
    out = tmp_path / "BENCH.md"
    out.write_text("# Benchmarks\n\nAnalysis above.\n\n<!-- bench:begin -->\nold table\n<!-- bench:end -->\n\nAnalysis below.\n")
    result = subprocess.run([sys.executable, "-m", "crashwatch", "bench", "--smoke", "--bundle", "tiny", str(tiny_bundle),
                             "--demo-bundle", str(tiny_bundle), "--out", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "Machine:" in text and "Reproduce: `crashwatch bench --smoke" in text
    assert "old table" not in text and "Analysis above." in text and "Analysis below." in text  # the analysis stays
    for measure in ("matmul probe", "tiny fp32, onnxruntime at fp32: stride, cached",
                    "tiny fp32, onnxruntime at fp32: stride, naive", "tiny: floor", "capture -> subscriber latency",
                    "lag over a 5 s replay", "monitor peak RSS"):
        assert measure in text, measure
    cached = float(re.search(r"tiny fp32, onnxruntime at fp32: stride, cached \(1 new frame\) \| (\d+) ms", text).group(1))
    naive = float(re.search(r"tiny fp32, onnxruntime at fp32: stride, naive .*? \| (\d+) ms", text).group(1))
    assert naive >= cached  # a window re-encoded costs more than one frame
    runtimes = ["onnxruntime"] + (["openvino"] if openvino_installed() else [])
    for runtime in runtimes:  # the live replay on each runtime: every window encoded only its new frames
        row = re.search(rf"tiny, {runtime} at \w+: real-time replay .*? \| effective stride ([\d.]+) s.*?\| (\d+) risk "
                        r"messages; windows encoding more frames than were new: (\d+)", text)
        assert row and int(row.group(2)) > 0 and row.group(3) == "0", (runtime, text)
    if openvino_installed():
        assert "tiny: OpenVINO vs onnxruntime fp32, cached stride" in text


def test_the_gpu_check_runs_where_there_is_no_gpu_on_the_cpu(tmp_path):
    """The check a lent GPU machine runs, on the tiny architecture: real optimizer steps and the fp16
    reference, the table written."""
    out = tmp_path / "gpu.md"
    result = subprocess.run([sys.executable, "-m", "crashwatch", "-q", "bench", "--gpu-check", "tiny", "--gpu-steps",
                             "2", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert len([line for line in text.splitlines() if line.startswith("| tiny")]) == 2  # a training row, a parity row
    training = re.search(r"\| tiny \| (\w+) \| 2 x 4 x 64 \| ([\d.]+) \| .* \| True \|", text)
    assert training and float(training.group(2)) > 0  # samples a second, the loss finite
    parity = re.search(r"\| tiny \| \w+ \| ([\d.]+) \| [\d.]+ / [\d.]+ \| ([\d.]+) \|", text)
    assert parity and float(parity.group(1)) > 0.99 and float(parity.group(2)) < 0.05, text


def test_the_explanation_bench_times_each_bundle_alone_and_beside_scoring(tiny_bundle, tmp_path):
    out = tmp_path / "explain.md"
    result = subprocess.run([sys.executable, "-m", "crashwatch", "-q", "bench", "--explain", "70", "--bundle", "tiny",
                             str(tiny_bundle), "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = {m.group(1): m.groups() for m in re.finditer(
        r"\| (demo|tiny) \| smolvlm \| \w+ \| \d+ \| \d \| pixels \| 64 \| \w+ \| ([\d.]+) \| ([\d.]+) \(([\d.]+)\) \| "
        r"([\d.]+) \(([\d.]+)\) \| ([\d.]+) \|", out.read_text())}
    assert set(rows) == {"demo", "tiny"}, out.read_text()
    assert all(0 < float(r[1]) <= float(r[2]) <= float(r[3]) and float(r[6]) > 0 for r in rows.values())


def test_the_recording_bench_writes_every_codec_at_each_bitrate(tmp_path):
    clip = write_video(tmp_path / "road.mp4", 40, fps=20, size=(320, 180))
    out = tmp_path / "recording.md"
    result = subprocess.run([sys.executable, "-m", "crashwatch", "bench", "--recording", str(clip), "--out", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [line.split(" | ") for line in out.read_text().splitlines() if re.match(r"\| (h264|vp8|av1|mp4v) \|", line)]
    assert {(r[0].strip("| "), r[1]) for r in rows} == {(c, b) for c in ("h264", "vp8", "av1", "mp4v")
                                                         for b in ("1M", "2M (default)", "4M")}
    for row in rows:
        gb_per_hour, ring_hours = float(row[6]), float(row[7].strip(" |"))
        assert float(row[5]) > 0 and gb_per_hour >= 0 and ring_hours > 0
    assert "Command: `crashwatch bench --recording" in out.read_text()


def test_the_shipped_demo_alerts_before_the_collision(tmp_path):
    if not (DEMO_BUNDLE / "manifest.json").is_file() or not DEMO_DRIVE.is_file():
        pytest.skip(f"no demo bundle in {DEMO_BUNDLE.parent}: it ships with the repository; `make demo-model` rebuilds it")
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "crashwatch", "demo", "--fast", "--out", str(out),
                             "--pub", f"tcp://127.0.0.1:{free_port()}"], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "not a road-ready model" in result.stdout
    assert "ALERT START" in result.stdout
    warning = re.search(r"the alert came ([\d.]+) s before the collision at ([\d.]+) s", result.stdout)
    assert warning and float(warning.group(2)) == round(demo_event_time(), 1) and float(warning.group(1)) > 0
    assert (out / "demo_annotated.mp4").stat().st_size > 0 and (out / "demo_risk.png").read_bytes()[:4] == b"\x89PNG"
    assert "EXPLANATION #1 start: the frame at" in result.stdout  # the subscriber heard why it fired
