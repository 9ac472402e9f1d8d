"""Procedural dashcam scenes with exact ground truth: the project's own source of labelled driving video."""
