"""What transformers itself computes, for the tests that hold the contract to it."""

from __future__ import annotations

import cv2
import numpy as np


def transformers_pixels(frame_bgr: np.ndarray, size: int) -> np.ndarray:
    """A BGR frame as transformers' own SmolVLM image processor prepares it (the reference the contract's
    preprocessing is held to)."""
    from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

    processor = SmolVLMImageProcessorPil(
        do_image_splitting=False, size={"longest_edge": size}, max_image_size={"longest_edge": size},
        image_mean=[0.5] * 3, image_std=[0.5] * 3, do_pad=False,
    )
    rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
    return np.asarray(processor(images=[[rgb]], return_tensors="np")["pixel_values"])[0, 0]
