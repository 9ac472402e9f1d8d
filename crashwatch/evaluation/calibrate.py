"""``crashwatch calibrate``: a bundle's alert threshold set from a replay of drives, for a false-alert budget.

The threshold a training run calibrates (best F1 on clip-end windows) says nothing about how often a stream
alerts; a replay of drives the test never sees does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crashwatch.contract.bundle import set_threshold
from crashwatch.contract.errors import CrashwatchError
from crashwatch.evaluation.curve import CURVE_THRESHOLDS


class CalibrationError(CrashwatchError):
    """No threshold keeps false alerts within the budget; the bundle is left unchanged."""


def apply_calibration(bundle: Path, data: Path, split: str, out: Path, summary: dict[str, Any], budget: float,
                      warning_window: float) -> dict[str, Any]:
    """Write the threshold ``replay_eval``'s ``summary`` picked within ``budget`` into the bundle's manifest,
    with how it was chosen; returns the curve point it took."""
    pick = summary["within_budget"]
    if summary.get("withheld"):
        raise CalibrationError(f"{data}: {summary['withheld']} (set --min-normal-hours to go below it); the bundle "
                               "is unchanged")
    if pick is None:
        raise CalibrationError(f"{data}: no threshold up to {CURVE_THRESHOLDS[-1]} keeps false alerts within "
                               f"{budget:g} per hour (see {out / 'operating_curve.csv'}); the bundle is unchanged")
    set_threshold(bundle, pick["threshold"], {
        "data": str(data), "split": split, "false_alerts_per_hour_budget": budget, "warning_window_s": warning_window,
        "normal_hours": round(summary["normal_hours"], 3),
        **{k: pick[k] for k in ("alerted_before_collision_rate", "median_time_to_accident_s", "false_alerts_per_hour")}})
    return pick
