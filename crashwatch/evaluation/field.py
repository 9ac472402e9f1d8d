"""The field's metrics of a replay, beside the project's own: the DAD/CCD protocol (``anticipation``), the Nexar
challenge score (``nexar_score``) and recall at a false-alarm budget (``false_alarms``), with the project's alerts
(``curve``, through the monitor's hysteresis) at the replay's threshold and within the same budget. Written as
``metrics.json`` and ``metrics.csv`` by ``replay-eval`` and, from a replay's folder, by ``crashwatch metrics``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

from crashwatch.evaluation.anticipation import anticipation_metrics
from crashwatch.evaluation.curve import CURVE_THRESHOLDS, Trace, operating_curve, within_budget
from crashwatch.evaluation.false_alarms import at_false_alarm_budget
from crashwatch.evaluation.nexar_score import nexar_score
from crashwatch.evaluation.scoring import MIN_NORMAL_HOURS

METRICS_JSON, METRICS_CSV = "metrics.json", "metrics.csv"


def field_metrics(traces: Sequence[Trace], threshold: float, budget: float, warning_window: float,
                  clip_seconds: float | None = None, min_normal_hours: float = MIN_NORMAL_HOURS) -> dict[str, Any]:
    """Every metric of the replay's traces; ``threshold`` is the alert threshold the replay ran at. Figures at a
    false-alarm budget from less than ``min_normal_hours`` of normal driving are kept and marked indicative."""
    curve = operating_curve(list(traces), {}, warning_window, [threshold, *CURVE_THRESHOLDS])
    return {
        "dad_ccd": anticipation_metrics(traces, clip_seconds),
        "nexar": nexar_score(traces),
        "false_alarm_budget": {**at_false_alarm_budget(traces, budget, warning_window),
                               "min_normal_hours": min_normal_hours},
        "project_alerts": {"at_threshold": curve[0], "within_budget": within_budget(curve[1:], budget)},
        "warning_window_s": warning_window,
    }


def write_metrics(out: Path, metrics: dict[str, Any]) -> None:
    """``metrics.json`` as it is, and ``metrics.csv``: one ``metric,value`` row per figure, nested names joined
    with dots (``dad_ccd.ap``, ``project_alerts.within_budget.threshold``)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / METRICS_JSON).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    with (out / METRICS_CSV).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["metric", "value"])
        writer.writerows(_flat(metrics))


def summary_lines(metrics: dict[str, Any]) -> list[str]:
    """What the commands print."""
    dad, nexar, budget = metrics["dad_ccd"], metrics["nexar"], metrics["false_alarm_budget"]
    own = metrics["project_alerts"]["within_budget"]
    short = budget["normal_hours"] < budget.get("min_normal_hours", 0.0)
    caveat = (f" (indicative only: {budget['normal_hours'] * 60:.1f} min of normal driving, under the "
              f"{budget['min_normal_hours'] * 60:.0f} min a false-alarm rate needs to pick a threshold by)"
              if short else "")
    return [
        f"DAD/CCD protocol: AP {_f(dad['ap'])}, mTTA {_s(dad['mtta_s'])} (published form "
        f"{_s(dad['mtta_published_s'])}), TTA@R80 {_s(dad['tta_r80_s'])} (published form "
        f"{_s(dad['tta_r80_published_s'])}), P@R80 {_f(dad['precision_r80'])}",
        f"Nexar score {_f(nexar['score'])}: AP at 0.5 s {_f(nexar['ap_at_0.5s'])}, 1.0 s {_f(nexar['ap_at_1s'])}, "
        f"1.5 s {_f(nexar['ap_at_1.5s'])}",
        f"within {budget['budget_per_hour']:g} false alarms/h ({budget['normal_hours'] * 60:.1f} min of normal "
        "driving): " + (budget.get("withheld") or
                        f"recall {_f(budget['recall'])} at threshold {budget['threshold']:.3f}, mean "
                        f"time-to-accident {_s(budget['mean_time_to_accident_s'])}, "
                        f"{budget['false_alarms_per_hour']:.1f} false alarms/h")
        + ("; the project's alerts: " + (f"{own['alerted_before_collision_rate'] or 0:.0%} warned at threshold "
                                         f"{own['threshold']:.2f}, {own['false_alerts_per_hour']:.1f} false alerts/h"
                                         if own else "no threshold within it")) + caveat,
    ]


def _flat(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [row for key, inner in value.items() for row in _flat(inner, f"{prefix}{key}.")]
    return [(prefix.rstrip("."), "" if value is None else value)]


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _s(value: float | None) -> str:
    """Seconds, or n/a without a unit."""
    return "n/a" if value is None else f"{value:.3f} s"
