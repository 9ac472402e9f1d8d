"""Per-frame geometry supervision: targets from the generator's boxes, the loss it adds, and training with it."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from safetensors import safe_open

from crashwatch.contract.sidecars import GeometryError
from crashwatch.train.config import load_config
from crashwatch.train.geometry import (
    FAR,
    GRID,
    MOTION,
    NEAREST,
    ClipGeometry,
    GeometrySupervised,
    mirrored_motion,
    mirrored_nearest,
    mirrored_targets,
)
from crashwatch.train.model import CrashRiskModel, risk_loss
from crashwatch.train.tokenizer import load_tokenizer
from tests.support.cli import crashwatch
from tests.support.shared import TINY_CONFIG


def _geometry_file(path, frames):
    path.write_text(json.dumps({"fps": 10.0, "size": [320, 180], "frames": frames}))
    return path


def test_targets_mark_the_cells_a_road_user_covers_with_the_nearest_one(tmp_path):
    # Cells are 80 x 45 px. A far car in cell (1, 1); a near one covering cells (2, 1) and (2, 2).
    far = [90, 50, 150, 85, 30.0, 0.5]
    near = [100, 95, 230, 130, 5.0, -1.0]
    overlapping = [85, 48, 155, 88, 40.0, 2.0]  # same cell as `far`, but farther: `far` is kept there
    geometry = ClipGeometry(_geometry_file(tmp_path / "c.geometry.json", [
        {"ego_speed": 10.0, "agents": [far, near, overlapping]},
        {"ego_speed": 4.0, "agents": []},
    ]))
    targets = geometry.targets([0, 1, 5])  # an index past the last frame takes the last frame
    assert targets.shape == (3, GRID * GRID, 3)
    first = targets[0]
    occupied = {int(k) for k in first[:, 0].nonzero()[0]}
    assert occupied == {1 * GRID + 1, 2 * GRID + 1, 2 * GRID + 2}
    assert first[1 * GRID + 1, 1] == pytest.approx(math.exp(-3.0)) and first[1 * GRID + 1, 2] == pytest.approx(0.1)
    assert first[2 * GRID + 2, 1] == pytest.approx(math.exp(-0.5)) and first[2 * GRID + 2, 2] == pytest.approx(-0.2)
    assert (targets[1] == 0).all() and (targets[2] == targets[1]).all()


def test_motion_follows_the_nearest_road_user_ahead_across_the_window(tmp_path):
    behind = [0, 0, 10, 10, -3.0, 3.5]  # alongside/behind the camera: never "ahead"
    frames = [{"ego_speed": 12.0, "agents": [[0, 0, 9, 9, 30.0, 1.0], behind]},
              {"ego_speed": 11.0, "agents": [[0, 0, 9, 9, 24.0, 0.7], [0, 0, 9, 9, 35.0, -3.5]]},
              {"ego_speed": 8.0, "agents": [[0, 0, 9, 9, 18.0, 0.4]]},
              {"ego_speed": 8.0, "agents": [behind]}]
    geometry = ClipGeometry(_geometry_file(tmp_path / "m.geometry.json", frames))
    approaching = geometry.motion([0, 1, 2])
    assert approaching.shape == (MOTION,)
    assert approaching == pytest.approx([18 / 20, 0.4 / 5, -12 / 10, -0.6 / 3, -6 / 10, -0.3 / 3, 8 / 20, -4 / 5, 1.0])
    nobody_ahead = geometry.motion([2, 3, 3])  # the user ahead is gone: as far as FAR and absent
    assert nobody_ahead == pytest.approx([FAR / 20, 0.0, 2.0, -0.4 / 3, 0.0, 0.0, 8 / 20, 0.0, 0.0])  # clipped


def test_each_frame_says_how_far_the_nearest_road_user_ahead_and_in_the_ego_lane_are(tmp_path):
    frames = [{"ego_speed": 12.0, "agents": [[0, 0, 9, 9, 8.0, -3.5], [0, 0, 9, 9, 30.0, 0.5], [0, 0, 9, 9, -2.0, 0.0]]},
              {"ego_speed": 12.0, "agents": [[0, 0, 9, 9, 55.0, 1.0]]},
              {"ego_speed": 12.0, "agents": []}]
    geometry = ClipGeometry(_geometry_file(tmp_path / "n.geometry.json", frames))
    nearest = geometry.nearest([0, 1, 2])
    assert nearest.shape == (3, NEAREST)
    # frame 0: a car in the next lane nearest ahead, one 30 m ahead in the ego lane, one behind (never counted)
    assert nearest[0] == pytest.approx([8 / 20, -3.5 / 5, 1.0, 30 / 20, 1.0])
    assert nearest[1] == pytest.approx([FAR / 20, 0.2, 1.0, FAR / 20, 1.0])  # beyond FAR: as far as FAR
    assert nearest[2] == pytest.approx([FAR / 20, 0.0, 0.0, FAR / 20, 0.0])


def test_mirrored_targets_are_the_targets_of_the_mirrored_scene(tmp_path):
    """Mirroring the targets (as training with ``mirror`` does) gives what the geometry file of the scene drawn
    mirrored (boxes reflected across the 320 px frame, offsets negated) gives."""
    boxes = [[[20, 60, 90, 100, 25.0, -3.2], [150, 90, 300, 170, 6.0, 0.8]],
             [[30, 60, 100, 100, 21.0, -3.0], [170, 95, 319, 178, 4.5, 0.6]],
             [[200, 40, 240, 70, 35.0, 1.5]]]
    speeds = (14.0, 12.0, 9.0)

    def scene(path, reflect):
        frames = [{"ego_speed": v, "agents": [[320 - u1, v0, 320 - u0, v1, near, -x] if reflect else
                                              [u0, v0, u1, v1, near, x] for u0, v0, u1, v1, near, x in agents]}
                  for v, agents in zip(speeds, boxes)]
        return ClipGeometry(_geometry_file(path, frames))

    original, reflected = scene(tmp_path / "o.geometry.json", False), scene(tmp_path / "r.geometry.json", True)
    window = [0, 1, 2]
    assert mirrored_targets(original.targets(window)) == pytest.approx(reflected.targets(window))
    assert mirrored_motion(original.motion(window)) == pytest.approx(reflected.motion(window))
    assert mirrored_nearest(original.nearest(window)) == pytest.approx(reflected.nearest(window))
    assert not (original.targets(window) == reflected.targets(window)).all()  # the scene is not symmetric


def test_a_missing_or_broken_geometry_file_is_named(tmp_path):
    with pytest.raises(GeometryError, match="none.geometry.json: no such geometry file"):
        ClipGeometry(tmp_path / "none.geometry.json")
    (tmp_path / "bad.geometry.json").write_text("{")
    with pytest.raises(GeometryError, match="bad.geometry.json: not a geometry file"):
        ClipGeometry(tmp_path / "bad.geometry.json")


def test_the_geometry_loss_reaches_the_vision_encoder_and_nothing_else_changes():
    config = load_config(TINY_CONFIG)
    tokenizer = load_tokenizer("builtin")
    torch.manual_seed(0)
    model = CrashRiskModel.from_backbone_config(config.backbone, config.head, tokenizer.convert_tokens_to_ids("<image>"),
                                              config.image_size)
    supervised = GeometrySupervised(model, weight=0.5)
    from crashwatch.contract.prompt import PromptEncoder

    ids = torch.tensor([PromptEncoder(tokenizer, config.window, model.tokens_per_frame)(config.question)] * 2)
    mask = torch.ones_like(ids)
    pixels = torch.randn(2, config.num_frames, 3, config.image_size, config.image_size)
    labels = torch.tensor([0.0, 1.0])
    targets = torch.rand(2 * config.num_frames, GRID * GRID, 3).round()
    nearest = torch.rand(2 * config.num_frames, NEAREST)
    motion = torch.rand(2, MOTION)
    model.eval()
    text_layers = model.text_model.layers
    for frame_targets in ({"geometry": targets}, {"nearest": nearest}):  # the per-frame terms, one at a time
        supervised.zero_grad()
        plain = model(pixels, ids, mask, labels)
        out = supervised(pixels, ids, mask, labels, **frame_targets)
        assert torch.equal(out.logits, plain.logits)  # the probes read the model's states; they change no prediction
        assert out.loss > risk_loss(plain.logits, labels)
        (out.loss - plain.loss).backward()  # the geometry term alone
        vision_grad = sum(p.grad.abs().sum() for p in model.backbone.vision_model.parameters() if p.grad is not None)
        assert vision_grad > 0
        assert all(p.grad is None or not p.grad.any() for p in model.head.parameters())
        assert all(p.grad is None or not p.grad.any() for p in text_layers.parameters())  # they read the frames only
    supervised.zero_grad()
    with_motion = supervised(pixels, ids, mask, labels, geometry=targets, motion=motion)
    without = supervised(pixels, ids, mask, labels, geometry=targets)
    assert with_motion.loss > without.loss
    (with_motion.loss - without.loss).backward()  # the motion term teaches the text model to compare frames
    assert sum(p.grad.abs().sum() for p in text_layers.parameters() if p.grad is not None) > 0


def test_training_with_geometry_on_generated_clips_and_without_it_on_other_data(tmp_path, tiny_dataset):
    data = tmp_path / "synth"
    crashwatch("synth", "--out", str(data), "--clips", "10", "--seed", "4", "--workers", "1")
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["training"].update(geometry_weight=1.0, windows_per_clip=4, windows_per_item=2, mirror=0.5)
    (tmp_path / "geo.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    crashwatch("train", "--config", str(tmp_path / "geo.yaml"), "--data", str(data), "--out", str(run), "--max-steps", "2")
    with safe_open(run / "model.safetensors", "pt") as weights:
        names = list(weights.keys())
    assert names and not [n for n in names if "probe" in n]  # training-only: not in the model that is exported
    history = json.loads(sorted((run / "checkpoints").glob("checkpoint-*/trainer_state.json"))[-1].read_text())
    assert history["global_step"] == 2
    # eval names how each kind of generated clip fares, from the split's ground truth
    out = crashwatch("eval", "--checkpoint", str(run), "--data", str(data), "--split", "val", "--out", str(tmp_path / "e"))
    kinds = {entry["kind"] for entry in json.loads((data / "val_truth.json").read_text()).values()}
    by_kind = json.loads((tmp_path / "e" / "metrics.json").read_text())["by_kind"]
    assert set(by_kind) == kinds and sum(k["clips"] for k in by_kind.values()) == 2
    assert all(f"  {kind}" in out.stdout for kind in kinds)

    result = crashwatch("train", "--config", str(tmp_path / "geo.yaml"), "--data", str(tiny_dataset), "--out",
                        str(tmp_path / "r2"), check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "training.geometry_weight is set but 6 of 6 training clips have no geometry file" in result.stderr
    assert "train_0.geometry.json" in result.stderr
