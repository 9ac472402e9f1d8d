"""``crashwatch alarm``: the in-cab unit heard through a real sound server (PulseAudio's null sink, recorded),
fed by a real monitor over ZeroMQ and over MQTT through Mosquitto; its rules (cooldown, repeats, mute, a
joiner's replayed state) on its WAV output; and its start-up errors."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from crashwatch.alarm.output import WavOutput
from crashwatch.alarm.sounds import RATE, render_sounds
from crashwatch.alarm.unit import Alarm, AlarmPolicy
from crashwatch.bench.process import free_port
from crashwatch.monitor.messages import Level, LevelChange, Message, envelope
from tests.support.audio import SoundServer, loudest_hz, sounding_stretches
from tests.support.media import write_video
from tests.support.mqtt_broker import Broker, need_mosquitto
from tests.support.shared import REPO
from tests.support.timing import within

CRASHWATCH = [sys.executable, "-m", "crashwatch"]


class Lines(threading.Thread):
    """A child's stderr, line by line, as it comes."""

    def __init__(self, process: subprocess.Popen) -> None:
        super().__init__(daemon=True)
        self.process, self.lines = process, []
        self.start()

    def run(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for(self, text: str, seconds: float) -> str:
        deadline = time.monotonic() + within(seconds)
        while time.monotonic() < deadline:
            found = [line for line in self.lines if text in line]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r} within {seconds} s:\n{''.join(self.lines[-30:])}")


def _hook(log: Path) -> str:
    """A hook command that appends the level and camera it was run for to ``log``."""
    code = (f"import os; open({str(log)!r}, 'a').write(os.environ['CRASHWATCH_LEVEL'] + ' ' + "
            "os.environ['CRASHWATCH_CAMERA'] + chr(10))")
    return f'{sys.executable} -c "{code}"'


def _stop(*processes: subprocess.Popen | None) -> None:
    for process in processes:
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(10)


def _wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as handle:
        return np.frombuffer(handle.readframes(handle.getnframes()), "<i2").astype(np.float32) / 32768.0


@pytest.mark.timed
def test_an_imminent_warning_from_a_real_monitor_is_heard_repeated_louder_until_muted(tiny_bundle, tmp_path):
    server = SoundServer(tmp_path / "sound").start()
    clip = write_video(tmp_path / "drive.mp4", 100, fps=10)
    endpoint, control = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    hooks = tmp_path / "hooks.txt"
    alarm = subprocess.Popen([*CRASHWATCH, "alarm", "run", "--connect", endpoint, "--repeat", "1", "--control", control,
                              "--on", "imminent", _hook(hooks)], cwd=REPO, env=server.env, stderr=subprocess.PIPE,
                             text=True)
    alarm_log = Lines(alarm)
    monitor = None
    try:
        alarm_log.wait_for("alarm on audio device", 15)
        server.record()
        recording_from = time.time()
        monitor = subprocess.Popen([*CRASHWATCH, "monitor", "--bundle", str(tiny_bundle), "--source", str(clip),
                                    "--camera", "front", "--pub", endpoint, "--loop", "--alert-on", "0"], cwd=REPO,
                                   stderr=subprocess.DEVNULL)
        sounded = alarm_log.wait_for("imminent sounded", 30)
        assert "after the capture of the window's newest frame" in sounded
        time.sleep(2.6)  # two repeats, a second apart
        muted = subprocess.run([*CRASHWATCH, "alarm", "mute", "1", "--control", control], cwd=REPO,
                               capture_output=True, text=True, timeout=30)
        assert muted.returncode == 0 and muted.stdout.startswith("muted until"), muted.stderr
        muted_at = time.time() - recording_from
        time.sleep(2.5)  # imminent goes on, muted: no repeat
        monitor.kill()  # a monitor gone without a word
        alarm_log.wait_for("nothing heard for", 10)
    finally:
        _stop(monitor, alarm)
        server.stop()
    stretches = sounding_stretches(server.heard())
    assert len(stretches) >= 3, stretches
    assert all(abs(loudest_hz(server.heard()[a:b]) - 1000) < 20 for a, b in stretches)  # the imminent tone
    peaks = [float(np.abs(server.heard()[a:b]).max()) for a, b in stretches[:3]]
    assert peaks[0] < peaks[1] < peaks[2]  # louder at each repeat
    assert all(a / RATE < muted_at + 0.3 for a, _ in stretches)  # nothing after the mute
    assert hooks.read_text().splitlines()[:1] == ["imminent front"]


@pytest.mark.timed
def test_a_caution_over_mqtt_is_written_once_and_its_end_runs_the_hook(tiny_bundle, tmp_path):
    need_mosquitto()
    broker = Broker(tmp_path / "broker").start()
    clip = write_video(tmp_path / "drive.mp4", 100, fps=10)
    wav, hooks = tmp_path / "said.wav", tmp_path / "hooks.txt"
    mqtt = f"mqtt://127.0.0.1:{broker.port}"
    alarm = subprocess.Popen([*CRASHWATCH, "alarm", "run", "--mqtt", mqtt, "--camera", "front", "--wav", str(wav),
                              "--control", f"tcp://127.0.0.1:{free_port()}", "--on", "none", _hook(hooks)], cwd=REPO,
                             stderr=subprocess.PIPE, text=True)
    alarm_log = Lines(alarm)
    monitor = None
    try:
        alarm_log.wait_for("connected to", 15)
        # a caution from the first stride on (threshold 0) and never an alert (at 1.0, above the tiny model's risk)
        monitor = subprocess.Popen([*CRASHWATCH, "monitor", "--bundle", str(tiny_bundle), "--source", str(clip),
                                    "--camera", "front", "--pub", f"tcp://127.0.0.1:{free_port()}", "--loop",
                                    "--caution-on", "0", "--alert-on", "1", "--mqtt", mqtt, "--mqtt-outbox",
                                    str(tmp_path / "outbox.sqlite")], cwd=REPO, stderr=subprocess.DEVNULL)
        alarm_log.wait_for("caution sounded", 30)
        time.sleep(1.5)
        monitor.terminate()  # a clean stop: the level goes back to none
        monitor.wait(20)
        alarm_log.wait_for("caution -> none", 10)
        deadline = time.monotonic() + within(5)
        while not (hooks.exists() and hooks.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        _stop(monitor, alarm)
        broker.stop()
    said = _wav(wav)
    stretches = sounding_stretches(said)
    assert len(stretches) == 1 and abs(loudest_hz(said) - 600) < 20  # one caution: two 600 Hz beeps
    assert hooks.read_text().splitlines() == ["none front"]


def _change(camera: str, level: Level, previous: Level, seq: int, replay: bool = False, age: float = 0.0) -> Message:
    change = LevelChange(level=level, previous=previous, t=float(seq), probability=0.5, reason="test",
                         captured_at=time.time() - age, caution_threshold=0.5, alert_threshold=0.9,
                         alert_id=1 if level is Level.IMMINENT else None)
    wire = {**envelope(change.TOPIC, seq, camera, change.to_wire()), "sent_at": time.time() - age}
    return Message("level", seq, camera, wire["sent_at"], wire, change, replay=replay)


def test_the_units_rules_cooldown_mute_and_a_joiners_state(tmp_path):
    out = tmp_path / "rules.wav"
    holder: list[Alarm] = []
    output = WavOutput(out, lambda sounding, at: holder[0].started(sounding, at))
    alarm = Alarm(render_sounds(None), output, AlarmPolicy(cooldown_s=60, repeat_s=0))
    holder.append(alarm)
    alarm.take(_change("a", Level.CAUTION, Level.NONE, 1))  # sounds
    alarm.take(_change("a", Level.NONE, Level.CAUTION, 2))
    alarm.take(_change("a", Level.CAUTION, Level.NONE, 3))  # within the cooldown: silent
    alarm.take(_change("b", Level.CAUTION, Level.NONE, 1))  # another camera: its own cooldown, sounds
    alarm.take(_change("c", Level.IMMINENT, Level.NONE, 1, replay=True, age=30))  # an old state: taken, not sounded
    alarm.take(_change("e", Level.CAUTION, Level.NONE, 1, replay=True))  # fresh: its live copy was lost, sounded
    alarm.mute(60)
    alarm.take(_change("d", Level.CAUTION, Level.NONE, 1))  # muted
    alarm.take(_change("d", Level.IMMINENT, Level.CAUTION, 2))  # imminent sounds, muted or not
    output.close()
    assert [(s.camera, s.level.value) for s in alarm.soundings] == [("a", "caution"), ("b", "caution"),
                                                                    ("e", "caution"), ("d", "imminent")]
    assert all(s.started_at is not None and s.started_at >= s.sent_at for s in alarm.soundings)
    assert alarm.state()["cameras"] == {"a": "caution", "b": "caution", "c": "imminent", "e": "caution",
                                        "d": "imminent"}
    assert alarm.state()["muted_until"] is not None
    said = _wav(out)
    expected = sum(len(render_sounds(None)[s.level]) for s in alarm.soundings)
    assert len(said) == expected


def test_a_missing_device_or_speech_engine_is_an_error_at_start(tmp_path):
    run = subprocess.run([*CRASHWATCH, "alarm", "check", "--device", "no-such-speaker"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "no-such-speaker" in run.stderr and "Traceback" not in run.stderr, run.stderr
    run = subprocess.run([*CRASHWATCH, "alarm", "check", "--wav", str(tmp_path / "w.wav"), "--voice"], cwd=REPO,
                         capture_output=True, text=True, timeout=60, env={"PATH": str(tmp_path)})
    assert run.returncode == 1 and "espeak-ng" in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_spoken_words_follow_the_tones(tmp_path):
    if subprocess.run(["which", "espeak-ng"], capture_output=True).returncode != 0:
        pytest.skip("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    run = subprocess.run([*CRASHWATCH, "alarm", "check", "--wav", str(tmp_path / "w.wav"), "--voice", "--say",
                          "caution", "Watch the road"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    tones = sum(len(samples) for samples in render_sounds(None).values())
    assert len(_wav(tmp_path / "w.wav")) > tones + RATE  # the words of both levels: a second and more
