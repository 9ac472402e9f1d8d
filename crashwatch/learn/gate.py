"""The gate a new head passes before it runs: the monitor's own alert policy replayed over held-out clips with
the running head's probabilities and the new one's, scored by the evaluation's rules.

Accepted only when no crash the running head warned of goes unwarned, the false alerts are fewer, and the
median time-to-accident is at most ``max_lead_loss`` seconds shorter; refused otherwise, with the figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from crashwatch.contract.dataset import Clip
from crashwatch.contract.risk import sigmoid
from crashwatch.evaluation.curve import AlertRun, Trace
from crashwatch.evaluation.scoring import WARNING_WINDOW, score_alerts, summarise
from crashwatch.monitor.pipeline.alerts import AlertPolicy

MAX_LEAD_LOSS = 0.1  # seconds of median time-to-accident a new head may give up
HOLDOUT_SHARE = 0.3  # of the dismissed events, the newest kept out of the fit for the gate


@dataclass(frozen=True)
class Replayed:
    """A held-out clip, its windows' ends and each window's logit under the running head and the new one."""

    clip: Clip
    times: np.ndarray
    running: np.ndarray
    new: np.ndarray


def _score(items: Sequence[Replayed], logits: str, threshold: float, window: float) -> tuple[dict[str, Any], set[str]]:
    policy = AlertPolicy.around(threshold)
    rows, warned = [], set()
    for item in items:
        clip = item.clip
        trace = Trace(clip.name, clip.label, clip.event_time, clip.info.duration, list(item.times),
                      list(sigmoid(getattr(item, logits))))
        starts = AlertRun.of(policy, trace).starts
        scored = score_alerts(starts, trace.duration, clip.event_time, clip.label, window)
        rows.append({"label": clip.label, "event_time": clip.event_time, "alert_fired": int(bool(starts)), **scored})
        if scored["warning_s"] is not None and scored["time_to_accident_s"] > 0:
            warned.add(clip.name)
    summary = summarise(rows, threshold)
    keys = ("alerted_before_collision", "crash_clips_with_event_time", "median_time_to_accident_s", "false_alerts",
            "false_alerts_per_hour", "normal_hours")
    return {key: summary[key] for key in keys}, warned


def judge(items: Sequence[Replayed], threshold: float, window: float = WARNING_WINDOW,
          max_lead_loss: float = MAX_LEAD_LOSS) -> dict[str, Any]:
    """Both heads' figures on ``items``, the crashes the new one would lose, and the verdict with its reasons."""
    running, warned_before = _score(items, "running", threshold, window)
    new, warned_after = _score(items, "new", threshold, window)
    lost = sorted(warned_before - warned_after)
    reasons = []
    if lost:
        reasons.append(f"{len(lost)} crash(es) the running head warned of would go unwarned: {', '.join(lost)}")
    if new["false_alerts"] >= running["false_alerts"]:
        reasons.append(f"false alerts not fewer ({running['false_alerts']} -> {new['false_alerts']})")
    lead_before, lead_after = running["median_time_to_accident_s"], new["median_time_to_accident_s"]
    if lead_before is not None and (lead_after is None or lead_after < lead_before - max_lead_loss):
        reasons.append(f"median time-to-accident {lead_before:.2f} -> "
                       f"{'none' if lead_after is None else f'{lead_after:.2f}'} s, more than {max_lead_loss:g} s shorter")
    return {"accepted": not reasons, "reasons": reasons, "running": running, "new": new, "lost": lost,
            "clips": len(items), "threshold": threshold, "warning_window_s": window}
