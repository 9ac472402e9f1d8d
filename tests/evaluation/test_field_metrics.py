"""The field's metrics (DAD/CCD protocol, Nexar score, recall at a false-alarm budget), each against a case worked
by hand in the comments, and `crashwatch metrics` reading them back from a replay folder."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from crashwatch.evaluation.anticipation import anticipation_metrics
from crashwatch.evaluation.curve import Trace
from crashwatch.evaluation.false_alarms import at_false_alarm_budget
from crashwatch.evaluation.field import field_metrics, write_metrics
from crashwatch.evaluation.nexar_score import average_precision, nexar_score
from crashwatch.evaluation.traces import TracesError, read_replay, trace_path, write_trace
from tests.support.shared import REPO


def trace(name, label, event, duration, times, probabilities) -> Trace:
    return Trace(name, label, event, duration, list(times), list(probabilities))


SECONDS = [0.0, 1.0, 2.0, 3.0, 4.0]
DAD_LIKE = [
    trace("a.mp4", 1, 4.0, 5.0, SECONDS, [0.1, 0.2, 0.6, 0.9, 0.95]),
    trace("b.mp4", 1, 4.0, 5.0, SECONDS, [0.1, 0.1, 0.1, 0.5, 0.99]),
    trace("n.mp4", 0, None, 5.0, SECONDS, [0.1, 0.3, 0.7, 0.3, 0.2]),
    trace("untimed.mp4", 1, None, 5.0, SECONDS, [0.9] * 5),  # a crash clip without its time: left out
]


def test_the_dad_ccd_protocol_on_a_case_worked_by_hand():
    # Strides before the accident at 4 s: a [.1 .2 .6 .9] and b [.1 .1 .1 .5] at 0..3 s; the normal clip peaks
    # at .7. The sweep starts at the lowest probability, .1. Per threshold range: the first stride reaching it
    # (a, b), true positives, false positives (the normal clip, while th <= .7), precision, recall, relative time
    # 1 - mean(t0 / 4) and seconds mean(4 - t0):
    #   th = .1        a 0, b 0   TP 2 FP 1  P 2/3  R 1   rel 1      s 4
    #   (.1, .2]       a 1, b 3   TP 2 FP 1  P 2/3  R 1   rel .5     s 2
    #   (.2, .5]       a 2, b 3   TP 2 FP 1  P 2/3  R 1   rel .375   s 1.5
    #   (.5, .6]       a 2        TP 1 FP 1  P 1/2  R .5  rel .5     s 2
    #   (.6, .7]       a 3        TP 1 FP 1  P 1/2  R .5  rel .25    s 1
    #   (.7, .9]       a 3        TP 1 FP 0  P 1    R .5  rel .25    s 1
    #   above .9       none: no point
    # By recall, the highest of each: R .5 -> P 1, rel .5, s 2; R 1 -> P 2/3, rel 1, s 4.
    # AP = 1 x .5 + (1 + 2/3) x (1 - .5) / 2 = 11/12; mTTA = (2 + 4) / 2 = 3 s, published (.5 + 1) / 2 x 5 s
    # (the median clip length) = 3.75 s; recall nearest .8 is 1: TTA@R80 4 s, published 1 x 5 = 5 s; P@R80 2/3.
    m = anticipation_metrics(DAD_LIKE)
    assert m["ap"] == pytest.approx(11 / 12)
    assert m["mtta_s"] == pytest.approx(3.0) and m["mtta_published_s"] == pytest.approx(3.75)
    assert m["tta_r80_s"] == pytest.approx(4.0) and m["tta_r80_published_s"] == pytest.approx(5.0)
    assert m["precision_r80"] == pytest.approx(2 / 3)
    assert (m["crash_clips"], m["normal_clips"], m["crash_clips_without_event_time"]) == (2, 1, 1)
    assert m["clip_seconds"] == 5.0
    # The published times scale with the clip length given (UString's total_seconds).
    assert anticipation_metrics(DAD_LIKE, clip_seconds=10.0)["mtta_published_s"] == pytest.approx(7.5)
    # No crash clip with a time: nothing to compute, said as None rather than a number.
    assert anticipation_metrics(DAD_LIKE[2:])["ap"] is None


def test_the_nexar_score_on_a_case_worked_by_hand():
    half = [0.5 * k for k in range(7)]
    traces = [
        trace("a.mp4", 1, 3.0, 3.5, half, [0.1, 0.2, 0.3, 0.8, 0.6, 0.9, 0.95]),
        trace("b.mp4", 1, 2.0, 2.5, half[:5], [0.2, 0.4, 0.7, 0.3, 0.9]),
        trace("c.mp4", 1, 0.7, 1.0, half[:2], [0.5, 0.6]),
        trace("n1.mp4", 0, None, 3.5, half, [0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.5]),
        trace("n2.mp4", 0, None, 3.5, half, [0.99, 0.1, 0.1, 0.1, 0.1, 0.1, 0.35]),
    ]
    # Crash clips scored at their last stride at or before event - h; normal clips at their last stride (.5, .35).
    #   h = .5:  a (t 2.5) .9, b (t 1.5) .3, c (t 0) .5. Descending: .9 [1] P 1 R 1/3; .5 [0, 1] P 2/3 R 2/3;
    #            .35 [0] P 1/2 R 2/3; .3 [1] P 3/5 R 1. AP = 1/3 x 1 + 1/3 x 2/3 + 0 + 1/3 x 3/5 = 34/45
    #   h = 1:   a (t 2) .6, b (t 1) .7; c has no stride by -0.3 s: left out. .7 [1] .6 [1] .5 .35: AP = 1
    #   h = 1.5: a (t 1.5) .8, b (t .5) .4. .8 [1] P 1 R 1/2; .5 [0]; .4 [1] P 2/3 R 1: AP = 1/2 + 1/2 x 2/3 = 5/6
    # Score: (34/45 + 1 + 5/6) / 3.
    s = nexar_score(traces)
    assert s["ap_at_0.5s"] == pytest.approx(34 / 45)
    assert s["ap_at_1s"] == pytest.approx(1.0) and s["crash_clips_left_out_at_1s"] == 1
    assert s["ap_at_1.5s"] == pytest.approx(5 / 6) and s["crash_clips_at_1.5s"] == 2
    assert s["score"] == pytest.approx((34 / 45 + 1 + 5 / 6) / 3) and s["normal_clips"] == 2


def test_average_precision_is_scikit_learns():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.integers(0, 2, 40)
        labels[0] = 1
        scores = np.round(rng.random(40), 1)  # rounded: ties, as strides' probabilities have
        assert average_precision(labels, scores) == pytest.approx(average_precision_score(labels, scores))


FALSE_ALARM_CASE = [
    # Half an hour of normal driving: rising to .6 at 600 s and 1790 s.
    trace("n.mp4", 0, None, 1800.0, [0, 600, 1200, 1790], [0.2, 0.6, 0.2, 0.6]),
    # Crash at 100 s: normal driving until 95 s (the 5 s warning window), then .7 at 96 s, .9 at 99 s.
    trace("x.mp4", 1, 100.0, 105.0, [0, 50, 90, 96, 99], [0.5, 0.1, 0.3, 0.7, 0.9]),
    # Crash at 50 s: normal until 45 s; .4 at 46 s, .2 at 48 s, .8 at 49.5 s.
    trace("y.mp4", 1, 50.0, 60.0, [44, 46, 48, 49.5], [0.05, 0.4, 0.2, 0.8]),
]


def test_recall_at_a_false_alarm_budget_on_a_case_worked_by_hand():
    # Normal driving: 1800 + 95 + 45 = 1940 s. False alarms (rises to the threshold in it) per threshold range:
    #   [0, .05]  n 1 (at 0 s), x 1 (at 0 s), y 1 (at 44 s)  3  5.57/h
    #   (.05, .1] n 1, x 1                                    2  3.71/h
    #   (.1, .3]  n 1 or 2, x 2 (0 s, 90 s)                   3-4
    #   (.3, .5]  n 2, x 1                                    3  5.57/h
    #   (.5, .6]  n 2                                         2  3.71/h
    #   above .6  none                                        0
    # Warned: x while th <= .9 (first at 96 s while th <= .7, else 99 s); y while th <= .8 (46 s while th <= .4,
    # else 49.5 s).
    # Budget 4/h: .051 is the lowest threshold within it warning both: 4 s and 4 s ahead, 2 false alarms.
    hours = 1940 / 3600
    four = at_false_alarm_budget(FALSE_ALARM_CASE, 4.0, warning_window=5.0)
    assert four["threshold"] == pytest.approx(0.051) and four["recall"] == 1.0 and four["warned"] == 2
    assert four["mean_time_to_accident_s"] == pytest.approx(4.0) and four["false_alarms"] == 2
    assert four["false_alarms_per_hour"] == pytest.approx(2 / hours) and four["normal_hours"] == pytest.approx(hours)
    # Budget 3/h: only thresholds above .6 are within it; .601 warns both: x at 96 s (4 s), y at 49.5 s (.5 s).
    three = at_false_alarm_budget(FALSE_ALARM_CASE, 3.0, warning_window=5.0)
    assert three["threshold"] == pytest.approx(0.601) and three["recall"] == 1.0 and three["false_alarms"] == 0
    assert three["mean_time_to_accident_s"] == pytest.approx(2.25)
    assert three["median_time_to_accident_s"] == pytest.approx(2.25)
    # A crash clip whose warning window covers it all holds no normal driving: no rate, and the result says why.
    none = at_false_alarm_budget([trace("x.mp4", 1, 3.0, 5.0, [0.0, 3.5], [0.2, 0.9])], 2.0, warning_window=5.0)
    assert none["threshold"] is None and "no normal driving" in none["withheld"]


def test_field_metrics_beside_the_projects_alerts_and_crashwatch_metrics_reads_them_back(tmp_path):
    metrics = field_metrics(FALSE_ALARM_CASE, threshold=0.65, budget=4.0, warning_window=5.0)
    # The project's alerts at .65 (off at .55, 1 s below to end): none in the normal clip (.6 < .65); x alerts
    # at 96 s, y at 49.5 s: both warned, 4 s and .5 s ahead; no false alert.
    own = metrics["project_alerts"]["at_threshold"]
    assert own["threshold"] == 0.65 and own["alerted_before_collision"] == 2 and own["false_alerts"] == 0
    assert own["median_time_to_accident_s"] == pytest.approx(2.25)
    budget = dict(metrics["false_alarm_budget"])
    assert budget.pop("min_normal_hours") == 1.0 and budget == at_false_alarm_budget(FALSE_ALARM_CASE, 4.0, 5.0)

    # A replay folder as replay-eval writes it, read back by the command.
    replay = tmp_path / "replay"
    (replay / "traces").mkdir(parents=True)
    clips = [{"file_name": t.name, "label": t.label, "event_time": t.event_time, "duration_s": t.duration}
             for t in FALSE_ALARM_CASE]
    (replay / "replay_eval.json").write_text(json.dumps({"summary": {"threshold": 0.65, "warning_window_s": 5.0},
                                                         "clips": clips}))
    for t in FALSE_ALARM_CASE:
        write_trace(trace_path(replay, t.name), t.times, t.probabilities)
    result = subprocess.run([sys.executable, "-m", "crashwatch", "metrics", str(replay), "--false-alerts-per-hour",
                             "4"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads((replay / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert "recall 1.000 at threshold 0.051" in result.stdout and "Nexar score" in result.stdout
    # Minutes of normal driving pick a threshold only indicatively, as replay-eval says; no unit after n/a.
    assert "indicative only" in result.stdout and "under the 60 min a false-alarm rate needs" in result.stdout
    assert "n/a s" not in result.stdout
    with (replay / "metrics.csv").open() as handle:
        rows = {row["metric"]: row["value"] for row in csv.DictReader(handle)}
    assert float(rows["false_alarm_budget.threshold"]) == pytest.approx(0.051)
    assert rows["project_alerts.at_threshold.false_alerts"] == "0" and rows["nexar.ap_at_1s"] != ""

    # A damaged folder: the file and line named, no traceback.
    (trace_path(replay, "y.mp4")).write_text("t,probability\n44,0.05\n46,lots\n")
    with pytest.raises(TracesError, match=r"y.csv:3: t and probability must be numbers, got '46', 'lots'"):
        read_replay(replay)
    (replay / "replay_eval.json").write_text(json.dumps({"summary": {"threshold": 0.65}, "clips": clips}))
    with pytest.raises(TracesError, match=r"replay_eval.json: not a replay-eval report \(KeyError: 'warning_window_s'"):
        read_replay(replay)
    bad = subprocess.run([sys.executable, "-m", "crashwatch", "metrics", str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and f"{tmp_path / 'replay_eval.json'}: no such file" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_written_metrics_flatten_into_one_row_per_figure(tmp_path):
    write_metrics(tmp_path, {"dad_ccd": {"ap": 0.5, "mtta_s": None}, "warning_window_s": 5.0})
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["metric,value", "dad_ccd.ap,0.5",
                                                                   "dad_ccd.mtta_s,", "warning_window_s,5.0"]
