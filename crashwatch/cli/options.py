"""Options more than one command takes: one definition, one help text."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

import click

from crashwatch.contract.dataset import SPLITS
from crashwatch.evaluation.scoring import FALSE_ALERT_BUDGET, FALSE_CAUTION_BUDGET, MIN_NORMAL_HOURS, WARNING_WINDOW
from crashwatch.monitor.pipeline.options import SETTING, SETTINGS, Setting
from crashwatch.monitor.serving.options import SERVE_SETTING, SERVE_SETTINGS
from crashwatch.monitor.transports.zeromq import PublisherError, check_endpoint


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


class SettingType(click.ParamType):
    """A monitor setting's value on the command line, checked by the setting's own parser (the one a cameras file's
    value goes through)."""

    name = "value"

    def __init__(self, setting: Setting) -> None:
        self.setting = setting

    def convert(self, value, param, ctx):  # type: ignore[override]
        try:
            return self.setting.parse(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


def setting_option(setting: Setting) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The command-line option of a setting (``MonitorOptions``', ``ServeOptions``'), its keyword the field's
    name."""
    if setting.switch:
        return click.option(setting.flag, setting.name, is_flag=True, help=setting.help)
    if setting.choices:
        return click.option(setting.flag, setting.name, type=click.Choice(setting.choices), default=setting.default,
                            show_default=True, help=setting.help)
    if setting.late:
        return click.option(setting.flag, setting.name, metavar=setting.metavar, help=setting.help)
    return click.option(setting.flag, setting.name, type=SettingType(setting), default=setting.default,
                        show_default=setting.default is not None, metavar=setting.metavar, help=setting.help)


def settings_options(settings: Sequence[Setting]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The command-line options of ``settings`` that have a flag, in their order."""
    def add(command: Callable[..., Any]) -> Callable[..., Any]:
        for setting in reversed(settings):
            if setting.flag:
                command = setting_option(setting)(command)
        return command
    return add


camera_options = settings_options(SETTINGS)  # one camera's monitor (``MonitorOptions``)
serve_options = settings_options(SERVE_SETTINGS)  # what a monitor process serves with (``ServeOptions``)


def endpoint_callback(connect: bool):
    """An option callback: the endpoint checked, or each of a repeated option's (``host:port`` taken as
    tcp:// when connecting); an option not given stays None."""
    def check(ctx: click.Context, param: click.Parameter, value: str | tuple[str, ...] | None
              ) -> str | tuple[str, ...] | None:
        try:
            if value is None:
                return None
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
stride_option = setting_option(SETTING["stride"])
runtime_option = setting_option(SERVE_SETTING["runtime"])
alert_on_option = setting_option(SETTING["alert_on"])
warning_window_option = click.option(
    "--warning-window", type=SECONDS, default=WARNING_WINDOW, show_default=True,
    help="Seconds before a collision in which an alert counts as its warning; earlier alerts are false alerts.")
budget_option = click.option(
    "--false-alerts-per-hour", "budget", type=Finite(min=0, max=3600), default=FALSE_ALERT_BUDGET, show_default=True,
    help="False-alert budget: of the alert thresholds with at most this many false alerts per hour of normal "
         "driving, the one warning the most crashes in time (the lowest of those) is picked.")
confidence_option = click.option(
    "--confidence", type=click.FloatRange(0.5, 0.999), default=None, metavar="LEVEL",
    help="Pick the threshold by the exact upper bound on false alerts per hour at this confidence (e.g. 0.95), "
         "not the point figure: how sure the budget is kept, given the hours of normal driving replayed.")
caution_budget_option = click.option(
    "--false-cautions-per-hour", "caution_budget", type=Finite(min=0, max=3600), default=FALSE_CAUTION_BUDGET,
    show_default=True, help="False-caution budget for the caution threshold (the warning level below an alert), "
    "picked by the same rule as the alert's, never above it.")
min_normal_hours_option = click.option(
    "--min-normal-hours", type=Finite(min=0, max=1e6), default=MIN_NORMAL_HOURS, show_default=True,
    help="Hours of normal driving (no collision ahead) the replay must hold before a threshold is recommended "
         "or calibrated from its false-alert rate.")


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
