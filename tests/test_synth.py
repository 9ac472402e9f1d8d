"""The scenario generator: its ground truth is the geometry's, and its files are the trainer's layout."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from monitor.video import probe_clip
from train.data import read_split
from train.synth.catalog import COLLISIONS, KINDS, NEAR_MISSES, build
from train.synth.generate import ALARMING, FPS, ORDINARY, _write_clip, generate
from train.synth.render import agent_boxes, render_frame
from train.synth.scenario import EGO_FRONT, EGO_WIDTH


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
                # research sense: the collision comes 1 to 2 s after the clip's end
                assert 1.0 - 0.1 <= clip.event_time - clip.info.duration <= 2.0 + 0.1  # one frame of rounding
            else:
                assert clip.event_time is None
    assert all(t["collision_time"] is None for t in truth.values() if t["kind"] not in COLLISIONS)
    for split in ("val", "test"):  # the research clip: one scene
        assert not any("cut_at" in t for t in json.loads((tmp_path / "a" / f"{split}_truth.json").read_text()).values())
    drives = read_split(tmp_path / "a" / "drives", "test")
    drive_truth = json.loads((tmp_path / "a" / "drives" / "test_truth.json").read_text())
    for drive in drives:
        kinds = drive_truth[drive.name]["segments"]
        starts = drive_truth[drive.name]["segment_starts_s"]  # where the scene cuts are
        assert len(starts) == len(kinds) and starts[0] == 0.0 and starts == sorted(starts)
        assert starts[-1] < drive.info.duration
        if drive.label:
            assert drive.event_time < drive.info.duration
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


def test_a_clip_that_opens_on_a_cut_keeps_its_labels_on_its_own_scene(tmp_path):
    """A training clip opening on another scene's tail: the event moves by the tail's length, the geometry says
    which frames are which scene, and the tail itself never collides."""
    seen = set()
    for seed in range(40):
        name, entry, truth = _write_clip((tmp_path, "train", seed, seed, "q?", 1.0))
        cut_frames = round(truth["cut_at"] * FPS)
        assert 3 <= cut_frames <= 22 and truth["cut_at"] == cut_frames / FPS
        scenes = [f["scene"] for f in json.loads((tmp_path / name).with_suffix(".geometry.json").read_text())["frames"]]
        assert scenes == [0] * cut_frames + [1] * (len(scenes) - cut_frames)
        assert probe_clip(tmp_path / name).num_frames == len(scenes)
        if entry["label"]:
            assert entry["event_time"] == pytest.approx(truth["cut_at"] + truth["critical_time"], abs=1e-3)
            assert 1.0 - 0.1 <= entry["event_time"] - len(scenes) / FPS <= 2.0 + 0.1
            seen.add("crash")
        else:
            assert "event_time" not in entry
            seen.add("safe")
    assert seen == {"crash", "safe"}
