"""Recall and time-to-accident at a bounded false-alarm rate: how many crashes a model warns of, and how early,
when it may raise at most so many false alarms an hour, the figure recent work reports beside AP (a deployed
warning is judged by its false alarms per hour, which AP over short clips does not show).

A false alarm here is the field's: the probability rising to the threshold (a stride at or above it after one
below, or the first stride), with no hysteresis or minimum duration, during normal driving; normal driving is
counted as the project's own scoring counts it (``scoring.score_alerts``): a normal clip's whole length, and a
crash clip's time before ``event_time - warning_window``. A crash clip is warned of when a stride in
``[event_time - warning_window, event_time)`` reaches the threshold; its time-to-accident is the event time minus
the first such stride. Thresholds 0.000 to 0.999 in steps of 0.001; of those whose false alarms per hour stay
within the budget, the one warning the most crashes, and of those the lowest (the earliest warnings). The
project's own false alerts per hour (alerts through the monitor's hysteresis) stand beside it in ``field``.
"""

from __future__ import annotations

import statistics
from typing import Any, Sequence

import numpy as np

from crashwatch.evaluation.curve import Trace

THRESHOLDS = np.round(np.arange(0, 1000) / 1000, 3)


def at_false_alarm_budget(traces: Sequence[Trace], budget: float, warning_window: float) -> dict[str, Any]:
    """The best point of the sweep within ``budget`` false alarms an hour; its figures are None (with
    ``withheld`` saying why) where the traces hold no normal driving or no threshold keeps within it."""
    crashes = [t for t in traces if t.label == 1 and t.event_time is not None]
    normal_seconds = 0.0
    false_alarms = np.zeros(len(THRESHOLDS), int)
    first = []  # per crash clip: the time of the first stride of its warning window reaching each threshold
    for trace in traces:
        times, probabilities = np.asarray(trace.times), np.asarray(trace.probabilities)
        if trace.label == 1 and trace.event_time is None:
            continue
        opens = np.inf if trace.label == 0 else trace.event_time - warning_window
        normal_seconds += trace.duration if trace.label == 0 else min(max(opens, 0.0), trace.duration)
        if not times.size:
            first += [np.full(len(THRESHOLDS), np.nan)] if trace.label == 1 else []
            continue
        above = probabilities[None, :] >= THRESHOLDS[:, None]
        rising = above & ~np.pad(above, ((0, 0), (1, 0)))[:, :-1]
        false_alarms += (rising & (times < opens)[None, :]).sum(axis=1)
        if trace.label == 1:
            warning = above & ((times >= opens) & (times < trace.event_time))[None, :]
            first.append(np.where(warning.any(axis=1), times[warning.argmax(axis=1)], np.nan))
    hours = normal_seconds / 3600
    point: dict[str, Any] = {"budget_per_hour": budget, "normal_hours": hours, "crash_clips": len(crashes),
                             "threshold": None, "warned": None, "recall": None, "mean_time_to_accident_s": None,
                             "median_time_to_accident_s": None, "false_alarms": None, "false_alarms_per_hour": None}
    if not hours:
        return {**point, "withheld": "no normal driving in the replay to count false alarms in"}
    within = np.flatnonzero(false_alarms / hours <= budget)
    if not within.size:
        return {**point, "withheld": f"no threshold keeps within {budget:g} false alarms an hour"}
    warned = np.sum(~np.isnan(np.asarray(first)), axis=0) if first else np.zeros(len(THRESHOLDS), int)
    best = within[np.argmax(warned[within])]  # argmax takes the first, the lowest threshold, among ties
    lead = [t.event_time - f[best] for t, f in zip(crashes, first) if not np.isnan(f[best])]
    return {**point, "threshold": float(THRESHOLDS[best]), "warned": int(warned[best]),
            "recall": int(warned[best]) / len(crashes) if crashes else None,
            "mean_time_to_accident_s": float(np.mean(lead)) if lead else None,
            "median_time_to_accident_s": statistics.median(lead) if lead else None,
            "false_alarms": int(false_alarms[best]), "false_alarms_per_hour": float(false_alarms[best] / hours)}
