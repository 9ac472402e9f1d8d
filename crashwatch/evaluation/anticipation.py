"""The DAD/CCD accident-anticipation protocol, computed as UString (Bao et al. 2020, ``src/eval_tools.py``
``evaluation()``) and DSTA (Karim et al. 2022, the same function plus P@R80) compute it, over a replay's strides
instead of a clip's frames.

A threshold sweep, from the lowest probability any clip shows to below 1 in steps of 0.001 (their
``np.arange(max(min_pred, 0), 1.0, 0.001)``). At each threshold a crash clip is a true positive when a stride
before the accident (``t < event_time``) reaches it; any clip reaching it (a normal clip anywhere, a crash clip
before its accident) is a positive; precision and recall follow, and the time-to-accident of the sweep point is
the mean over the true positives of the event time minus the first stride reaching it. The points are grouped
by recall; each group keeps its highest precision and time. AP is the area under that precision-recall curve
(a rectangle to the first recall, trapezoids after), mTTA the mean time over the groups, TTA@R80 the time of the
group whose recall is nearest 0.8, P@R80 the precision of the first group at or past 0.8.

UString gives the time relative to the accident, ``1 - first_frame / accident_frame``, and multiplies its mean by
the clip's length (5 s for DAD and CCD), not by the accident's time: that is ``*_published_s`` here, for
comparison with the papers' tables; ``mtta_s`` and ``tta_r80_s`` are the same means in plain seconds before the
accident (for DAD's accident at 4.5 s of 5 s the published form reads 1/0.9 of it). Where this differs from their
code: the last recall group takes its highest precision and time as every other group does (theirs takes the
group's first entry in numpy's unstable sort order), and at a threshold of 0 a normal clip is not counted as a
true positive (theirs multiplies the prediction by the label, so 0 >= 0 counted it).
"""

from __future__ import annotations

import statistics
from typing import Any, Sequence

import numpy as np

from crashwatch.evaluation.curve import Trace

STEP = 0.001
RECALL_POINT = 0.8


def anticipation_metrics(traces: Sequence[Trace], clip_seconds: float | None = None) -> dict[str, Any]:
    """AP, mTTA, TTA@R80 and P@R80 over ``traces`` (crash clips without an event time are left out).
    ``clip_seconds`` scales the published relative times (default: the median clip length)."""
    crashes = [t for t in traces if t.label == 1 and t.event_time is not None]
    normals = [t for t in traces if t.label == 0]
    lengths = [t.duration for t in crashes + normals]
    clip_seconds = clip_seconds or (statistics.median(lengths) if lengths else None)
    result: dict[str, Any] = {"crash_clips": len(crashes), "normal_clips": len(normals),
                              "crash_clips_without_event_time": sum(t.label == 1 and t.event_time is None
                                                                    for t in traces),
                              "clip_seconds": clip_seconds, "ap": None, "mtta_s": None, "tta_r80_s": None,
                              "precision_r80": None, "mtta_published_s": None, "tta_r80_published_s": None}
    before = [np.asarray(t.probabilities)[np.asarray(t.times) < t.event_time] for t in crashes]
    anywhere = [np.asarray(t.probabilities) for t in normals]
    shown = [p for p in before + anywhere if p.size]
    if not crashes or not shown:
        return result
    thresholds = np.arange(max(min(float(p.min()) for p in shown), 0.0), 1.0, STEP)
    # Per crash clip and threshold: the first stride before the accident reaching it (or none).
    first = [_first_reaching(p, np.asarray(t.times)[np.asarray(t.times) < t.event_time], thresholds)
             for p, t in zip(before, crashes)]
    peaks = np.array([p.max() for p in anywhere if p.size])
    false_positive = (peaks[None, :] >= thresholds[:, None]).sum(axis=1)  # normal clips reaching each threshold
    points = []
    for k in range(len(thresholds)):
        hits = [(t.event_time, f[k]) for t, f in zip(crashes, first) if not np.isnan(f[k])]
        if hits:
            points.append((len(hits) / len(crashes), len(hits) / (len(hits) + int(false_positive[k])),
                           1.0 - float(np.mean([t0 / event for event, t0 in hits])),
                           float(np.mean([event - t0 for event, t0 in hits]))))
    if not points:
        return result
    recall, precision, relative, seconds = _by_recall(points)
    ap = precision[0] * recall[0] + sum((precision[i - 1] + precision[i]) * (recall[i] - recall[i - 1]) / 2
                                        for i in range(1, len(recall)))
    near = int(np.argmin(np.abs(np.asarray(recall) - RECALL_POINT)))
    past = next((i for i, r in enumerate(recall) if r >= RECALL_POINT), None)
    result.update({"ap": ap, "mtta_s": float(np.mean(seconds)), "tta_r80_s": seconds[near],
                   "precision_r80": None if past is None else precision[past],
                   "mtta_published_s": float(np.mean(relative)) * clip_seconds,
                   "tta_r80_published_s": relative[near] * clip_seconds})
    return result


def _first_reaching(probabilities: np.ndarray, times: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per threshold, the time of the first stride at or above it; NaN where none is."""
    if not probabilities.size:
        return np.full(thresholds.shape, np.nan)
    reached = probabilities[None, :] >= thresholds[:, None]
    return np.where(reached.any(axis=1), times[reached.argmax(axis=1)], np.nan)


def _by_recall(points: list[tuple[float, float, float, float]]) -> tuple[list[float], ...]:
    """The sweep's (recall, precision, relative time, seconds) grouped by recall, ascending; each group's highest
    precision and times."""
    groups: dict[float, list[tuple[float, float, float, float]]] = {}
    for point in points:
        groups.setdefault(point[0], []).append(point)
    recall = sorted(groups)
    return (recall, [max(p[1] for p in groups[r]) for r in recall], [max(p[2] for p in groups[r]) for r in recall],
            [max(p[3] for p in groups[r]) for r in recall])
