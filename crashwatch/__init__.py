"""crashwatch: a real-time dashcam crash-risk monitor built on SmolVLM2."""

__version__ = "0.1.0"
