"""The layering (docs/architecture.md) holds, checked by import-linter with the contracts in setup.cfg over the
package as installed; and the check really fails on an upward import, a circle and torch in the runtime."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.shared import REPO
from tests.support.tree import stage

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), str(REPO / "setup.cfg"), "--no-cache"], cwd=root,
                          capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(root), "PATH": ""})


def test_the_layers_hold(tmp_path):
    result = _lint(stage(tmp_path / "tree"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 kept, 0 broken" in result.stdout


def test_an_upward_import_a_circle_and_torch_in_the_runtime_break_the_contracts(tmp_path):
    root = stage(tmp_path / "tree", copy=True) / "crashwatch"

    def append(module: str, line: str) -> None:
        path = root / module
        path.write_text(path.read_text() + f"\n{line}  # noqa: E402\n")

    append("contract/window.py", "from crashwatch.monitor.engines.model import RiskModel")
    append("monitor/evidence/ring.py", "from crashwatch.monitor.pipeline.camera import Monitor")
    append("monitor/pipeline/scorer.py", "import torch")
    append("learn/fit.py", "import torch")
    append("monitor/messages.py", "import crashwatch.monitor.redact")
    append("monitor/redact.py", "import crashwatch.monitor.messages")
    result = _lint(root.parent)
    assert result.returncode != 0
    assert "crashwatch.contract.window -> crashwatch.monitor.engines.model" in result.stdout
    assert "crashwatch.monitor.evidence.ring -> crashwatch.monitor.pipeline.camera" in result.stdout
    assert "crashwatch.monitor.pipeline.scorer -> torch" in result.stdout
    assert "crashwatch.learn.fit -> torch" in result.stdout
    assert "crashwatch.monitor.messages -> crashwatch.monitor.redact" in result.stdout
