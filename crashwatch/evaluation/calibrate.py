"""``crashwatch calibrate``: a bundle's alert threshold set from a replay of drives, for a false-alert budget.

The threshold a training run calibrates (best F1 on clip-end windows) says nothing about how often a stream
alerts; a replay of drives the test never sees does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crashwatch.contract.bundle import set_threshold
from crashwatch.contract.errors import CrashwatchError
from crashwatch.evaluation.certainty import upper_bound
from crashwatch.evaluation.curve import CURVE_THRESHOLDS, caution_within_budget
from crashwatch.evaluation.replay import write_csv
from crashwatch.evaluation.traces import read_replay
from crashwatch.monitor.pipeline.alerts import AlertPolicy

CAUTION_CURVE = "caution_curve.csv"


class CalibrationError(CrashwatchError):
    """No threshold keeps false alerts within the budget; the bundle is left unchanged."""


def apply_calibration(bundle: Path, data: Path, split: str, out: Path, summary: dict[str, Any], budget: float,
                      warning_window: float, caution_budget: float) -> dict[str, Any]:
    """Write the thresholds ``replay_eval``'s ``summary`` picked into the bundle's manifest, with how they were
    chosen: the alert's within ``budget`` false alerts an hour, then the caution (the warning level below: its
    threshold and rising rule) within ``caution_budget`` false cautions an hour at that alert threshold, from
    the replay's traces (every pair tried in ``caution_curve.csv``). Returns the alert's curve point with the
    caution's under ``cautions`` (None when no caution keeps within its budget)."""
    pick = summary["within_budget"]
    if summary.get("withheld"):
        raise CalibrationError(f"{data}: {summary['withheld']} (set --min-normal-hours to go below it); the bundle "
                               "is unchanged")
    if pick is None:
        level, hours = summary.get("confidence"), summary["normal_hours"]
        sure = "" if level is None else (f" at {level:.0%} confidence ({hours:.1f} h of normal driving: even no false "
                                         f"alert bounds the rate only below {upper_bound(0, hours, level):.2f}/h)")
        raise CalibrationError(f"{data}: no threshold up to {CURVE_THRESHOLDS[-1]} keeps false alerts within "
                               f"{budget:g} per hour{sure} (see {out / 'operating_curve.csv'}); the bundle is unchanged")
    _, traces = read_replay(out)
    caution, tried = caution_within_budget(traces, AlertPolicy.around(pick["threshold"]), caution_budget,
                                           warning_window)
    write_csv(out / CAUTION_CURVE, tried)
    set_threshold(bundle, pick["threshold"], {
        "data": str(data), "split": split, "false_alerts_per_hour_budget": budget, "warning_window_s": warning_window,
        "normal_hours": round(summary["normal_hours"], 3), "confidence": pick["confidence"],
        **{k: pick[k] for k in ("alerted_before_collision_rate", "median_time_to_accident_s", "false_alerts_per_hour",
                                "false_alerts_per_hour_upper")},
        "false_cautions_per_hour_budget": caution_budget,
        **({} if caution is None else {k: caution[k] for k in ("false_cautions_per_hour", "warned_by_either",
                                                               "median_first_warning_s")})},
        None if caution is None else (caution["caution_threshold"], caution["caution_rise_seconds"]))
    return {**pick, "cautions": caution}
