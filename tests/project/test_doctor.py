"""`crashwatch doctor` on this machine, with the real parts it checks: a bundle, a broker (Mosquitto), a
folder on a small file system, a ZeroMQ endpoint in use."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
import zmq
from click.testing import CliRunner

from crashwatch.bench.process import free_port
from crashwatch.cli import main
from crashwatch.contract.bundle import Manifest
from tests.support.mqtt_broker import Broker, need_mosquitto


def _lines(output: str) -> dict[str, list[str]]:
    """Each check's lines: ``{check: ["ok ...", ...]}``."""
    found: dict[str, list[str]] = {}
    for line in output.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0] in ("ok", "WARN", "FAIL"):
            found.setdefault(parts[1] if parts[1] != "real" else "real time", []).append(f"{parts[0]} {parts[2]}")
    return found


def test_a_sound_box_passes_every_check(tiny_bundle, tmp_path):
    need_mosquitto()
    broker = Broker(tmp_path / "broker").start()
    try:
        result = CliRunner().invoke(main, ["doctor", "--bundle", str(tiny_bundle), "--record", str(tmp_path / "rec"),
                                           "--mqtt", f"mqtt://127.0.0.1:{broker.port}",
                                           "--pub", f"tcp://127.0.0.1:{free_port()}"])
    finally:
        broker.stop()
    assert result.exit_code == 0, result.output
    lines = _lines(result.output)
    assert {"python", "packages", "runtimes", "cpu", "bundle", "runtime", "real time", "video", "audio", "disk",
            "broker", "zeromq", "clock"} <= set(lines), result.output
    assert f"#{Manifest.read(tiny_bundle).content_hash}" in lines["bundle"][0]
    assert lines["runtime"][0].startswith("ok auto runs onnxruntime: ")
    assert lines["broker"] == [f"ok mqtt://127.0.0.1:{broker.port}: connected"]
    assert "GB free" in lines["disk"][0] and "all checks passed" in result.output


def test_each_problem_is_one_line_saying_what_to_do_and_the_other_checks_still_run(tiny_bundle, tmp_path):
    damaged = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, damaged)
    (damaged / "head.onnx").write_bytes(b"not a graph")
    taken = zmq.Context.instance().socket(zmq.PUB)
    port = taken.bind_to_random_port("tcp://127.0.0.1")
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)],
                             capture_output=True).returncode == 0
    try:
        result = CliRunner().invoke(main, ["doctor", "--bundle", str(damaged), "--record", str(small),
                                           "--mqtt", f"mqtt://127.0.0.1:{free_port()}",
                                           "--pub", f"tcp://127.0.0.1:{port}"])
    finally:
        taken.close(0)
        if mounted:
            subprocess.run(["umount", str(small)])
    assert result.exit_code == 1 and "check(s) failed" in result.output
    lines = _lines(result.output)
    assert lines["bundle"][0].startswith("FAIL ") and "head.onnx: " in lines["bundle"][0]
    assert lines["broker"][0].startswith("FAIL ") and "connection refused" in lines["broker"][0]
    assert lines["zeromq"][0].startswith("WARN ") and "is a monitor running there?" in lines["zeromq"][0]
    assert lines["clock"][0].startswith(("ok", "WARN"))  # the checks after the failures ran
    if mounted:
        assert lines["disk"][0].startswith("WARN ") and "little room" in lines["disk"][0]
    else:
        pytest.skip("cannot mount a small tmpfs here (needs root): the low-space warning is not checked")


def test_a_cameras_file_is_checked_with_its_own_settings(tiny_bundle, tmp_path):
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text(yaml.safe_dump({"bundle": str(tiny_bundle), "pub": f"tcp://127.0.0.1:{free_port()}",
                                       "cameras": [{"name": "a", "source": "rtsp://cam/x",
                                                    "events": str(tmp_path / "ev")}]}))
    result = CliRunner().invoke(main, ["doctor", "--config", str(cameras)])
    lines = _lines(result.output)
    assert result.exit_code == 0, result.output
    assert lines["bundle"][0].startswith(f"ok {tiny_bundle}:") and lines["disk"][0].startswith(f"ok {tmp_path / 'ev'}:")
    clash = CliRunner().invoke(main, ["doctor", "--config", str(cameras), "--bundle", str(tiny_bundle)])
    assert clash.exit_code == 2 and "not beside it" in clash.output
