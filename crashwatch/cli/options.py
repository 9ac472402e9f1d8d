"""Options more than one command takes: one definition, one help text."""

from __future__ import annotations

from pathlib import Path

import click

from contract.dataset import SPLITS
from crashwatch.evaluation.scoring import FALSE_ALERT_BUDGET, WARNING_WINDOW

existing_dir = click.Path(exists=True, file_okay=False, path_type=Path)
split_option = click.option("--split", default="test", show_default=True, type=click.Choice(SPLITS))
skip_bad_option = click.option("--skip-bad", is_flag=True, help="Drop bad dataset lines with a warning instead of stopping.")
stride_option = click.option("--stride", type=float,
                             help="Seconds between risk queries (default: the window's frame spacing).")
warning_window_option = click.option(
    "--warning-window", type=click.FloatRange(min=0, min_open=True), default=WARNING_WINDOW, show_default=True,
    help="Seconds before a collision in which an alert counts as its warning; earlier alerts are false alerts.")
budget_option = click.option(
    "--false-alerts-per-hour", "budget", type=click.FloatRange(min=0), default=FALSE_ALERT_BUDGET, show_default=True,
    help="False-alert budget: of the alert thresholds with at most this many false alerts per hour of normal "
         "driving, the one warning the most crashes in time (the lowest of those) is picked.")


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
