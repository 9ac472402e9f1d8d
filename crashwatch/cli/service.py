"""``crashwatch service``: a monitor as a systemd service that watches itself (docs/service.md)."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

import click

DEFAULT_WATCHDOG_S = 30


@click.group("service")
def service_command() -> None:
    """Run a monitor under systemd: a Type=notify unit with a watchdog."""


@service_command.command("install", context_settings={"ignore_unknown_options": True})
@click.option("--name", required=True, help="The service's name: the unit is crashwatch-NAME.service.")
@click.option("--user", "user_unit", is_flag=True,
              help="A user unit (~/.config/systemd/user, `systemctl --user`), not a system one.")
@click.option("--watchdog", default=DEFAULT_WATCHDOG_S, show_default=True, type=click.IntRange(2, 3600),
              metavar="SECONDS", help="systemd restarts the monitor when no camera made progress for this long.")
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the unit here instead of systemd's folder (a package, another root).")
@click.option("--print", "print_only", is_flag=True, help="Print the unit instead of writing it.")
@click.option("--force", is_flag=True, help="Replace a unit of that name.")
@click.argument("monitor_args", nargs=-1, type=click.UNPROCESSED, required=True)
def install_command(name: str, user_unit: bool, watchdog: int, unit_dir: Path | None, print_only: bool,
                    force: bool, monitor_args: tuple[str, ...]) -> None:
    """Write a systemd unit that runs `crashwatch monitor MONITOR_ARGS` from this folder, e.g.

    crashwatch service install --name yard -- --config cameras.yaml
    """
    from crashwatch.cli.monitor import monitor_command
    from crashwatch.monitor.serving.systemd import unit_text

    if not name.replace("-", "").replace("_", "").isalnum():
        raise click.BadParameter(f"{name!r}: letters, digits, '-' and '_' only", param_hint="--name")
    try:  # the monitor's own options, checked now rather than at the next boot
        monitor_command.make_context("crashwatch monitor", list(monitor_args))
    except click.UsageError as err:
        raise click.UsageError(f"the monitor's options: {err.format_message()}") from None
    run_as = None if os.geteuid() == 0 else getpass.getuser()  # a system unit runs as whoever installs it
    unit = unit_text(name, [sys.executable, "-m", "crashwatch", "monitor", *monitor_args], os.getcwd(), watchdog,
                     user_unit, run_as)
    if print_only:
        click.echo(unit, nl=False)
        return
    folder = unit_dir or (Path.home() / ".config/systemd/user" if user_unit else Path("/etc/systemd/system"))
    path = folder / f"crashwatch-{name}.service"
    if path.exists() and not force:
        raise click.ClickException(f"{path}: a unit of that name exists; --force replaces it")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(unit, encoding="utf-8")
    except OSError as err:
        raise click.ClickException(f"{path}: cannot write the unit ({err.strerror or err}); run as root, give "
                                   "--user, or --print it") from None
    systemctl = "systemctl --user" if user_unit else "systemctl"
    click.echo(f"wrote {path}\nstart it now and at every boot:  {systemctl} daemon-reload && "
               f"{systemctl} enable --now crashwatch-{name}\nits log:  journalctl {'--user ' if user_unit else ''}"
               f"-u crashwatch-{name} -f")


COMMANDS = (service_command,)
