"""The ``crashwatch`` command run as a user runs it: the installed module in a fresh process."""

from __future__ import annotations

import subprocess
import sys

from tests.support.shared import REPO


def crashwatch(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the installed command as a user would, in a fresh process."""
    result = subprocess.run([sys.executable, "-m", "crashwatch", *args], capture_output=True, text=True,
                            cwd=REPO, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"crashwatch {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result
