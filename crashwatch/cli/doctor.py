"""``crashwatch doctor``: one command a new user runs on a new box (docs/troubleshooting.md)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from crashwatch.monitor.transports.zeromq import DEFAULT_ENDPOINT

MARKS = {"ok": ("ok", "green"), "warn": ("WARN", "yellow"), "fail": ("FAIL", "red")}


@click.command("doctor")
@click.option("--config", "config_file", type=click.Path(path_type=Path),
              help="A cameras file (or a shipped one by name): check its bundle, folders, broker and endpoint.")
@click.option("--bundle", type=click.Path(file_okay=False, path_type=Path),
              help="The bundle to check (default: the demo bundle).")
@click.option("--record", "folders", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="A folder recordings or evidence go to (--record, --events): free space and write access. "
                   "Repeatable.")
@click.option("--mqtt", help="A broker to connect to: mqtt://[USER[:PASS]@]HOST[:PORT] or mqtts://...")
@click.option("--mqtt-password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --mqtt: the password, alone on one line.")
@click.option("--mqtt-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With an mqtts:// --mqtt: the CA certificate.")
@click.option("--pub", default=DEFAULT_ENDPOINT, show_default=True, help="The ZeroMQ endpoint the monitor will bind.")
def doctor_command(config_file: Path | None, bundle: Path | None, folders: tuple[Path, ...], mqtt: str | None,
                   mqtt_password_file: Path | None, mqtt_ca: Path | None, pub: str) -> None:
    """Check this machine for the monitor, one line per check: Python and packages, the CPU and the runtime
    auto picks, the bundle and whether it holds real time here, video codecs, audio, disk, broker, ZeroMQ
    endpoint, clock. Exit 1 when a check fails."""
    from crashwatch.doctor import Setup, run_checks

    logging.getLogger("crashwatch.monitor").setLevel(logging.WARNING)  # opening the bundle says what it opened

    if config_file is not None:
        if bundle or folders or mqtt or mqtt_password_file or mqtt_ca or pub != DEFAULT_ENDPOINT:
            raise click.UsageError("--config gives the bundle, folders, broker and endpoint: not beside it")
        from crashwatch.monitor.serving.cameras import load_cameras

        config = load_cameras(config_file)
        serve = config.serve
        setup = Setup(serve.bundle, [f for c in config.cameras for f in (c.record_dir, c.events_dir) if f],
                      serve.mqtt_url, serve.mqtt_password_file, serve.mqtt_ca, serve.pub)
    else:
        setup = Setup(bundle, list(folders), mqtt, mqtt_password_file, mqtt_ca, pub)
    failed = 0
    for finding in run_checks(setup):
        mark, colour = MARKS[finding.level]
        click.echo(f"{click.style(f'{mark:>4}', fg=colour)}  {finding.check:<10} {finding.text}")
        failed += finding.level == "fail"
    if failed:
        raise click.ClickException(f"{failed} check(s) failed: see the FAIL lines")
    click.echo("all checks passed (see any WARN lines)")


COMMANDS = (doctor_command,)
