"""The monitor as a systemd service: the unit `crashwatch service install` writes (checked by systemd's own
`systemd-analyze verify`), and the notify protocol spoken to a real datagram socket as systemd listens."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from crashwatch.bench.process import free_port
from crashwatch.cli import main
from tests.support.shared import REPO


def test_the_unit_runs_the_monitor_from_here_as_a_notify_service_and_systemd_accepts_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    args = ["service", "install", "--name", "yard", "--unit-dir", str(tmp_path / "units"), "--watchdog", "20", "--",
            "--source", str(tmp_path / "a clip.mp4"), "--camera", "front", "--alert-on", "0.5"]
    written = runner.invoke(main, args)
    assert written.exit_code == 0, written.output
    unit = (tmp_path / "units/crashwatch-yard.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=20" in unit and "Restart=on-failure" in unit
    assert f"ExecStart={sys.executable} -m crashwatch monitor --source \"{tmp_path}/a clip.mp4\" --camera front " \
           "--alert-on 0.5" in unit
    assert f"WorkingDirectory={tmp_path}" in unit
    assert "systemctl daemon-reload && systemctl enable --now crashwatch-yard" in written.output
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "units/crashwatch-yard.service")],
                                capture_output=True, text=True, timeout=60)
        assert verify.returncode == 0, verify.stdout + verify.stderr

    again = runner.invoke(main, args)
    assert again.exit_code == 1 and "a unit of that name exists; --force replaces it" in again.output
    bad = runner.invoke(main, ["service", "install", "--name", "yard", "--print", "--", "--stride", "-1"])
    assert bad.exit_code == 2 and "the monitor's options: Invalid value for '--stride'" in bad.output
    bad = runner.invoke(main, ["service", "install", "--name", "../x", "--print", "--", "--source", "0"])
    assert bad.exit_code == 2 and "letters, digits" in bad.output
    printed = runner.invoke(main, ["service", "install", "--name", "cab", "--user", "--print", "--", "--config", "c.yaml"])
    assert "WantedBy=default.target" in printed.output and "User=" not in printed.output


class NotifySocket:
    """A datagram socket where systemd would listen: every notification, with when it came."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.socket.settimeout(0.1)
        self.received: list[tuple[float, dict[str, str]]] = []

    def read(self, seconds: float, until=lambda received: False) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not until(self):
            try:
                data = self.socket.recv(4096).decode()
            except TimeoutError:
                continue
            self.received.append((time.monotonic(), dict(line.split("=", 1) for line in data.splitlines())))

    def times(self, key: str) -> list[float]:
        return [at for at, fields in self.received if key in fields]


@pytest.mark.timed
def test_readiness_after_the_first_window_and_a_watchdog_fed_only_while_the_camera_makes_progress(
        tiny_bundle, rtsp_camera, tmp_path):
    notify = NotifySocket(tmp_path / "notify")
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1500000", "PATH": "/usr/bin:/bin"}
    monitor = subprocess.Popen([sys.executable, "-m", "crashwatch", "monitor", "--bundle", str(tiny_bundle),
                                "--source", rtsp_camera.url, "--camera", "cab", "--pub",
                                f"tcp://127.0.0.1:{free_port()}"], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        notify.read(30, until=lambda n: len(n.times("WATCHDOG")) >= 10)
        (ready,) = [fields for _, fields in notify.received if "READY" in fields]
        assert "cab online" in ready["STATUS"] and " 0 strides" not in ready["STATUS"]
        fed = notify.times("WATCHDOG")
        assert len(fed) >= 10 and min(fed) > notify.times("READY")[0]
        assert max(b - a for a, b in zip(fed, fed[1:])) < 1.0  # every half period (0.75 s) while it scores

        rtsp_camera.pause()  # the connection stays open and nothing comes: the capture hangs until its timeout
        paused = time.monotonic()
        notify.read(8)
        rtsp_camera.pause(False)
        notify.read(6)
    finally:
        monitor.send_signal(signal.SIGTERM)
        log = monitor.communicate(timeout=20)[1]
        notify.read(0.5)  # what it said as it stopped waits in the socket
    fed = [at for at in notify.times("WATCHDOG") if at > paused]
    gaps = [b - a for a, b in zip([paused, *fed], fed)]
    assert max(gaps) >= 1.5, gaps  # not fed while the online camera made no progress
    assert fed and fed[-1] > paused + 8, "the watchdog was not fed again once the camera came back"
    assert "no progress on camera cab: systemd's watchdog is no longer fed" in log
    assert notify.times("STOPPING"), "STOPPING=1 was not said on SIGTERM"
