"""Options more than one command takes: one definition, one help text."""

from __future__ import annotations

import math
from pathlib import Path

import click

from contract.dataset import SPLITS
from crashwatch.evaluation.scoring import FALSE_ALERT_BUDGET, MIN_NORMAL_HOURS, WARNING_WINDOW
from monitor.publisher import PublisherError, check_endpoint
from monitor.runtime import LOCAL_RUNTIMES, Runtime


class Finite(click.FloatRange):
    """A float range that also refuses NaN and infinity (``click.FloatRange`` lets NaN through)."""

    def convert(self, value, param, ctx):  # type: ignore[override]
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{number} is not a finite number", param, ctx)
        return number


class Fractions(click.ParamType):
    """Three non-negative fractions summing to 1, ``train,val,test``, as a tuple."""

    name = "train,val,test"

    def convert(self, value, param, ctx):  # type: ignore[override]
        if isinstance(value, tuple):
            return value
        try:
            parts = tuple(float(x) for x in str(value).split(","))
        except ValueError:
            parts = ()
        if len(parts) != 3 or not all(math.isfinite(p) and p >= 0 for p in parts) or abs(sum(parts) - 1) > 1e-6:
            self.fail(f"{value!r}: give three non-negative fractions summing to 1", param, ctx)
        return parts


def endpoint_callback(connect: bool):
    """An option callback: the endpoint checked, or each of a repeated option's (``host:port`` taken as
    tcp:// when connecting)."""
    def check(ctx: click.Context, param: click.Parameter, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        try:
            if isinstance(value, tuple):
                return tuple(check_endpoint(v, connect) for v in value)
            return check_endpoint(value, connect)
        except PublisherError as err:
            raise click.BadParameter(str(err), ctx, param) from None
    return check


SECONDS = Finite(min=0, min_open=True, max=3600)  # a positive duration of at most an hour
PROBABILITY = Finite(min=0, max=1)

existing_dir = click.Path(exists=True, file_okay=False, path_type=Path)
split_option = click.option("--split", default="test", show_default=True, type=click.Choice(SPLITS))
skip_bad_option = click.option("--skip-bad", is_flag=True, help="Drop bad dataset lines with a warning instead of stopping.")
stride_option = click.option("--stride", type=Finite(min=0, min_open=True, max=60),
                             help="Seconds between risk queries, above 0 and at most 60 (default: the window's frame "
                                  "spacing).")
runtime_option = click.option(
    "--runtime", type=click.Choice([r.value for r in LOCAL_RUNTIMES]), default=Runtime.AUTO.value, show_default=True,
    help="Inference engine. auto: OpenVINO for a bundle exported with --openvino on a CPU with AMX (where it is "
         "faster), onnxruntime otherwise and on GPUs; the choice and why are logged, the runtime named in status.")
alert_on_option = click.option("--alert-on", type=PROBABILITY,
                               help="Probability that starts an alert (default: the calibrated threshold).")
warning_window_option = click.option(
    "--warning-window", type=SECONDS, default=WARNING_WINDOW, show_default=True,
    help="Seconds before a collision in which an alert counts as its warning; earlier alerts are false alerts.")
budget_option = click.option(
    "--false-alerts-per-hour", "budget", type=Finite(min=0, max=3600), default=FALSE_ALERT_BUDGET, show_default=True,
    help="False-alert budget: of the alert thresholds with at most this many false alerts per hour of normal "
         "driving, the one warning the most crashes in time (the lowest of those) is picked.")
min_normal_hours_option = click.option(
    "--min-normal-hours", type=Finite(min=0, max=1e6), default=MIN_NORMAL_HOURS, show_default=True,
    help="Hours of normal driving (no collision ahead) the replay must hold before a threshold is recommended "
         "or calibrated from its false-alert rate.")


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
