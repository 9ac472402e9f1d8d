"""What a tester hit on real clips, a real RTSP camera and bad input: one
test, or a few, per item, each failing on the code before the fix."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from crashwatch.bench.process import free_port
from crashwatch.cli import main
from crashwatch.contract.bundle import Manifest
from crashwatch.contract.preprocess import PixelSpec, normalise, preprocess_frame, resize_frame
from crashwatch.contract.video import probe_clip, read_frames
from crashwatch.demo import DEMO_BUNDLE
from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.evidence.clips import clip_timing
from crashwatch.monitor.pipeline.camera import Monitor
from crashwatch.monitor.pipeline.options import MonitorOptions, OptionsError
from crashwatch.monitor.pipeline.source import parse_source
from crashwatch.monitor.transports.zeromq import Publisher, PublisherError
from tests.support.collector import Collector
from tests.support.imports import FORBID_TORCH
from tests.support.media import write_video
from tests.support.shared import CLIPS, REPO, TINY_CONFIG, need_shared
from tests.support.timing import within


def _replay(bundle: Path, clip: Path, tmp_path: Path, **options) -> tuple[Monitor, Collector]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    monitor = Monitor(RiskModel.open(bundle), MonitorOptions(source=parse_source(str(clip)), replay="fast", **options),
                      lambda status: Publisher(endpoint, "cam", status=status))
    collector = Collector(endpoint)
    assert collector.wait_for(lambda c: c.of("status"), 5)
    monitor.run()
    collector.wait_for(lambda c: any(s["source"]["state"] == "ended" for s in c.of("status")), 3)
    collector.stop()
    return monitor, collector


# -- 1. event clips at the stream's own speed -----------------------------------------------------------------

@pytest.mark.parametrize("fps", [30.0, 8.0])
def test_event_clips_play_at_the_streams_speed(tiny_bundle, tmp_path, fps):
    clip = write_video(tmp_path / "src.mp4", int(6 * fps), fps=fps)
    _replay(tiny_bundle, clip, tmp_path, events_dir=tmp_path / "events", events_hold="memory", event_post_seconds=2.0,
            alert_on=0.0, alert_off=0.0)
    written = sorted((tmp_path / "events").glob("*.mp4"))
    assert written
    info = probe_clip(written[0])
    sidecar = json.loads(written[0].with_suffix(".json").read_text())
    times = [f["t"] for f in sidecar["frames"]]
    covered = times[-1] - times[0] + 1 / fps  # from the first frame to just after the last
    assert info.fps == pytest.approx(fps, rel=1e-3)
    assert abs(info.duration - covered) <= 1 / fps
    for frame in sidecar["frames"]:  # each frame shows at its own time since the first
        assert abs(frame["clip_t"] - (frame["t"] - times[0])) <= 0.5 / fps


def test_a_frame_the_capture_dropped_is_held_not_skipped():
    fps, slots = clip_timing([0.0, 0.1, 0.2, 0.5, 0.6])  # 0.3 and 0.4 were dropped
    assert fps == pytest.approx(10.0) and slots == [0, 1, 2, 5, 6]


# -- 2. numeric options are checked ---------------------------------------------------------------------------

@pytest.mark.parametrize("args,option", [
    (["monitor", "--source", "x.mp4", "--stride", "-1"], "--stride"),
    (["monitor", "--source", "x.mp4", "--stride", "0"], "--stride"),
    (["monitor", "--source", "x.mp4", "--stride", "nan"], "--stride"),
    (["monitor", "--source", "x.mp4", "--stride", "1e9"], "--stride"),
    (["monitor", "--source", "x.mp4", "--threads", "0"], "--threads"),
    (["monitor", "--source", "x.mp4", "--alert-on", "1.5"], "--alert-on"),
    (["monitor", "--source", "x.mp4", "--alert-off", "nan"], "--alert-off"),
    (["monitor", "--source", "x.mp4", "--alert-min-on", "-2"], "--alert-min-on"),
    (["monitor", "--source", "x.mp4", "--alert-min-off", "inf"], "--alert-min-off"),
    (["monitor", "--source", "x.mp4", "--window-seconds", "0"], "--window-seconds"),
    (["monitor", "--source", "x.mp4", "--pub", "tcp://127.0.0.1:99999"], "--pub"),
    (["monitor", "--source", "x.mp4", "--pub", "tcp://127.0.0.1:0"], "--pub"),
    (["subscribe", "--count", "0"], "--count"),
    (["subscribe", "--count", "-3"], "--count"),
    (["subscribe", "--connect", "localhost"], "--connect"),
    (["replay-eval", "--bundle", "b", "--data", ".", "--out", "o", "--stride", "-1"], "--stride"),
    (["calibrate", "--bundle", ".", "--data", ".", "--out", "o", "--warning-window", "nan"], "--warning-window"),
    (["synth", "--out", "o", "--drive-minutes", "-1"], "--drive-minutes"),
    (["dataset", "index", ".", "--out", "o", "--split", "0.7,0.7,nan"], "--split"),
    (["dataset", "import", "dad", ".", "--out", "o", "--split", "0.5,0.5"], "--split"),
    (["dataset", "import", "dad", ".", "--out", "o", "--val-fraction", "1"], "--val-fraction"),
    (["metrics", ".", "--clip-seconds", "0"], "--clip-seconds"),
])
def test_bad_numbers_are_a_usage_error_naming_the_option(args, option):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output


def test_the_library_refuses_what_the_cli_refuses(tiny_bundle, tmp_path):
    clip = write_video(tmp_path / "c.mp4", 20)
    for stride in (-1.0, 0.0, float("nan")):
        with pytest.raises(OptionsError, match="--stride: must be a number above 0"):
            Monitor(RiskModel.open(tiny_bundle), MonitorOptions(source=parse_source(str(clip)), stride=stride),
                    lambda status: None)
    with pytest.raises(PublisherError, match="port '99999' is not a number from 1 to 65535"):
        Publisher("tcp://127.0.0.1:99999", "cam")


# -- 3. a short outage: prompt reconnect, honest status ---------------------------------------------------------

def test_a_short_rtsp_outage_is_reported_honestly_and_ends_promptly(tiny_bundle, rtsp_camera):
    camera = rtsp_camera
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    stop = threading.Event()
    monitor = Monitor(RiskModel.open(tiny_bundle), MonitorOptions(source=parse_source(camera.url)),
                      lambda status: Publisher(endpoint, "road", status=status), stop=stop)
    collector = Collector(endpoint)
    thread = threading.Thread(target=monitor.run)
    thread.start()
    outage_s = 6.0
    try:
        assert collector.wait_for(lambda c: len(c.of("risk")) >= 3, 30), "no risk from the live stream"
        camera.kill()
        assert collector.wait_for(lambda c: any(s["source"]["state"] == "reconnecting" for s in c.of("status")), 20)
        killed = time.monotonic()
        skipped_before = collector.of("status")[-1]["strides_skipped"]
        time.sleep(outage_s)
        during = [s for s in collector.of("status") if s["source"]["state"] == "reconnecting"]
        camera.start()
        restarted = time.monotonic()
        risks = len(collector.of("risk"))
        assert collector.wait_for(lambda c: len(c.of("risk")) > risks, 20), "did not resume"
        back_after = time.monotonic() - restarted
        assert collector.wait_for(lambda c: c.of("status")[-1]["source"]["state"] == "online", 3)
        after = collector.of("status")[-1]
    finally:
        stop.set()
        thread.join(10)
        camera.kill()
        collector.stop()
    # Reconnected within a retry of the source coming back (plus opening it and a first window), not a
    # backoff later.
    assert back_after < 4.0, f"back {back_after:.1f} s after the source returned"
    assert all(s["capture_fps"] == 0.0 for s in during[1:])  # nothing comes in: 0 fps, not the last rate
    lags = [s["lag_s"] for s in during if s["lag_s"] is not None]
    assert len(lags) >= 3 and lags[-1] > lags[0] + outage_s / 2  # lag grows while the source is away
    assert after["strides_skipped"] - skipped_before <= 1  # the outage is not counted as overload...
    total = after["source"]["outages_total_s"]
    assert outage_s - 1.0 <= total <= restarted - killed + back_after + 3.0  # ...but as outage time


# -- 4. subscribe says what it waits for ------------------------------------------------------------------------

@pytest.mark.parametrize("started_by", ["a terminal", "a shell that ignores SIGINT in its background jobs"])
def test_subscribe_to_a_dead_endpoint_says_so_and_keeps_waiting(started_by):
    """And Ctrl-C stops it, also where it was started with SIGINT ignored (``nohup ... &`` in a script: Python
    then installs no KeyboardInterrupt, and it waited forever)."""
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if "ignores" in started_by else None
    process = subprocess.Popen([sys.executable, "-m", "crashwatch", "subscribe", "--connect",
                                f"localhost:{free_port()}"], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=ignore)
    try:
        time.sleep(6)
        assert process.poll() is None  # still waiting
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    assert "waiting for messages from tcp://localhost:" in err
    assert "nothing from tcp://localhost:" in err and "Traceback" not in err


# -- 5. the monitor-only install names the extra ----------------------------------------------------------------

@pytest.mark.parametrize("args", [["train", "--config", str(TINY_CONFIG), "--data", "{data}", "--out", "{out}"],
                                  ["export", "--checkpoint", "{data}", "--out", "{out}", "--video", "{video}"],
                                  ["bench", "--smoke", "--out", "{out}/b.md"]])
def test_training_commands_without_the_training_extra_say_what_to_install(tmp_path, args):
    video = write_video(tmp_path / "v.mp4", 10)
    (tmp_path / "data").mkdir()
    args = [a.format(data=tmp_path / "data", out=tmp_path / "out", video=video) for a in args]
    script = FORBID_TORCH + (f"sys.argv = {['crashwatch', *args]!r}\n"
                             "import runpy\nrunpy.run_module('crashwatch', run_name='__main__')\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "needs the training extra" in result.stderr and "crashwatch[cpu,train]" in result.stderr
    assert "Traceback" not in result.stderr


# -- 6. every status and alert start names the model --------------------------------------------------------------

def test_status_and_alert_starts_name_the_model_and_the_demo_is_known_by_content(tiny_bundle, tmp_path):
    clip = write_video(tmp_path / "c.mp4", 40)
    _, collector = _replay(tiny_bundle, clip, tmp_path, alert_on=0.0, alert_off=0.0)
    expected = {"name": tiny_bundle.name, "precision": "fp32", "threshold": Manifest.read(tiny_bundle).threshold,
                "hash": Manifest.read(tiny_bundle).content_hash, "demo": False, "runtime": "onnxruntime",
                "device": "CPUExecutionProvider", "inference_precision": "fp32", "layout": "smolvlm", "zero_shot": None,
                "runtimes": None, "runtime_choice": None}
    assert all(s["model"] == expected for s in collector.of("status"))
    starts = [a for a in collector.of("alert") if a["event"] == "start"]
    assert starts and all(a["model"] == expected for a in starts)
    if not (DEMO_BUNDLE / "manifest.json").is_file():
        pytest.skip("no demo bundle here")
    import shutil

    renamed = tmp_path / "some-model"
    shutil.copytree(DEMO_BUNDLE, renamed)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    collector = Collector(endpoint, ("status",))
    result = subprocess.run([sys.executable, "-m", "crashwatch", "monitor", "--bundle", str(renamed), "--source",
                             str(clip), "--pub", endpoint], cwd=REPO, capture_output=True, text=True, timeout=120)
    collector.stop()
    assert result.returncode == 0, result.stderr
    assert "not a road-ready model" in result.stderr  # however the folder is called
    assert collector.of("status") and all(s["model"]["demo"] for s in collector.of("status"))


# -- 7. scored from the first frame -------------------------------------------------------------------------------

def test_windows_are_scored_from_the_first_frame_marked_partial(tiny_bundle, tmp_path):
    clip = write_video(tmp_path / "c.mp4", 40)  # 4 s at 10 fps; the tiny bundle's window is 2 s
    monitor, collector = _replay(tiny_bundle, clip, tmp_path)
    risks = collector.of("risk")
    assert risks[0]["t"] == pytest.approx(0.0)  # the first stride is on the first frame
    window = Manifest.read(tiny_bundle).window.seconds
    assert all(r["partial"] == (r["t"] < window - 1e-6) for r in risks)
    assert any(r["partial"] for r in risks) and any(not r["partial"] for r in risks)


# -- 8. 4K frames: fast preprocessing that stays near transformers' own -------------------------------------------

@pytest.mark.parametrize("size", [(3840, 2160), (1920, 1080)])
def test_large_frames_stay_close_to_transformers_preprocessing(size):
    from tests.support.reference import transformers_pixels

    frame = read_frames(need_shared(CLIPS / "highway_640.mp4"), [5])[0]
    big = cv2.resize(frame, size, interpolation=cv2.INTER_CUBIC)
    big = np.clip(big.astype(int) + np.random.default_rng(0).integers(-20, 21, big.shape), 0, 255).astype(np.uint8)
    ours, theirs = preprocess_frame(big, PixelSpec(512)), transformers_pixels(big, 512)
    cosine = float(ours.ravel() @ theirs.ravel() / (np.linalg.norm(ours) * np.linalg.norm(theirs)))
    assert cosine >= 0.9995  # the int8 export tolerance asks 0.99 of the embeddings
    assert np.abs(ours - theirs).mean() <= 0.01


def test_a_large_frame_changes_the_risk_less_than_the_int8_tolerance(tiny_bundle):
    model = RiskModel.open(tiny_bundle)
    m = model.manifest
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (90, 160, 3), dtype=np.uint8)
    frames = [cv2.resize(np.roll(small, 8 * k, axis=1), (1920, 1080), interpolation=cv2.INTER_CUBIC)
              for k in range(m.window.num_frames)]
    exact = np.stack([normalise(resize_frame(f, m.pixels.image_size, exact=True), m.pixels) for f in frames])
    served = np.stack([preprocess_frame(f, m.pixels) for f in frames])
    p_exact = model.window_probability(model.encode_frames(exact))
    p_served = model.window_probability(model.encode_frames(served))
    assert abs(p_exact - p_served) <= 0.05


# -- 9. words that say what happened (SIGTERM: tests/faults/test_reliability.py); waits that a signal cuts short ----

def test_a_folder_as_source_is_called_a_folder(tmp_path):
    result = CliRunner().invoke(main, ["monitor", "--source", str(tmp_path)])
    assert result.exit_code == 1 and "a folder, not a video file" in result.output


@pytest.mark.timed
@pytest.mark.parametrize("camera", ["holds the open", "refuses (a retry wait)"])
def test_sigterm_during_an_open_or_a_retry_wait_stops_within_a_second(tiny_bundle, camera):
    with socket.socket() as listener:  # listening, it accepts and never answers: OpenCV's open blocks
        listener.bind(("127.0.0.1", 0))
        if camera == "holds the open":
            listener.listen(8)  # else nothing listens: the open fails at once and the monitor waits to retry
        url = f"rtsp://127.0.0.1:{listener.getsockname()[1]}/live"
        process = subprocess.Popen([sys.executable, "-m", "crashwatch", "monitor", "--bundle", str(tiny_bundle),
                                    "--source", url, "--pub", f"tcp://127.0.0.1:{free_port()}"], cwd=REPO,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while "monitoring" not in process.stderr.readline() and time.monotonic() < deadline:
                pass
            time.sleep(1.7)  # inside the open (which waits up to 5 s for an answer) or a retry wait
            sent = time.monotonic()
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=10)
            stopped_in = time.monotonic() - sent
        finally:
            process.kill()
    assert process.returncode == 0, err
    assert stopped_in < within(1.0), f"{stopped_in:.2f} s"
    assert "[ WARN" not in err  # OpenCV's own warnings do not reach the user


# -- 10. no threshold from too little normal driving --------------------------------------------------------------

def test_no_threshold_is_recommended_from_minutes_of_normal_driving(tiny_bundle, tiny_dataset, tmp_path):
    result = CliRunner().invoke(main, ["replay-eval", "--bundle", str(tiny_bundle), "--data", str(tiny_dataset),
                                       "--out", str(tmp_path / "replay")])
    assert result.exit_code == 0, result.output
    assert "no threshold recommended:" in result.output and "under the 60 min" in result.output
    assert "min of it)" in result.output  # how much normal driving the rate rests on
    refused = CliRunner().invoke(main, ["calibrate", "--bundle", str(tiny_bundle), "--data", str(tiny_dataset),
                                        "--out", str(tmp_path / "calibration")])
    assert refused.exit_code == 1 and "--min-normal-hours" in refused.output
    assert Manifest.read(tiny_bundle).raw.get("threshold_calibration") is None  # the bundle is unchanged
