"""The package installs as one namespace: every entry form runs from a folder holding files named like the
repository's folders, and a wheel holds ``crashwatch`` alone and runs the demo from a fresh environment."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from crashwatch.bench.process import free_port
from tests.support.media import write_training_clips
from tests.support.shared import REPO

BIN = Path(sys.executable).parent
SHADOWS = ("train", "monitor", "export", "contract")


@pytest.fixture
def shadowed(tmp_path: Path) -> Path:
    """A working folder whose train.py, monitor.py, export.py and contract.py fail loudly if imported."""
    folder = tmp_path / "work"
    folder.mkdir()
    for name in SHADOWS:
        (folder / f"{name}.py").write_text(f"raise SystemExit('{name}.py of the working folder was imported')\n")
    return folder


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**(env or os.environ)}
    env.pop("PYTHONPATH", None)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", [
    ["crashwatch", "--help"],
    ["crashwatch", "monitor", "--help"],
    ["python", "-m", "crashwatch", "train", "--help"],
    ["python", "-m", "crashwatch", "demo", "--help"],
    ["accelerate", "launch", "-m", "crashwatch", "train", "--help"],
])
def test_every_entry_form_runs_beside_files_named_like_the_packages(shadowed, command):
    program = sys.executable if command[0] == "python" else str(BIN / command[0])
    result = _run([program, *command[1:]], shadowed)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Usage:" in result.stdout and "was imported" not in result.stdout + result.stderr


def test_a_wheel_holds_crashwatch_alone_and_runs_the_demo_from_a_fresh_venv(tmp_path, shadowed):
    wheels = tmp_path / "wheels"
    built = _run([str(BIN / "pip"), "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(REPO)],
                 tmp_path)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("crashwatch-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert archive.read(top_level).decode().split() == ["crashwatch"]
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"crashwatch"}
    assert {"crashwatch/monitor/pipeline/camera.py", "crashwatch/monitor/serving/triton/backend/model.py",
            "crashwatch/assets/demo/bundle/manifest.json", "crashwatch/dashboard/static/index.html"} <= set(names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    installed = _run([str(BIN / "pip"), "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps",
                      "--no-index", str(wheel)], tmp_path)
    assert installed.returncode == 0, installed.stderr
    # The dependencies come from this environment's site-packages, added as a plain path: its .pth files (the
    # editable install's finder among them) are not run there, so `crashwatch` can only come from the wheel.
    site = Path(_run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     tmp_path).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    where = _run([str(venv / "bin" / "python"), "-c", "import crashwatch.monitor; print(crashwatch.monitor.__file__)"],
                 shadowed)
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr

    demo = _run([str(venv / "bin" / "crashwatch"), "demo", "--fast", "--out", str(tmp_path / "demo"), "--pub",
                 f"tcp://127.0.0.1:{free_port()}"], shadowed)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "the alert came" in demo.stdout and "false alerts before that: 0" in demo.stdout

    # A shipped configuration by its name, where there is no configs/ folder.
    data = write_training_clips(tmp_path / "data")
    trained = _run([str(venv / "bin" / "crashwatch"), "train", "--config", "tiny", "--data", str(data), "--out",
                    str(tmp_path / "run"), "--max-steps", "1"], shadowed)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "run written to" in trained.stdout and (tmp_path / "run" / "model.safetensors").is_file()
