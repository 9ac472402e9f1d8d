"""Classification metrics and threshold calibration (scikit-learn), shared by validation and ``crashwatch eval``."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, average_precision_score, confusion_matrix, f1_score, roc_auc_score


def binary_metrics(probabilities: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """Accuracy and F1 of ``probability >= threshold`` (the research evaluation's yes/no), AUROC and AP
    (``None`` when the labels hold one class only and they are undefined), and the confusion matrix."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    predicted = (probabilities >= threshold).astype(int)
    both_classes = len(np.unique(labels)) == 2
    return {
        "count": int(labels.size),
        "positives": int(labels.sum()),
        "threshold": float(threshold),
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "auroc": float(roc_auc_score(labels, probabilities)) if both_classes else None,
        "ap": float(average_precision_score(labels, probabilities)) if both_classes else None,
        "confusion_matrix": {
            "labels": [0, 1],
            "matrix": confusion_matrix(labels, predicted, labels=[0, 1]).tolist(),
        },
    }


def by_kind(probabilities: np.ndarray, labels: np.ndarray, kinds: list[str], threshold: float) -> dict[str, Any]:
    """Per kind of clip (a generated clip's scenario): how many, the mean probability, the share at or above
    the threshold, and the AUROC of that kind against every clip of the other label (a collision kind's clips
    against all safe clips, a safe kind's against all collisions): which kinds the model confuses."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    kinds = np.asarray(kinds)
    out = {}
    for kind in sorted(set(kinds.tolist())):
        own = kinds == kind
        label = int(labels[own][0])
        others = labels != label
        pair = own | others
        auroc = roc_auc_score(labels[pair], probabilities[pair]) if own.any() and others.any() else None
        out[kind] = {"clips": int(own.sum()), "label": label, "mean_probability": float(probabilities[own].mean()),
                     "at_or_above_threshold": float((probabilities[own] >= threshold).mean()),
                     "auroc_against_other_label": None if auroc is None else float(auroc)}
    return out


def calibrate_threshold(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The decision threshold with the best F1 on validation (ties: the highest, fewest false alerts).

    Falls back to 0.5 when validation holds a single class and no threshold can be chosen from it.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    if len(np.unique(labels)) < 2:
        return 0.5
    best_threshold, best_f1 = 0.5, -1.0
    for candidate in np.unique(probabilities):
        f1 = f1_score(labels, (probabilities >= candidate).astype(int), zero_division=0)
        if f1 >= best_f1:
            best_threshold, best_f1 = float(candidate), f1
    return best_threshold
