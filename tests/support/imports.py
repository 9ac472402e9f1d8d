"""A subprocess on which some packages look not installed: the monitor-only install, as on a vehicle."""

from __future__ import annotations


def forbid(*packages: str) -> str:
    """Prepended to a `python -c` script: ``packages`` then look not installed."""
    return f"""
import importlib.abc, sys
class _Forbid(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {packages!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (forbidden in this test)", name=name)
sys.meta_path.insert(0, _Forbid())
"""


# As on a host with the monitor-only install.
FORBID_TORCH = forbid("torch", "transformers", "onnx")
