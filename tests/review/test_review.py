"""Reviewing events: verdicts kept with their history through a restart, refused when malformed with the rule
said, the events listed newest first and filtered, and the reviewed ones exported as a dataset that reads back,
their evidence verifying where it was copied."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from crashwatch.bench.process import free_port
from crashwatch.cli import main
from crashwatch.contract.dataset import read_split
from crashwatch.review.listing import EventQuery, query
from crashwatch.review.verdicts import Decision, ReviewError, VerdictStore
from tests.support.media import write_video
from tests.support.shared import REPO


def _monitor(bundle: Path, clip: Path, camera: str, *options: str) -> None:
    run = subprocess.run([sys.executable, "-m", "crashwatch", "monitor", "--bundle", str(bundle), "--source", str(clip),
                          "--camera", camera, "--pub", f"tcp://127.0.0.1:{free_port()}", "--replay", "fast",
                          "--alert-on", "0", "--alert-off", "0", *options], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr


@pytest.fixture(scope="module")
def events(tiny_bundle, tmp_path_factory) -> Path:
    """An events folder as monitors leave it: an event folder of --events' own ring (signed), a held clip
    (--events-hold memory), and an event folder of a --record ring (signed)."""
    root = tmp_path_factory.mktemp("review")
    keys = root / "keys"
    assert CliRunner().invoke(main, ["keys", "--signing", "--out", str(keys), "--name", "cab"]).exit_code == 0
    clip = write_video(root / "drive.mp4", 40)
    folder = root / "events"
    _monitor(tiny_bundle, clip, "front", "--events", str(folder), "--sign-key", str(keys / "cab.sign"))
    time.sleep(1.1)  # a later start: newest first has an order to keep
    _monitor(tiny_bundle, clip, "rear", "--events", str(folder), "--events-hold", "memory")
    time.sleep(1.1)
    _monitor(tiny_bundle, clip, "side", "--record", str(root / "rec"), "--events", str(folder), "--record-segment", "1",
             "--sign-key", str(keys / "cab.sign"))
    return folder


def _names(folder: Path, **filters) -> list[str]:
    return [e["name"] for e in query(folder, VerdictStore(folder), EventQuery(**filters))["events"]]


def test_verdicts_keep_every_reviewer_the_last_standing_and_survive_a_reopen(tmp_path):
    store = VerdictStore(tmp_path)
    store.give("a.mp4", "dismissed", "ana", reason="shadow")
    store.give("a.mp4", Decision.CONFIRMED, "bob", mark_s=2.5)
    store.close()
    again = VerdictStore(tmp_path)
    assert [(v.reviewer, v.decision, v.reason, v.mark_s) for v in again.history("a.mp4")] == [
        ("ana", Decision.DISMISSED, "shadow", None), ("bob", Decision.CONFIRMED, None, 2.5)]
    assert again.current()["a.mp4"].reviewer == "bob" and again.history("b.mp4") == []


@pytest.mark.parametrize("decision, fields, message", [
    ("dismissed", {"reason": "shade"}, "dismissing needs a reason among shadow, tunnel"),
    ("dismissed", {}, "dismissing needs a reason"),
    ("confirmed", {"reason": "shadow"}, "a reason goes with dismissed, not confirmed"),
    ("dismissed", {"reason": "shadow", "mark_s": 1.0}, "a mark .* goes with confirmed"),
    ("confirmed", {"mark_s": -1.0}, "a mark .* goes with confirmed"),
    ("maybe", {}, "'maybe': a verdict is one of confirmed, dismissed, needs_review"),
])
def test_a_malformed_verdict_is_refused_with_the_rule(tmp_path, decision, fields, message):
    store = VerdictStore(tmp_path)
    with pytest.raises(ReviewError, match=message):
        store.give("a.mp4", decision, "ana", **fields)
    assert store.history("a.mp4") == []
    with pytest.raises(ReviewError, match="names its reviewer"):
        store.give("a.mp4", "needs_review", " ")


def test_an_operator_adds_a_dismissal_reason(tmp_path):
    result = CliRunner().invoke(main, ["review", "reasons", str(tmp_path), "--add", "low sun"])
    assert result.exit_code == 0 and result.output.splitlines()[-1] == "low sun"
    assert VerdictStore(tmp_path).give("x.mp4", "dismissed", "ana", reason="low sun").reason == "low sun"


def test_events_are_listed_newest_first_filtered_and_paged(events):
    names = _names(events)
    assert len(names) == 3 and names[0].startswith("side-") and names[-1].startswith("front-")
    assert _names(events, camera="rear") == [n for n in names if n.startswith("rear-")]
    assert _names(events, page=2, per_page=2) == names[2:]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert _names(events, since=today) == names and _names(events, until="2020-01-01") == []
    with pytest.raises(ReviewError, match="a day is written YYYY-MM-DD"):
        _names(events, since="yesterday")


def test_the_command_line_reviews_and_exports_a_dataset_whose_evidence_still_verifies(events, tmp_path):
    runner = CliRunner()
    front, rear, side = (_names(events, camera=c)[0] for c in ("front", "rear", "side"))
    for name, *verdict in ((front, "confirmed", "--at", "1.5", "--by", "ana"),
                           (rear, "dismissed", "--reason", "wipers", "--by", "bob"), (side, "needs_review", "--by", "bob")):
        assert runner.invoke(main, ["review", "set", str(events), name, *verdict]).exit_code == 0
    unknown = runner.invoke(main, ["review", "set", str(events), "nothing.mp4", "confirmed"])
    assert unknown.exit_code == 1 and "nothing.mp4: not in" in unknown.output
    listed = runner.invoke(main, ["review", "list", str(events), "--verdict", "dismissed"])
    assert f"{rear}  rear" in listed.output and "dismissed (wipers) by bob" in listed.output and front not in listed.output
    assert "ana: confirmed at 1.50 s" in runner.invoke(main, ["review", "history", str(events), front]).output
    assert ", 3 event(s)" in runner.invoke(main, ["review", "list", str(events), "--level", "imminent"]).output
    assert ", 0 event(s)" in runner.invoke(main, ["review", "list", str(events), "--level", "caution"]).output

    out = tmp_path / "data"
    exported = runner.invoke(main, ["review", "export", str(events), "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    assert "1 confirmed, 1 dismissed; left out: 1 needs review" in exported.output
    clips = {c.meta["camera"]: c for c in read_split(out, "train")}
    assert clips["front"].label == 1 and clips["front"].event_time == 1.5 and clips["front"].meta["reviewer"] == "ana"
    assert clips["rear"].label == 0 and clips["rear"].meta["reason"] == "wipers" and clips["rear"].event_time is None
    # The signed evidence went along untouched: it verifies where it was copied.
    checked = runner.invoke(main, ["verify", str(out / "evidence" / front)])
    assert checked.exit_code == 0 and "intact" in checked.output, checked.output
    again = runner.invoke(main, ["review", "export", str(events), "--out", str(out)])
    assert again.exit_code == 1 and "train.jsonl: exists already" in again.output


def test_a_recorded_event_exports_as_its_segments_one_after_the_other(events, tmp_path):
    side = _names(events, camera="side")[0]
    VerdictStore(events).give(side, "confirmed", "cy", mark_s=0.5)
    from crashwatch.review.events import EventClip
    from crashwatch.review.export import export_reviewed

    result = export_reviewed(events, tmp_path / "data", split="val")
    assert result["confirmed"] >= 1
    (clip,) = [c for c in read_split(tmp_path / "data", "val") if c.meta["event"] == side]
    segments = EventClip.find(events, side).videos()
    from crashwatch.contract.video import probe_clip

    assert len(segments) >= 2 and clip.info.num_frames == sum(probe_clip(s).num_frames for s in segments)
    assert (tmp_path / "data" / "evidence" / side / "event.json").is_file()
    assert json.loads((tmp_path / "data" / "evidence" / side / "event.json").read_text())["camera"] == "side"


def test_a_verdict_set_on_the_command_line_reaches_mqtt_retained_or_says_it_did_not(events, tmp_path):
    from tests.support.mqtt_broker import Broker, Subscriber, need_mosquitto

    need_mosquitto()
    rear = _names(events, camera="rear")[0]
    broker = Broker(tmp_path / "broker").start()
    try:
        result = CliRunner().invoke(main, ["review", "set", str(events), rear, "dismissed", "--reason", "glare", "--by",
                                           "eve", "--mqtt", f"mqtt://127.0.0.1:{broker.port}"])
        assert result.exit_code == 0, result.output
        late = Subscriber(broker, "crashwatch/+/review/#")  # after the fact: the retained verdict
        (message,) = late.wait_for(lambda ms: bool(ms), 5, "the retained verdict")
        assert message.topic == f"crashwatch/rear/review/{rear}" and message.retain
        assert (message.payload["decision"], message.payload["reason"], message.payload["reviewer"]) == \
            ("dismissed", "glare", "eve")
        late.close()
    finally:
        broker.stop()
    away = CliRunner().invoke(main, ["review", "set", str(events), rear, "needs_review", "--by", "eve", "--mqtt",
                                     f"mqtt://127.0.0.1:{free_port()}"])
    assert away.exit_code == 1 and "the verdict is kept, but mqtt://127.0.0.1:" in away.output
    assert VerdictStore(events).current()[rear].decision is Decision.NEEDS_REVIEW


def test_each_camera_gets_a_threshold_from_its_own_verdicts(events, tmp_path):
    """Two hours of driving: one false alert bounds the rate above 2 an hour at 95 %, none below it; so the
    camera whose alert was dismissed is proposed a threshold just above that alert's peak, the camera whose
    alert was confirmed keeps the one it fired at, and half an hour is too little to say."""
    folder = tmp_path / "events"
    shutil.copytree(events, folder, ignore=shutil.ignore_patterns("review.sqlite*"))
    store = VerdictStore(folder)
    front, rear = (_names(folder, camera=c)[0] for c in ("front", "rear"))
    store.give(front, "dismissed", "ana", reason="shadow")
    store.give(rear, "confirmed", "ana", mark_s=1.0)
    peak = {e["camera"]: e["peak"] for e in query(folder, store, EventQuery())["events"]}
    out = CliRunner().invoke(main, ["review", "calibrate", str(folder), "--hours", "2", "--hours", "side=0.5"])
    assert out.exit_code == 0, out.output
    proposed = math.floor(peak["front"] / 0.005 + 1) * 0.005
    assert "front: 0 confirmed, 1 dismissed, 0 unreviewed in 2 h: 0.50 false alerts/h (0.01 to 2.79 at 95%)" in out.output
    assert f"alert: {{on: {round(proposed, 4):g}}}  (0 false alert(s) left, at most 1.50/h at 95%)" in out.output
    assert "rear: 1 confirmed, 0 dismissed" in out.output and "alert: {on: 0}  (0 false alert(s) left" in out.output
    assert "side: 0 confirmed, 0 dismissed, 1 unreviewed in 0.5 h" in out.output
    assert "too few hours: even no false alert bounds the rate only below 5.99/h" in out.output
    missing = CliRunner().invoke(main, ["review", "calibrate", str(folder), "--hours", "front=2"])
    assert missing.exit_code == 1 and "camera rear: how many hours did it drive?" in missing.output
