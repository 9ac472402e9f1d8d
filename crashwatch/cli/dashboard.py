"""``crashwatch dashboard``: the monitors' messages live in a browser."""

from __future__ import annotations

from pathlib import Path

import click

from crashwatch.cli.options import endpoint_callback
from crashwatch.cli.review import mqtt_options, mqtt_target
from crashwatch.monitor.transports.zeromq import DEFAULT_ENDPOINT

DEFAULT_HTTP = "127.0.0.1:8080"


def _http(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as (host, port)."""
    from crashwatch.monitor.transports.metrics import parse_address

    try:
        return parse_address(value)
    except ValueError as err:
        raise click.BadParameter(str(err), ctx, param) from None


@click.command("dashboard")
@click.option("--connect", "endpoints", multiple=True, default=(DEFAULT_ENDPOINT,), show_default=True, metavar="ENDPOINT",
              callback=endpoint_callback(True),
              help="A monitor's PUB endpoint, tcp://HOST:PORT or HOST:PORT (repeatable: several monitors side by side).")
@click.option("--events", "events_dir", type=click.Path(file_okay=False, path_type=Path),
              help="The monitors' events folder (their --events, or RECORD/events with --record): alerts' clips "
                   "are played from it, a browser copy (WebM) made beside each on first view.")
@click.option("--http", "http", default=DEFAULT_HTTP, show_default=True, callback=_http, metavar="HOST:PORT",
              help="Address to serve the page on. Loopback by default; any other address needs --token-file.")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A file whose first line is the bearer token every request must carry (the page: open "
                   "/?token=TOKEN once).")
@click.option("--curve-server-key", "curve_server_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The monitor's public key file: connect with CURVE (once for all --connect, or once per --connect "
                   "in the same order).")
@click.option("--curve-secret", type=click.Path(dir_okay=False, path_type=Path),
              help="With --curve-server-key: this dashboard's secret key file.")
@click.option("--metrics", metavar="HOST:PORT",
              help="Serve Prometheus metrics at http://HOST:PORT/metrics: per camera silence, messages received and "
                   "missed, alerts heard; pages open (e.g. 127.0.0.1:9109).")
@mqtt_options
def dashboard_command(endpoints: tuple[str, ...], events_dir: Path | None, http: tuple[str, int],
                      token_file: Path | None, curve_server_keys: tuple[Path, ...], curve_secret: Path | None,
                      metrics: str | None, mqtt_url: str | None, mqtt_prefix: str, mqtt_password_file: Path | None,
                      mqtt_ca: Path | None) -> None:
    """Serve a live page of the monitors' cameras, risk and alerts, with a JSON API (/api/state) and the live
    messages (/ws)."""
    from crashwatch.dashboard.access import read_token
    from crashwatch.dashboard.server import Dashboard, DashboardSettings
    from crashwatch.monitor.transports.curve import ClientCurve

    if bool(curve_server_keys) != (curve_secret is not None):
        raise click.UsageError("--curve-server-key and --curve-secret go together")
    if len(curve_server_keys) not in (0, 1, len(endpoints)):
        raise click.UsageError(f"{len(curve_server_keys)} --curve-server-key for {len(endpoints)} --connect: give "
                               "one for all, or one per --connect")
    keys = list(curve_server_keys) * (len(endpoints) if len(curve_server_keys) == 1 else 1)
    curves = [ClientCurve(key, curve_secret) for key in keys] or [None] * len(endpoints)
    host, port = http
    review_mqtt = mqtt_target(mqtt_url, mqtt_password_file, mqtt_ca)
    if review_mqtt is not None and events_dir is None:
        raise click.UsageError("--mqtt publishes the verdicts given on the review page: give --events too")
    dashboard = Dashboard(DashboardSettings(endpoints, curves, events_dir, host, port,
                                            read_token(token_file) if token_file else None, metrics, review_mqtt,
                                            mqtt_prefix))
    if dashboard.metrics_url is not None:
        click.echo(f"Prometheus metrics at {dashboard.metrics_url}", err=True)
    opening = f"{dashboard.url}?token=TOKEN (TOKEN: the first line of {token_file})" if token_file else dashboard.url
    click.echo(f"dashboard of {', '.join(endpoints)}: open {opening} (Ctrl-C stops)", err=True)
    stopped_by = dashboard.serve()
    click.echo(f"dashboard stopped{f' ({stopped_by})' if stopped_by else ''}", err=True)


COMMANDS = (dashboard_command,)
