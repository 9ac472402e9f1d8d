"""Frame preprocessing: the pixel half of the training/serving contract.

SmolVLM2 prepares video frames with its image processor at ``do_image_splitting=False``: the longest edge is
resized to the model's size (aspect kept), then the frame is resized to a square of that size, both with
Pillow's Lanczos filter on uint8 pixels; it is then rescaled by 1/255 and normalised with the model's mean and
std. We call the same Pillow resampler, so the pixels are bit-identical to transformers' (OpenCV's Lanczos
differs by up to 1.1 on the [-1, 1] scale at sharp edges when downscaling 1280x720, as it does not widen the
filter), without needing torch or transformers. ``tests/contract/test_contract.py`` holds this to transformers.

A frame far larger than the model's size (longest edge over ``PRE_SHRINK_ABOVE`` times it, 1080p and 4K for
512 px) is first shrunk with OpenCV's area filter by the whole factor that brings it to at most
``PRE_SHRINK_TO`` times the size: the exact Lanczos of a 4K frame is too slow for a 30 fps stream (figures in
docs/benchmarks.md), and the area step moves the result little (held to transformers in the tests). Trainer and
monitor both call this function, so they stay identical.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

PRE_SHRINK_ABOVE = 3
PRE_SHRINK_TO = 2


@dataclass(frozen=True)
class PixelSpec:
    """Square input size of the vision encoder and the per-channel normalisation (RGB order)."""

    image_size: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


def longest_edge_size(height: int, width: int, longest: int) -> tuple[int, int]:
    """(height, width) with the longest edge at ``longest``, aspect kept, the short edge rounded down and then up
    to an even number, exactly as transformers' SmolVLM processor sizes it."""
    aspect = width / height
    short = int(longest / aspect) if width >= height else int(longest * aspect)
    short = max(short + short % 2, 1)
    return (short, longest) if width >= height else (longest, short)


def preprocess_frame(frame_bgr: np.ndarray, spec: PixelSpec) -> np.ndarray:
    """One decoded BGR uint8 frame ``[H, W, 3]`` to the model's float32 input ``[3, S, S]``."""
    return normalise(resize_frame(frame_bgr, spec.image_size), spec)


def resize_frame(frame_bgr: np.ndarray, size: int, exact: bool = False) -> np.ndarray:
    """The resize half: a BGR uint8 frame ``[H, W, 3]`` to RGB uint8 ``[size, size, 3]`` (a quarter of the
    float input's bytes: what a training run keeps in memory with ``training.cache_frames``). ``exact``
    leaves out the area pre-shrink, as transformers' processor does (what the benchmark compares with)."""
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 colour frame [H, W, 3], got {frame_bgr.dtype} {frame_bgr.shape}")
    height, width = frame_bgr.shape[:2]
    if not exact and max(height, width) > PRE_SHRINK_ABOVE * size:
        factor = math.ceil(max(height, width) / (PRE_SHRINK_TO * size))  # whole: OpenCV's fast area path
        height, width = height // factor, width // factor
        frame_bgr = cv2.resize(frame_bgr, (width, height), interpolation=cv2.INTER_AREA)
    image = Image.fromarray(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
    new_h, new_w = longest_edge_size(height, width, size)
    if (new_h, new_w) != (height, width):
        image = image.resize((new_w, new_h), Image.Resampling.LANCZOS)
    if (new_h, new_w) != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(image)


def normalise(rgb: np.ndarray, spec: PixelSpec) -> np.ndarray:
    """The normalise half: RGB uint8 ``[..., S, S, 3]`` to float32 ``[..., 3, S, S]``, rescaled by 1/255 and
    normalised with the model's mean and std (looked up per value: the same float32 arithmetic, done 256
    times instead of once a pixel)."""
    table = _normalised_values(spec.mean, spec.std)
    out = np.empty(rgb.shape[:-3] + (3,) + rgb.shape[-3:-1], np.float32)
    for channel in range(3):
        np.take(table[channel], rgb[..., channel], out=out[..., channel, :, :], mode="clip")
    return out


@functools.lru_cache(maxsize=8)
def _normalised_values(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """``[3, 256]``: each uint8 value of each channel, rescaled and normalised."""
    values = np.arange(256, dtype=np.float32)[:, None] * np.float32(1.0 / 255.0)
    return np.ascontiguousarray(((values - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).T)


def preprocess_frames(frames_bgr: Sequence[np.ndarray], spec: PixelSpec) -> np.ndarray:
    """A list of BGR frames to a batch ``[F, 3, S, S]``."""
    return np.stack([preprocess_frame(f, spec) for f in frames_bgr])
