"""``crashwatch review``: list an events folder's events with their verdicts, give one, see an event's history,
extend the dismissal reasons, and export the reviewed events as a dataset (docs/review.md)."""

from __future__ import annotations

import datetime
import getpass
import json
from pathlib import Path

import click

from crashwatch.cli.options import existing_dir
from crashwatch.contract.dataset import SPLITS
from crashwatch.contract.prompt import DEFAULT_QUESTION

VERDICTS = ("confirmed", "dismissed", "needs_review")


def mqtt_options(command):  # type: ignore[no-untyped-def]
    """Where verdicts are published (``PREFIX/CAMERA/review/EVENT``, retained): shared with the dashboard."""
    for option in reversed((
        click.option("--mqtt", "mqtt_url", metavar="URL", help="Publish verdicts to this MQTT broker, "
                     "mqtt[s]://[USER[:PASS]@]HOST[:PORT], on PREFIX/CAMERA/review/EVENT (retained)."),
        click.option("--mqtt-prefix", default="crashwatch", show_default=True, help="With --mqtt: the topic prefix."),
        click.option("--mqtt-password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="With --mqtt: a file whose first line is the password."),
        click.option("--mqtt-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="With an mqtts:// --mqtt: the CA to check the broker against."),
    )):
        command = option(command)
    return command


def mqtt_target(url: str | None, password_file: Path | None, ca: Path | None):  # type: ignore[no-untyped-def]
    """The broker of --mqtt (None without it); usage errors for options given without it."""
    from crashwatch.monitor.transports.mqtt_target import MqttTarget

    if url is None:
        if password_file is not None or ca is not None:
            raise click.UsageError("--mqtt-password-file and --mqtt-ca go with --mqtt")
        return None
    return MqttTarget.parse(url, password_file, ca)


@click.group("review")
def review_group() -> None:
    """Review alerts: every event gets a verdict (confirmed, dismissed with a reason, or needs review), kept
    with who gave it and when in EVENTS/review.sqlite; reviewed events export as training data."""


def _verdict(v: dict) -> str:
    """A verdict (``Verdict.to_json``) in words: the decision, its reason or its mark."""
    return v["decision"] + (f" ({v['reason']})" if v["reason"] else "") + \
        (f" at {v['mark_s']:.2f} s" if v["mark_s"] is not None else "")


def _clock(wall: float) -> str:
    return datetime.datetime.fromtimestamp(wall, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@review_group.command("list")
@click.argument("events_dir", metavar="EVENTS", type=existing_dir)
@click.option("--camera", help="Only this camera's events.")
@click.option("--verdict", type=click.Choice([*VERDICTS, "unreviewed"]), help="Only events standing at this verdict.")
@click.option("--since", metavar="YYYY-MM-DD", help="Only events from this day on (UTC).")
@click.option("--until", metavar="YYYY-MM-DD", help="Only events up to this day, included (UTC).")
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True, help="Which page, newest first.")
@click.option("--per-page", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="The page as JSON, as the dashboard's /api/events gives it.")
def list_command(events_dir: Path, camera: str | None, verdict: str | None, since: str | None, until: str | None,
                 page: int, per_page: int, as_json: bool) -> None:
    """The events of EVENTS (a monitor's --events folder), newest first, each with its standing verdict."""
    from crashwatch.review.listing import EventQuery, query
    from crashwatch.review.verdicts import VerdictStore

    store = VerdictStore(events_dir)
    result = query(events_dir, store, EventQuery(camera, verdict, None, since, until, page, per_page))
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    for e in result["events"]:
        if "error" in e:
            click.echo(f"{e['name']}: {e['error']}")
            continue
        v = e["verdict"]
        said = "unreviewed" if v is None else f"{_verdict(v)} by {v['reviewer']}"
        click.echo(f"{e['name']}  {e['camera']}  {_clock(e['started_at'])}  peak {e['peak']:.3f}  {e['state']}  {said}")
    click.echo(f"page {result['page']} of {result['pages']}, {result['total']} event(s)")


@review_group.command("set")
@click.argument("events_dir", metavar="EVENTS", type=existing_dir)
@click.argument("event", metavar="EVENT")
@click.argument("verdict", type=click.Choice(VERDICTS))
@click.option("--reason", help="With dismissed: why (one of the reasons list; see `crashwatch review reasons`).")
@click.option("--at", "mark_s", type=click.FloatRange(min=0), help="With confirmed: seconds into the event's video "
              "of the impact or closest approach (the export's event_time).")
@click.option("--by", "reviewer", default=getpass.getuser, show_default="your user name", help="Who gives it.")
@mqtt_options
def set_command(events_dir: Path, event: str, verdict: str, reason: str | None, mark_s: float | None,
                reviewer: str, mqtt_url: str | None, mqtt_prefix: str, mqtt_password_file: Path | None,
                mqtt_ca: Path | None) -> None:
    """Give EVENT (its name, as `review list` shows it) a verdict; the history keeps every one."""
    from crashwatch.review.events import EventClip
    from crashwatch.review.feed import ReviewFeed
    from crashwatch.review.verdicts import VerdictStore

    target = mqtt_target(mqtt_url, mqtt_password_file, mqtt_ca)
    clip = EventClip.find(events_dir, event)
    store = VerdictStore(events_dir)
    given = store.give(event, verdict, reviewer, reason, mark_s)
    click.echo(f"{event}: {given.decision.value} by {given.reviewer} at {_clock(given.at)}")
    if target is not None:
        feed = ReviewFeed(target, mqtt_prefix)
        try:
            if not feed.publish_and_wait(clip.summary()["camera"], given, len(store.history(event))):
                raise click.ClickException(f"the verdict is kept, but {target.display} did not acknowledge it in "
                                           "time; a dashboard with --mqtt publishes every standing verdict when it "
                                           "connects")
        finally:
            feed.close()


@review_group.command("history")
@click.argument("events_dir", metavar="EVENTS", type=existing_dir)
@click.argument("event", metavar="EVENT")
def history_command(events_dir: Path, event: str) -> None:
    """Every verdict EVENT was given, oldest first; the last one stands."""
    from crashwatch.review.verdicts import VerdictStore

    verdicts = VerdictStore(events_dir).history(event)
    if not verdicts:
        click.echo(f"{event}: no verdict yet")
    for v in verdicts:
        click.echo(f"{_clock(v.at)}  {v.reviewer}: {_verdict(v.to_json())}")


@review_group.command("reasons")
@click.argument("events_dir", metavar="EVENTS", type=existing_dir)
@click.option("--add", "added", multiple=True, metavar="NAME", help="A dismissal reason of your own (repeatable).")
def reasons_command(events_dir: Path, added: tuple[str, ...]) -> None:
    """The reasons a dismissal may give (add your own with --add)."""
    from crashwatch.review.verdicts import VerdictStore

    store = VerdictStore(events_dir)
    for name in added:
        store.add_reason(name)
    click.echo("\n".join(store.reasons()))


@review_group.command("export")
@click.argument("events_dir", metavar="EVENTS", type=existing_dir)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The dataset folder to write (research layout, docs/data.md).")
@click.option("--split", default="train", show_default=True, type=click.Choice(SPLITS))
@click.option("--question", default=DEFAULT_QUESTION, show_default=True, help="The question each line asks.")
def export_command(events_dir: Path, out_dir: Path, split: str, question: str) -> None:
    """Write the confirmed (positives, event_time at the reviewer's mark) and dismissed (negatives, the reason
    in meta) events as a dataset, their evidence copied untouched into OUT/evidence/ with its proof."""
    from crashwatch.review.export import export_reviewed

    result = export_reviewed(events_dir, out_dir, split, question)
    left = ", ".join(f"{n} {why}" for why, n in result["left_out"].items()) or "none"
    click.echo(f"wrote {result['jsonl']}: {result['confirmed']} confirmed, {result['dismissed']} dismissed; "
               f"left out: {left}")


COMMANDS = (review_group,)
