"""The scenario generator: its ground truth is the geometry's, and its files are the trainer's layout."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from crashwatch.contract.dataset import read_split
from crashwatch.contract.sidecars import Box, Boxes, BoxesError, BoxFrame, boxes_path, read_boxes
from crashwatch.contract.video import probe_clip
from crashwatch.datasets.synth import generate as synth
from crashwatch.datasets.synth.catalog import COLLISIONS, KINDS, NEAR_MISSES, build
from crashwatch.datasets.synth.drive import HANDOVER_CLEARANCE, Drive, Segment
from crashwatch.datasets.synth.generate import ALARMING, FPS, ORDINARY, SIZE, _write_clip, generate
from crashwatch.datasets.synth.render import agent_boxes, frame_camera, in_view, render_frame
from crashwatch.datasets.synth.scenario import EGO_FRONT, EGO_WIDTH, look


@pytest.mark.parametrize("kind", COLLISIONS)
def test_collision_scenarios_meet_the_ego_car_at_the_labelled_time(kind):
    rng = np.random.default_rng(7)
    for _ in range(10):
        scenario = build(kind, rng)
        t = scenario.critical_time
        assert scenario.collision_time() == pytest.approx(t, abs=1e-9)
        # At t some agent's footprint overlaps the ego car's, checked here from positions, not via `touching`.
        overlaps = []
        for agent in scenario.agents:
            z, x = scenario.relative(agent, t)
            overlaps.append(z - agent.length / 2 <= EGO_FRONT + 1e-6 and abs(x) < (agent.width + EGO_WIDTH) / 2)
        assert any(overlaps)
        assert not any(scenario.touching(a, t - 0.05) for a in scenario.agents)  # and not before
        assert 4.0 <= t <= 9.0


@pytest.mark.parametrize("kind", [k for k in KINDS if k not in COLLISIONS])
def test_hard_negatives_never_touch_the_ego_car(kind):
    rng = np.random.default_rng(8)
    for _ in range(10):
        scenario = build(kind, rng)
        assert scenario.collision_time() is None
        assert scenario.clearance(step=0.01) > 0.0
        if kind in NEAR_MISSES:  # ... yet they come close: that is what makes them hard
            assert scenario.clearance(step=0.05) <= 4.0


def test_a_collision_fills_the_view_and_a_calm_road_does_not():
    rng = np.random.default_rng(9)
    scenario = build("rear_end", rng)
    scenario.look.update(noise=0.0, rain=False, shake=0.0)
    early = render_frame(scenario, 0.5, (320, 180), 0)
    late = render_frame(scenario, scenario.critical_time - 0.1, (320, 180), 1)
    centre = lambda img: img[60:150, 110:210].astype(float)  # noqa: E731
    road = build("open_road", rng)
    # The lead car's rear covers far more of the centre just before the impact than seconds before.
    assert np.abs(centre(late) - centre(early)).mean() > 20
    assert render_frame(road, 1.0, (320, 180), 0).shape == (180, 320, 3)


def test_generate_writes_the_trainer_layout_with_research_labels(tmp_path):
    generate(tmp_path / "a", clips=12, seed=5, drives=2, drive_minutes=0.3)
    truth = json.loads((tmp_path / "a" / "train_truth.json").read_text())
    for split in ("train", "val", "test"):
        for clip in read_split(tmp_path / "a", split):
            if clip.label == 1:
                # research sense: the collision comes 1 to 2 s after the clip's end; training clips run on to it
                earliest = 0.0 if split == "train" else 1.0
                assert earliest - 0.1 <= clip.event_time - clip.info.duration <= 2.0 + 0.1  # one frame of rounding
            else:
                assert clip.event_time is None
    assert all(t["collision_time"] is None for t in truth.values() if t["kind"] not in COLLISIONS)
    for split in ("val", "test"):  # the research clip: one scene
        truth = json.loads((tmp_path / "a" / f"{split}_truth.json").read_text())
        assert not any("handed_over_at" in t for t in truth.values())
    drives = read_split(tmp_path / "a" / "drives", "test")
    drive_truth = json.loads((tmp_path / "a" / "drives" / "test_truth.json").read_text())
    for drive in drives:
        kinds = drive_truth[drive.name]["segments"]
        starts = drive_truth[drive.name]["segment_starts_s"]
        assert len(starts) == len(kinds) and starts[0] == 0.0 and starts == sorted(starts)
        assert starts[-1] < drive.info.duration == pytest.approx(drive_truth[drive.name]["duration_s"], abs=0.01)
        assert set(kinds[1::2]) == {"handover"}  # scenarios are handed over, never cut
        kinds = kinds[::2]
        if drive.label:
            assert starts[-1] < drive.event_time < drive.info.duration
            assert kinds[-1] in COLLISIONS
            kinds = kinds[:-1]
        assert kinds and all(kind in ORDINARY + ALARMING for kind in kinds)  # no collision before the last
    # The same seed writes the same data, whatever the number of processes rendering it.
    generate(tmp_path / "b", clips=12, seed=5, workers=2)
    assert (tmp_path / "a" / "train.jsonl").read_text() == (tmp_path / "b" / "train.jsonl").read_text()
    first = sorted((tmp_path / "a" / "train").glob("*.mp4"))[0]
    assert probe_clip(first).num_frames == probe_clip(tmp_path / "b" / "train" / first.name).num_frames
    # Every clip has its per-frame geometry, one entry per decodable frame.
    for split in ("train", "val", "test"):
        for clip in read_split(tmp_path / "a", split):
            geometry = json.loads(clip.video.with_suffix(".geometry.json").read_text())
            assert len(geometry["frames"]) == clip.info.num_frames and geometry["size"] == [320, 180]
            assert geometry == json.loads((tmp_path / "b" / split / clip.video.name).with_suffix(".geometry.json").read_text())
            # ... and its road users' boxes, the same for the same seed, a target only where it collides.
            boxes = read_boxes(boxes_path(clip.video))
            assert [frame.t for frame in boxes.frames] == pytest.approx(np.arange(clip.info.num_frames) / FPS)
            assert [len(frame.boxes) for frame in boxes.frames] == [len(frame["agents"]) for frame in geometry["frames"]]
            assert any(frame.target for frame in boxes.frames) == bool(clip.label)
            assert boxes_path(clip.video).read_bytes() == boxes_path(tmp_path / "b" / split / clip.video.name).read_bytes()
    for drive in drives:  # a drive's boxes: a target only in a crash drive's collision scenario, in its last seconds
        boxes = read_boxes(boxes_path(drive.video))
        assert len(boxes.frames) == drive.info.num_frames
        targeted = [frame.t for frame in boxes.frames if frame.target]
        if drive.label:
            assert drive_truth[drive.name]["segment_starts_s"][-1] - 1e-6 <= min(targeted) < drive.event_time
            assert boxes.target_at(drive.event_time - 0.5) is not None
        else:
            assert not targeted


@pytest.mark.parametrize("kind", ["rear_end", "crossing", "pass_by", "follow"])
def test_agent_boxes_hold_exactly_what_is_drawn_of_the_road_users(kind):
    """Render each frame with and without its road users: every changed pixel lies in some box (give or take
    the anti-aliasing-free edge pixel), and every box holds changed pixels."""
    rng = np.random.default_rng(11)
    scenario = build(kind, rng)
    scenario.look.update(noise=0.0, rain=False)
    empty = dataclasses.replace(scenario, agents=[])
    size = (320, 180)
    for index, t in enumerate(np.linspace(0.5, scenario.critical_time - 0.3, 5)):
        changed = np.abs(render_frame(scenario, t, size, index).astype(int) - render_frame(empty, t, size, index)).sum(-1) > 0
        boxes = agent_boxes(scenario, t, size, index)
        covered = np.zeros_like(changed)
        for box in boxes:
            covered[max(box.v0 - 1, 0):box.v1 + 2, max(box.u0 - 1, 0):box.u1 + 2] = True
            assert changed[box.v0:box.v1 + 1, box.u0:box.u1 + 1].any()
            assert box.near >= 0.6
        assert not (changed & ~covered).any()


def test_a_training_clip_runs_on_as_a_drive_plays_it(tmp_path):
    """Training clips: collisions run on up to the impact and the others past their critical moment; half
    open in a handover from a drive's scene, the event moving by what is shown before the scenario, and with no
    cut anywhere (the ego speed changes by at most a hard brake's 0.95 m/s from one frame to the next)."""
    seen = set()
    for seed in range(40):
        name, entry, truth = _write_clip((tmp_path, "train", seed, seed, "q?", True))
        frames = json.loads((tmp_path / name).with_suffix(".geometry.json").read_text())["frames"]
        assert probe_clip(tmp_path / name).num_frames == len(frames)
        assert len(frames) / FPS == pytest.approx(truth["clip_end"])
        speeds = np.array([f["ego_speed"] for f in frames])
        assert np.abs(np.diff(speeds)).max() <= 0.95 + 1e-6
        opens_at = truth.get("handed_over_at", 0.0)
        boxes = read_boxes(boxes_path(tmp_path / name))
        assert len(boxes.frames) == len(frames)
        # the colliding road user is the target from the clip's scenario on (not in the handover before it)
        targeted = [frame.t for frame in boxes.frames if frame.target]
        assert all(t >= opens_at - 1e-6 for t in targeted) and bool(targeted) == bool(entry["label"])
        if entry["label"]:
            assert boxes.frames[-1].target is not None
        seen.add("handed over" if opens_at else "single scene")
        lead = opens_at + truth["critical_time"] - truth["clip_end"]
        if entry["label"]:
            assert entry["event_time"] == pytest.approx(opens_at + truth["critical_time"], abs=1e-3)
            assert -0.05 <= lead <= 2.0 + 0.05
            seen.add("crash")
        else:
            assert "event_time" not in entry and -1.0 - 0.05 <= lead <= 2.0 + 0.05
            seen.add("past the critical moment" if lead < 0 else "safe")
    assert seen == {"crash", "safe", "past the critical moment", "handed over", "single scene"}


def _in_view(scenario, t):
    """(kind, z, x, speed ahead) of every road user in view at ``t``, nearest first."""
    seen = []
    for agent in scenario.agents:
        z, x = scenario.relative(agent, t)
        if in_view(agent, z, x, margin=0.0):
            seen.append((agent.kind, z, x, agent.along.at(t)[1]))
    return sorted(seen, key=lambda item: item[1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_drive_runs_on_across_every_handover(seed):
    """Where one segment of a drive gives way to the next, the ego car's place and speed and every road user in
    view (kind, place, speed) are the same in both: nothing appears, vanishes or jumps. Handovers stay clear of
    the ego car; only a crash drive's last scenario collides, at its critical time."""
    rng = np.random.default_rng(seed)
    drive = Drive(rng, look(rng), FPS)
    for kind in ("follow", "brake_in_time", "open_road", "cut_in_clear", "crossing_clear", "kerb_stop", "pass_by"):
        drive.add(kind)
    crash = drive.add(COLLISIONS[seed % len(COLLISIONS)])
    segments = drive.segments
    assert [seg.scenario.kind for seg in segments[1::2]] == ["handover"] * 7
    for before, after in zip(segments, segments[1:]):
        old, new, t = before.scenario, after.scenario, before.end
        assert new.ego.at(0.0) == pytest.approx(old.ego.at(t), abs=1e-6)
        seen_before, seen_after = _in_view(old, t), _in_view(new, 0.0)
        assert [k for k, *_ in seen_before] == [k for k, *_ in seen_after]
        assert np.allclose([v for _, *v in seen_before], [v for _, *v in seen_after], atol=1e-6)
    for handover in segments[1::2]:
        assert handover.scenario.collision_time(step=0.01) is None
        start = handover.scenario.clearance(until=0.0)  # after braking in time, a stopped car may be nearer
        assert handover.scenario.clearance(step=0.02) >= min(HANDOVER_CLEARANCE, start) - 0.1
    for scene in segments[:-1:2]:
        assert scene.scenario.collision_time() is None
    assert crash is segments[-1].scenario and crash.collision_time() == pytest.approx(crash.critical_time)
    assert drive.starts == pytest.approx(np.cumsum([0.0] + [seg.end for seg in segments[:-1]]))


def test_camera_shake_runs_on_the_video_not_the_scene():
    """At steady speed (no braking pitch) a frame's camera depends on its place in the video only, so a drive
    that hands one scene over to the next mid-shake does not make the picture jump."""
    scenario = build("open_road", np.random.default_rng(4))
    scenario = dataclasses.replace(scenario, look={**scenario.look, "shake": 2.5})
    cameras = [frame_camera(scenario, t, (320, 180), 17) for t in (0.5, 1.7, 3.1)]
    assert {(c.horizon, c.cx) for c in cameras} == {(cameras[0].horizon, cameras[0].cx)}
    assert frame_camera(scenario, 0.5, (320, 180), 18).horizon != cameras[0].horizon


def test_a_car_braking_ahead_shows_its_brake_lights():
    """The lead car of a rear-end shows bright brake lights (and a third one) once it brakes, and keeps them on
    if it stops; gentle slowing and cruising show the dim tail lights only."""
    scenario = build("rear_end", np.random.default_rng(1))
    scenario = dataclasses.replace(scenario, look={**scenario.look, "noise": 0.0, "rain": False})
    lead = scenario.agents[0].along
    brakes_at = lead.changes[0][0]
    assert not lead.braking(brakes_at - 0.1) and lead.braking(brakes_at + 0.1) and lead.braking(60.0)
    assert not dataclasses.replace(lead, changes=((1.0, -0.5),)).braking(2.0)

    def lit(t):
        box = agent_boxes(scenario, t, (320, 180), 0)[0]
        frame = render_frame(scenario, t, (320, 180), 0)[box.v0:box.v1 + 1, box.u0:box.u1 + 1].astype(int)
        blue, green, red = frame[..., 0], frame[..., 1], frame[..., 2]
        return int(((red > 220) & (green > 90) & (blue > 90) & (green < 150)).sum())

    assert lit(brakes_at - 0.1) == 0 and lit(brakes_at + 0.1) > 0


@pytest.mark.parametrize("kind", COLLISIONS)
def test_boxes_mark_the_road_user_the_collision_involves(tmp_path, kind):
    """Up to the impact, the target is the box ``render_frame`` draws of the road user that hits the ego car:
    it grows as it closes in and ends low in the frame, nearest of all; a near miss has no target."""
    rng = np.random.default_rng(21)
    scenario = build(kind, rng)
    end = round(scenario.critical_time * FPS) / FPS
    video = tmp_path / "clip.mp4"
    synth._write_boxes(video, synth._drawn([Segment(scenario, 0.0, end)], FPS, SIZE), FPS, SIZE)
    boxes = read_boxes(boxes_path(video))
    assert len(boxes.frames) == round(end * FPS)
    hitter = scenario.colliding_agent()
    assert hitter is not None and scenario.touching(hitter, scenario.critical_time)
    for index, frame in enumerate(boxes.frames):
        drawn = agent_boxes(scenario, index / FPS, SIZE, index)
        assert [(b.x0, b.y0, b.x1, b.y1) for b in frame.boxes] == [tuple(round(v, 4) for v in d.relative(SIZE)) for d in drawn]
        assert [b.label for b in frame.boxes] == [d.agent.kind for d in drawn]
        assert [b.target for b in frame.boxes] == [d.agent is hitter for d in drawn]
    last, before = boxes.frames[-1].target, boxes.frames[-11].target
    assert last is not None and before is not None
    assert (last.x1 - last.x0) * (last.y1 - last.y0) > (before.x1 - before.x0) * (before.y1 - before.y0)
    assert last.y1 > 0.6  # its bottom edge low in the frame: close ahead of the ego car
    assert max(boxes.frames[-1].boxes, key=lambda b: b.y1) is last

    near_miss = build(kind.replace("oncoming_drift", "pass_by").replace("rear_end", "brake_in_time")
                      .replace("cut_in", "cut_in_clear").replace("crossing", "crossing_clear"), rng)
    synth._write_boxes(video, synth._drawn([Segment(near_miss, 0.0, 3.0)], FPS, SIZE), FPS, SIZE)
    assert not any(frame.target for frame in read_boxes(boxes_path(video)).frames)


def test_boxes_lie_beside_their_video():
    assert boxes_path(Path("out/drive.mp4")) == Path("out/drive.boxes.json")
    assert boxes_path(Path("test/drive_001_crash.mp4")).name == "drive_001_crash.boxes.json"


def test_boxes_at_a_stream_time_are_the_nearest_frames():
    car, person = Box(0.4, 0.5, 0.6, 0.9, "car", True), Box(0.1, 0.4, 0.2, 0.7, "pedestrian")
    boxes = Boxes((BoxFrame(0.0, ()), BoxFrame(0.1, (person,)), BoxFrame(0.2, (car, person))))
    assert boxes.at(0.0) == () and boxes.at(0.04) == () and boxes.at(0.06) == (person,)
    assert boxes.at(0.2) == (car, person) and boxes.at(0.249) == (car, person)
    assert boxes.at(0.26) is None and boxes.at(-0.06) is None and boxes.at(-0.05) == ()  # half a frame out
    assert boxes.target_at(0.19) is car and boxes.target_at(0.1) is None and boxes.target_at(5.0) is None
    assert car.contains(0.5, 0.9) and not car.contains(0.61, 0.7)
    assert Boxes((BoxFrame(3.0, (car,)),)).at(3.0) == (car,) and Boxes((BoxFrame(3.0, (car,)),)).at(3.1) is None


@pytest.mark.parametrize("frames, problem", [
    ([{"t": 0.0, "boxes": []}, {"t": 0.0, "boxes": []}], "frame 1: 't' must increase strictly"),
    ([{"t": 0.0, "boxes": []}, {"t": "0.1", "boxes": []}], "frame 1: 't' must be a number"),
    ([{"t": 0.0, "boxes": []}, {"t": 0.1}], "frame 1: 'boxes' must be a list"),
    ([{"t": 0.0, "boxes": [{"box": [10, 20, 50, 60], "label": "car"}]}], "frame 0, box 0: 'box' must be relative"),
    ([{"t": 0.0, "boxes": [{"box": [0.1, 0.2, 0.3], "label": "car"}]}], "frame 0, box 0: 'box' must be [x0, y0, x1, y1]"),
    ([{"t": 0.0, "boxes": [{"box": [0.5, 0.2, 0.3, 0.4]}]}], "frame 0, box 0: 'box' must be relative"),
    ([{"t": 0.0, "boxes": [{"box": [0.1, 0.2, 0.3, 0.4], "target": 1}]}], "frame 0, box 0: 'target' must be true or false"),
    ([{"t": 0.0, "boxes": [{"box": [0.1, 0.2, 0.3, 0.4], "label": 3}]}], "frame 0, box 0: 'label' must be a string"),
    ([{"t": 0.0, "boxes": []}, {"t": 0.1, "boxes": [{"box": [0.1, 0.2, 0.3, 0.4], "target": True},
                                                   {"box": [0.5, 0.2, 0.7, 0.4], "target": True}]}],
     "frame 1: 2 boxes are 'target'; at most one may be"),
    ([], "no frames"),
])
def test_a_bad_boxes_file_is_named_with_its_frame_and_problem(tmp_path, frames, problem):
    path = tmp_path / "clip.boxes.json"
    path.write_text(json.dumps({"frames": frames}))
    with pytest.raises(BoxesError) as err:
        read_boxes(path)
    assert str(err.value).startswith(f"{path}: ") and problem in str(err.value)


def test_a_missing_or_broken_boxes_file_is_named(tmp_path):
    with pytest.raises(BoxesError, match="no such boxes file"):
        read_boxes(tmp_path / "none.boxes.json")
    (tmp_path / "a.boxes.json").write_text("{")
    with pytest.raises(BoxesError, match="a.boxes.json: unreadable"):
        read_boxes(tmp_path / "a.boxes.json")
    (tmp_path / "b.boxes.json").write_text("[]")
    with pytest.raises(BoxesError, match="'frames' list"):
        read_boxes(tmp_path / "b.boxes.json")
    # a hand-written file may leave out label and target
    (tmp_path / "c.boxes.json").write_text('{"frames": [{"t": 0.5, "boxes": [{"box": [0, 0, 1, 1]}]}]}')
    assert read_boxes(tmp_path / "c.boxes.json").at(0.5) == (Box(0.0, 0.0, 1.0, 1.0),)


def test_the_shipped_demo_drive_has_its_boxes():
    """``drive.boxes.json`` beside the demo drive: a frame per video frame, the rear-ended car the target up to
    the collision."""
    demo = Path(__file__).resolve().parents[2] / "crashwatch" / "assets" / "demo"
    truth = json.loads((demo / "drive.json").read_text())
    boxes = read_boxes(boxes_path(demo / "drive.mp4"))
    assert len(boxes.frames) == round(truth["duration_s"] * FPS)
    targeted = [frame for frame in boxes.frames if frame.target]
    assert targeted[0].t == pytest.approx(truth["segment_starts_s"][-1])
    target = boxes.target_at(truth["event_time"] - 0.2)
    assert target is not None and target.label == "car" and target.y1 > 0.8
