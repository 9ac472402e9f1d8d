"""The layering (README, "Layout") holds, checked by import-linter with the contracts in setup.cfg; and the
check really fails on an upward import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("contract", "monitor", "train", "export", "crashwatch")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), str(REPO / "setup.cfg"), "--no-cache"], cwd=root,
                          capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(root), "PATH": ""})


def test_the_layers_hold():
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers(tmp_path):
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("assets", "__pycache__"))
    window = tmp_path / "contract" / "window.py"
    window.write_text(window.read_text() + "\nfrom monitor.model import RiskModel  # noqa: E402\n")
    scorer = tmp_path / "monitor" / "scorer.py"
    scorer.write_text(scorer.read_text() + "\nimport torch  # noqa: E402\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "contract.window -> monitor.model" in result.stdout
    assert "monitor.scorer -> torch" in result.stdout
