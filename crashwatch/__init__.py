"""crashwatch: a real-time dashcam crash-risk monitor built on SmolVLM2.

This package is the application layer, on top of the others: the command line (``crashwatch.cli``), the
evaluation by replay (``crashwatch.evaluation``), the demo and its shipped assets, and the benchmarks.
"""

from crashwatch.contract import __version__

__all__ = ["__version__"]
