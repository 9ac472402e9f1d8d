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
from crashwatch.evaluation.certainty import CONFIDENCE
from crashwatch.evaluation.scoring import FALSE_ALERT_BUDGET
from crashwatch.learn.fit import FitSettings
from crashwatch.learn.gate import HOLDOUT_SHARE

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
@click.option("--level", type=click.Choice(["imminent", "caution"]), help="Only events at this warning level.")
@click.option("--since", metavar="YYYY-MM-DD", help="Only events from this day on (UTC).")
@click.option("--until", metavar="YYYY-MM-DD", help="Only events up to this day, included (UTC).")
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True, help="Which page, newest first.")
@click.option("--per-page", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="The page as JSON, as the dashboard's /api/events gives it.")
def list_command(events_dir: Path, camera: str | None, verdict: str | None, level: str | None, since: str | None,
                 until: str | None, page: int, per_page: int, as_json: bool) -> None:
    """The events of EVENTS (a monitor's --events folder), newest first, each with its standing verdict."""
    from crashwatch.review.listing import EventQuery, query
    from crashwatch.review.verdicts import VerdictStore

    store = VerdictStore(events_dir)
    result = query(events_dir, store, EventQuery(camera, verdict, level, since, until, page, per_page))
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


class CameraHours(click.ParamType):
    """``H`` (every camera) or ``CAMERA=H``: hours a camera drove."""

    name = "[CAMERA=]HOURS"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        camera, _, hours = str(value).rpartition("=")
        try:
            number = float(hours)
        except ValueError:
            number = -1.0
        if not number > 0 or number == float("inf"):
            self.fail(f"{value!r}: hours are a positive number, as H or CAMERA=H", param, ctx)
        return camera or None, number


@review_group.command("calibrate")
@click.argument("events_dir", metavar="EVENTS", type=existing_dir)
@click.option("--hours", "hours", type=CameraHours(), multiple=True, required=True,
              help="Hours each camera drove over the events' period: H for every camera, or CAMERA=H (repeatable).")
@click.option("--false-alerts-per-hour", "budget", type=click.FloatRange(min=0, min_open=True),
              default=FALSE_ALERT_BUDGET, show_default=True, help="The budget the threshold keeps within, by the "
              "rate's upper confidence bound.")
@click.option("--confidence", type=click.FloatRange(0.5, 0.999), default=CONFIDENCE, show_default=True,
              help="The level of the bounds.")
def calibrate_command(events_dir: Path, hours: tuple[tuple[str | None, float], ...], budget: float,
                      confidence: float) -> None:
    """Each camera's false alerts per hour from its verdicts (dismissed = false), with their exact interval,
    and the lowest threshold that keeps the upper bound within budget without losing a confirmed event: what
    to give that camera's `alert: {on: ...}` in a cameras file (docs/review.md)."""
    from crashwatch.review.calibrate import camera_thresholds

    per_camera = {camera: h for camera, h in hours if camera is not None}
    every = next((h for camera, h in hours if camera is None), None)
    for row in camera_thresholds(events_dir, per_camera, every, budget, confidence):
        low, high = row["interval"]
        click.echo(f"{row['camera']}: {row['confirmed']} confirmed, {row['dismissed']} dismissed, "
                   f"{row['unreviewed']} unreviewed in {row['hours']:g} h: {row['false_alerts_per_hour']:.2f} false "
                   f"alerts/h ({low:.2f} to {high:.2f} at {confidence:.0%}), fired at {row['fired_at']:g}")
        if row["threshold"] is None:
            click.echo(f"  no threshold within {budget:g}/h: {row['why']}")
        else:
            click.echo(f"  alert: {{on: {row['threshold']:g}}}  ({row['false_alerts_left']} false alert(s) left, "
                       f"at most {row['false_alerts_per_hour_bound']:.2f}/h at {confidence:.0%})")


def _gate_line(figures: dict) -> str:
    lead = figures["median_time_to_accident_s"]
    return (f"{figures['alerted_before_collision']}/{figures['crash_clips_with_event_time']} crashes warned, "
            f"median time-to-accident {'-' if lead is None else f'{lead:.2f} s'}, "
            f"{figures['false_alerts']} false alert(s)")


@review_group.command("learn")
@click.argument("verdicts", metavar="VERDICTS", type=existing_dir)
@click.option("--models", "store_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The model store: versions side by side, the one to run named in STORE/CURRENT (give it to "
              "`crashwatch monitor --bundle STORE`).")
@click.option("--bundle", type=existing_dir, help="Make the store from this bundle first (its first version).")
@click.option("--split", default="train", show_default=True, type=click.Choice(SPLITS),
              help="The split of VERDICTS (what `review export` wrote).")
@click.option("--data", "data_dir", type=existing_dir, help="Labelled driving the head must keep getting right, "
              "fitted beside the verdicts: the bundle's calibration data (its manifest's threshold_calibration).")
@click.option("--data-split", default="test", show_default=True, type=click.Choice(SPLITS))
@click.option("--holdout", "holdout_dir", type=existing_dir, help="Driving never fitted on that the gate replays "
              "with the newest dismissed events and every confirmed one.")
@click.option("--holdout-split", default="test", show_default=True, type=click.Choice(SPLITS))
@click.option("--holdout-share", type=click.FloatRange(0, 0.9), default=HOLDOUT_SHARE,
              show_default=True, help="Of the dismissed events, the newest share kept out of the fit for the gate.")
@click.option("--steps", type=click.IntRange(1, 100000), default=FitSettings.steps, show_default=True,
              help="Optimiser steps of the head's fit.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the update's figures here (JSON).")
def learn_command(verdicts: Path, store_dir: Path, bundle: Path | None, split: str, data_dir: Path | None,
                  data_split: str, holdout_dir: Path | None, holdout_split: str, holdout_share: float, steps: int,
                  report_path: Path | None) -> None:
    """Fit a new head on reviewed events (VERDICTS, from `crashwatch review export`), from the store's current
    version, on this machine's CPU (no torch). It is written as a new version and run only when the gate
    passes: on held-out clips no warned crash lost, fewer false alerts, the median time-to-accident at most
    0.1 s shorter. Restart the monitor to run an accepted version; `review rollback` goes back."""
    from crashwatch.learn.versions import ModelStore

    try:
        from crashwatch.learn.update import Learner, LearnOptions, Source
    except ModuleNotFoundError as err:
        raise click.ClickException(f"review learn needs {err.name}, which is not installed: pip install "
                                   "'crashwatch[learn]'") from None

    store = ModelStore.create(store_dir, bundle) if bundle is not None else ModelStore(store_dir)
    options = LearnOptions(Source(verdicts, split), None if data_dir is None else Source(data_dir, data_split),
                           None if holdout_dir is None else Source(holdout_dir, holdout_split), holdout_share,
                           fit=FitSettings(steps=steps))
    report = Learner(store, options).run()
    if report_path is not None:
        report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    gate = report["gate"]
    click.echo(f"{report['version']} fitted from {report['running']} on {report['fit']['windows']} windows "
               f"({report['verdicts']['confirmed']} confirmed, {report['verdicts']['dismissed']} dismissed events) "
               f"in {report['seconds']['total']:.0f} s")
    click.echo(f"gate, {gate['clips']} held-out clips at threshold {gate['threshold']:g}:")
    click.echo(f"  running {report['running']}: {_gate_line(gate['running'])}")
    click.echo(f"  new     {report['version']}: {_gate_line(gate['new'])}")
    if gate["accepted"]:
        click.echo(f"accepted: {store_dir}/CURRENT names {report['version']}; restart the monitor to run it "
                   f"(`crashwatch review rollback {store_dir}` goes back)")
    else:
        click.echo(f"refused: {'; '.join(gate['reasons'])}. {report['running']} stays")


@review_group.command("models")
@click.argument("store_dir", metavar="STORE", type=existing_dir)
def models_command(store_dir: Path) -> None:
    """A model store's versions (the running one marked) and its history."""
    from crashwatch.learn.versions import ModelStore

    store = ModelStore(store_dir)
    current = store.current
    for name in store.names():
        parent = store.lineage(name).get("parent_version")
        click.echo(f"{'*' if name == current else ' '} {name}" + (f"  from {parent}" if parent else "  first"))
    for entry in store.history():
        click.echo(f"{entry['at']}  {entry['action']} {entry['version']}"
                   + (f": {'; '.join(entry['reasons'])}" if entry.get("reasons") else ""))


@review_group.command("rollback")
@click.argument("store_dir", metavar="STORE", type=existing_dir)
@click.option("--to", "to", metavar="VERSION", help="Run this version (default: the current one's parent).")
def rollback_command(store_dir: Path, to: str | None) -> None:
    """Run the previous version again (or --to VERSION); restart the monitor to run it."""
    from crashwatch.learn.versions import ModelStore

    before, after = ModelStore(store_dir).rollback(to)
    click.echo(f"{store_dir}/CURRENT names {after} (was {before}); restart the monitor to run it")


COMMANDS = (review_group,)
