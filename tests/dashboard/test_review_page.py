"""The review page and its API on a dashboard started after the events were made (as after a restart): the
events listed from disk, a verdict given with the keyboard in headless Chromium, heard by the API, and a
malformed or forged one refused."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

import pytest

from tests.dashboard.test_dashboard import DashboardProcess, _wait, chromium  # noqa: F401 (a fixture)
from tests.review.test_review import events  # noqa: F401 (a fixture)
from tests.support.mqtt_broker import Broker, Subscriber, need_mosquitto
from tests.support.timing import within


def _post(dashboard: DashboardProcess, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", dashboard.port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.timed
def test_a_reviewer_lists_the_events_and_confirms_one_with_the_keyboard(chromium, events, tmp_path):  # noqa: F811
    need_mosquitto()
    broker = Broker(tmp_path / "broker").start()
    fleet = Subscriber(broker, "crashwatch/+/review/#")
    dashboard = DashboardProcess(tmp_path / "dashboard.log", "--events", str(events), "--mqtt",
                                 f"mqtt://127.0.0.1:{broker.port}")
    try:
        status, _, body = dashboard.get("/api/events?per_page=2")
        listed = json.loads(body)
        assert status == 200 and listed["total"] == 3 and listed["pages"] == 2 and "wipers" in listed["reasons"]
        newest = listed["events"][0]["name"]

        chromium.get(dashboard.url + "/review")
        _wait(lambda: len(chromium.find_elements("css selector", "#events li")) == 3, 10, "the events listed")
        chromium.execute_script("localStorage.setItem('crashwatch.reviewer', 'dee');")
        chromium.refresh()
        _wait(lambda: len(chromium.find_elements("css selector", "#events li")) == 3, 10, "the events listed again")
        body_el = chromium.find_element("tag name", "body")
        body_el.send_keys("j")
        _wait(lambda: chromium.execute_script("const v = document.querySelector('#selected video');"
                                              "return v && v.readyState >= 3;"), 60, "the chosen event's video")
        # Its risk chart: every stride from the window that raised the alert to the end of its post-roll.
        risks = listed["events"][0]["risks"]
        assert len(risks) >= 3 and risks[0][0] <= listed["events"][0]["start"] <= risks[-1][0]
        assert chromium.execute_script("const c = document.querySelector('#selected canvas.chart');"
                                       "return c && c.width > 0 ? Number(c.dataset.points) : null;") == len(risks)
        body_el.send_keys(" ")  # play it: the confirmation marks where it stands
        _wait(lambda: chromium.execute_script("return document.querySelector('#selected video').currentTime > 0.3;"),
              10, "the video playing")
        body_el.send_keys(" ")
        pressed = time.time()
        body_el.send_keys("c")
        heard = fleet.wait_for(lambda ms: any(m.payload.get("decision") == "confirmed" for m in ms), 5,
                               "the verdict over MQTT")
        (over_mqtt,) = [m for m in heard if m.payload.get("decision") == "confirmed"]
        assert over_mqtt.topic.endswith(f"/review/{newest}") and over_mqtt.payload["reviewer"] == "dee"
        assert over_mqtt.at - pressed < within(1.0), "the verdict reached MQTT more than 1 s after the key"
        shown = _wait(lambda: chromium.execute_script(
            f"const li = document.querySelector('#events li[data-name=\"{newest}\"]');"
            "return li && li.dataset.verdict === 'confirmed' ? li.textContent : null;"), 5, "the verdict in the list")
        assert "confirmed at " in shown and "by dee" in shown
        status, _, body = dashboard.get(f"/api/events/{newest}/review")
        history = json.loads(body)
        assert status == 200 and history[-1]["decision"] == "confirmed" and history[-1]["reviewer"] == "dee"
        assert history[-1]["mark_s"] > 0.3  # where the video stood when the key was pressed

        # A form post from another site cannot give one, nor a verdict against the rules, nor one of no event.
        forged = _post(dashboard, f"/api/events/{newest}/review", b"decision=dismissed&reviewer=x",
                       "application/x-www-form-urlencoded")
        assert forged[0] == 400 and b"posted as JSON" in forged[1]
        wrong = _post(dashboard, f"/api/events/{newest}/review",
                      json.dumps({"decision": "dismissed", "reviewer": "x", "reason": "aliens"}).encode(),
                      "application/json")
        assert wrong[0] == 400 and b"dismissing needs a reason among" in wrong[1]
        missing = _post(dashboard, "/api/events/nothing.mp4/review",
                        json.dumps({"decision": "confirmed", "reviewer": "x"}).encode(), "application/json")
        assert missing[0] == 404
        assert json.loads(dashboard.get(f"/api/events/{newest}/review")[2]) == history
        # Retained: a system that subscribes later learns the standing verdict at once.
        late = Subscriber(broker, f"crashwatch/+/review/{newest}")
        retained = late.wait_for(lambda ms: bool(ms), 5, "the retained verdict")[0]
        assert retained.retain and retained.payload["decision"] == "confirmed" and retained.payload["verdicts"] >= 1
        late.close()
    finally:
        dashboard.stop()
        fleet.close()
        broker.stop()


@pytest.mark.parametrize("query, message", [("verdict=maybe", b"verdict 'maybe'"), ("since=monday", b"YYYY-MM-DD"),
                                            ("page=x", b"whole numbers")])
def test_a_bad_events_query_is_answered_with_what_is_wrong(events, tmp_path, query, message):  # noqa: F811
    dashboard = DashboardProcess(tmp_path / "dashboard.log", "--events", str(events))
    try:
        status, _, body = dashboard.get(f"/api/events?{query}")
        assert status == 400 and message in body
    finally:
        dashboard.stop()


def test_a_dashboard_without_an_events_folder_says_so(tmp_path: Path):
    dashboard = DashboardProcess(tmp_path / "dashboard.log")
    try:
        status, _, body = dashboard.get("/api/events")
        assert status == 404 and b"start it with --events DIR" in body
    finally:
        dashboard.stop()
