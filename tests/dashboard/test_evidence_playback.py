"""Evidence a browser plays as written: a real 720p H.264 dashcam clip recorded by a real monitor process into
H.264 segments, an event of several segments joined packet by packet (no transcoding), played whole in headless
Chromium from a dashboard started afterwards."""

from __future__ import annotations

import subprocess
import sys

from crashwatch.contract.video import VideoFile, probe_clip
from crashwatch.monitor.evidence.lock import LockedEvent
from crashwatch.monitor.evidence.segments import BROWSER_COPY, JOINED
from tests.dashboard.test_dashboard import DashboardProcess, _wait, chromium  # noqa: F401 (a fixture)
from tests.support.shared import CLIPS, REPO, need_shared


def test_recorded_h264_segments_play_in_a_browser_without_transcoding(tiny_bundle, chromium, tmp_path):  # noqa: F811
    clip = need_shared(CLIPS / "dad_000478.mp4")  # 1280x720 H.264, 5 s at 20 fps
    record = tmp_path / "rec"
    run = subprocess.run([sys.executable, "-m", "crashwatch", "monitor", "--bundle", str(tiny_bundle), "--source",
                          str(clip), "--replay", "fast", "--camera", "front", "--record", str(record),
                          "--record-segment", "1", "--alert-on", "0", "--alert-min-on", "0"],
                         cwd=REPO, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    folder = next((record / "events").glob("front-*"))
    event = LockedEvent.read(folder)
    segments = [folder / name for name in event.videos()]
    assert len(segments) >= 2
    for segment in segments:
        with VideoFile(segment) as video:
            assert (video.codec, video.size) == ("h264", (1280, 720)), segment
    recorded = sum(probe_clip(s).duration for s in segments)

    dashboard = DashboardProcess(tmp_path / "dashboard.log", "--events", str(record / "events"))
    try:
        status, headers, _ = dashboard.get(f"/events/{folder.name}/video", {"Range": "bytes=0-99"})
        assert (status, headers["content-type"]) == (206, "video/mp4")
        chromium.get(dashboard.url + "/review")
        chromium.execute_script(
            "const v = document.createElement('video'); v.id = 'played'; v.muted = true;"
            f"v.src = '/events/{folder.name}/video'; document.body.appendChild(v); v.play();")
        _wait(lambda: chromium.execute_script("const v = document.getElementById('played');"
                                              "return v.readyState >= 3 && v.currentTime > 0.2;"), 60,
              "the event's video playing in Chromium")
        duration, width, error = chromium.execute_script(
            "const v = document.getElementById('played'); return [v.duration, v.videoWidth, v.error && v.error.code];")
    finally:
        dashboard.process.terminate()
        dashboard.process.wait(timeout=10)
    assert error is None and width == 1280
    assert abs(duration - recorded) < 0.1, (duration, recorded)  # every segment, one after the other
    assert (folder / f"{JOINED}.mp4").is_file() and not (folder / BROWSER_COPY).exists()  # joined, not transcoded
    with VideoFile(folder / f"{JOINED}.mp4") as joined:
        assert joined.codec == "h264"
    run = subprocess.run([sys.executable, "-m", "crashwatch", "verify", str(folder)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    said = run.stdout + run.stderr  # the joined copy is not taken for tampering: unsigned is all that is wrong
    assert "not signed" in said and "1 problem(s)" in said, said
