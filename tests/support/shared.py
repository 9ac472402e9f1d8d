"""Where the repository and the ``../shared`` material are, and a skip (saying why) where a clone has none."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
CLIPS = SHARED / "clips"
SMOLVLM_TOKENIZER = SHARED / "smolvlm" / "SmolVLM-256M-Instruct"
TINY_CONFIG = REPO / "configs" / "tiny.yaml"


def need_shared(path: Path) -> Path:
    """Skip (saying why) where a clone has no ../shared beside it; the core suite makes its own videos."""
    if not path.exists():
        pytest.skip(f"{path} is not here (../shared is only beside the developers' and CI's clones)")
    return path
