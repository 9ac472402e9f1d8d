"""From the head's logit to the risk probability: the one place the two are related."""

from __future__ import annotations

import numpy as np


def sigmoid(logits: np.ndarray | float) -> np.ndarray:
    """The probability of each logit (float64, same shape)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
