"""The Nexar Dashcam Collision Prediction challenge's score, over a replay.

The challenge's own scorer (``evaluate_submission.py`` in the Hugging Face copy of the set,
nexar-ai/nexar_collision_prediction) takes one score per test video and returns the mean over the solution's
``group`` column of scikit-learn's ``average_precision_score(target, score)`` within each group; the groups are
the times before the event at which the test videos were cut: 0.5, 1.0 and 1.5 s (Moura et al. 2025,
arXiv:2503.03848: "AP computed across multiple intervals before the accident (500 ms, 1000 ms, 1500 ms)").

Over a replay of whole clips this reads as: for each horizon h, a crash clip with an event time is scored by the
probability of its last stride ending at or before ``event_time - h`` (what a model says having seen the video up
to h before the collision; a clip with no stride that early is left out of that group, and counted), and every
normal clip by the probability of its last stride (a test video is scored once, where it ends), in each group;
AP is scikit-learn's (the precision at each distinct score, weighted by the recall it adds), and the score is the
mean of the groups' APs. How the challenge cut its normal test videos, and how it assigned them to groups, is not
published with the scorer; scoring every normal clip at its end in every group is this project's reading.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from crashwatch.evaluation.curve import Trace

HORIZONS = (0.5, 1.0, 1.5)
EPSILON = 1e-6  # stride times are written to the millisecond: a stride at event - h is at, not after, it


def nexar_score(traces: Sequence[Trace], horizons: Sequence[float] = HORIZONS) -> dict[str, Any]:
    """AP per horizon (``ap_at_0.5s`` ...), their mean (``score``), and per horizon the crash clips scored and
    left out (no stride that early)."""
    normals = [t.probabilities[-1] for t in traces if t.label == 0 and t.probabilities]
    result: dict[str, Any] = {}
    aps = []
    for h in horizons:
        crashes, left_out = [], 0
        for trace in traces:
            if trace.label != 1 or trace.event_time is None:
                continue
            early = [p for t, p in zip(trace.times, trace.probabilities) if t <= trace.event_time - h + EPSILON]
            if early:
                crashes.append(early[-1])
            else:
                left_out += 1
        ap = average_precision([1] * len(crashes) + [0] * len(normals), crashes + normals) if crashes else None
        result[f"ap_at_{h:g}s"] = ap
        result[f"crash_clips_at_{h:g}s"] = len(crashes)
        result[f"crash_clips_left_out_at_{h:g}s"] = left_out
        if ap is not None:
            aps.append(ap)
    result["normal_clips"] = len(normals)
    result["score"] = float(np.mean(aps)) if aps else None
    return result


def average_precision(labels: Sequence[int], scores: Sequence[float]) -> float:
    """scikit-learn's ``average_precision_score`` for binary labels, with numpy only (the replay runs where the
    training extra is not installed): the sum over distinct scores, from the highest, of the precision there
    times the recall it adds. Needs at least one positive."""
    y = np.asarray(labels, dtype=float)
    s = np.asarray(scores, dtype=float)
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last index of each distinct score
    true_positives = np.cumsum(y)[last]
    precision = true_positives / (last + 1)
    recall = true_positives / true_positives[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
