"""Fitting a head on cached states: the trainer's loss (binary cross-entropy on the window's logit, here with
targets between 0 and 1), in numpy, from the head the bundle has, with a light L2 pull towards its weights.
Full-batch Adam: the demo model's ~16,000 windows take seconds on two cores.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadWeights:
    """Linear (``w1`` [hidden, inner], ``b1``), ReLU, Linear (``w2`` [inner], ``b2``): state -> logit."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: float

    def logits(self, states: np.ndarray) -> np.ndarray:
        """``states`` [N, hidden] -> [N], as the graph computes them."""
        return np.maximum(states @ self.w1 + self.b1, 0.0) @ self.w2 + self.b2


@dataclass(frozen=True)
class FitSettings:
    steps: int = 400
    learning_rate: float = 2e-3
    pull: float = 1e-3  # the L2 pull towards the starting head, per weight, relative to the mean loss


def _loss_and_grads(params: list[np.ndarray], x: np.ndarray, y: np.ndarray, w: np.ndarray,
                    start: list[np.ndarray], pull: float) -> tuple[float, list[np.ndarray]]:
    w1, b1, w2, b2 = params
    inner = x @ w1 + b1
    hidden = np.maximum(inner, 0.0)
    logits = hidden @ w2 + b2[0]
    # Weighted binary cross-entropy on logits, written to stay finite for large ones.
    loss = np.sum(w * (np.maximum(logits, 0) - logits * y + np.log1p(np.exp(-np.abs(logits)))))
    d_logits = w * (1.0 / (1.0 + np.exp(-logits)) - y)
    g_w2 = hidden.T @ d_logits
    g_b2 = np.array([d_logits.sum()])
    d_inner = np.outer(d_logits, w2) * (inner > 0)
    g_w1 = x.T @ d_inner
    g_b1 = d_inner.sum(0)
    grads = [g_w1, g_b1, g_w2, g_b2]
    loss += 0.5 * pull * sum(float(np.sum((p - s) ** 2)) for p, s in zip(params, start))
    grads = [g + pull * (p - s) for g, p, s in zip(grads, params, start)]
    return float(loss), grads


def fit_head(start: HeadWeights, states: np.ndarray, targets: np.ndarray, weights: np.ndarray,
             settings: FitSettings = FitSettings()) -> tuple[HeadWeights, dict[str, float]]:
    """A head fitted to ``states`` [N, hidden] towards ``targets`` [N] (probabilities) with per-window
    ``weights`` [N], from ``start``; returns it and the fit's figures (loss before and after)."""
    x = states.astype(np.float64)
    y = targets.astype(np.float64)
    w = weights.astype(np.float64) / weights.sum()
    first = [start.w1.astype(np.float64), start.b1.astype(np.float64), start.w2.astype(np.float64),
             np.array([start.b2], np.float64)]
    params = [p.copy() for p in first]
    moments = [np.zeros_like(p) for p in params]
    squares = [np.zeros_like(p) for p in params]
    before, _ = _loss_and_grads(params, x, y, w, first, 0.0)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, settings.steps + 1):
        loss, grads = _loss_and_grads(params, x, y, w, first, settings.pull)
        for p, g, m, v in zip(params, grads, moments, squares):
            m *= beta1
            m += (1 - beta1) * g
            v *= beta2
            v += (1 - beta2) * g * g
            p -= settings.learning_rate * (m / (1 - beta1 ** step)) / (np.sqrt(v / (1 - beta2 ** step)) + eps)
    after, _ = _loss_and_grads(params, x, y, w, first, 0.0)
    head = HeadWeights(params[0].astype(np.float32), params[1].astype(np.float32), params[2].astype(np.float32),
                       float(params[3][0]))
    log.info("head fitted on %d windows: loss %.4f -> %.4f", len(y), before, after)
    return head, {"windows": int(len(y)), "loss_before": before, "loss_after": after}
