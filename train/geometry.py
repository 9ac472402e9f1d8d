"""Per-frame geometry supervision: what stands in for a pretrained vision encoder on generated scenes.

A SmolVLM fine-tuned for real roads starts from a vision encoder that already knows what a car is. The demo
model starts from random weights, and one risk label per window is a weak signal to learn from scratch where
the road users are (trained on that label alone, it stayed at the class prior for two epochs of 20,000
windows). The generator knows exactly what it drew, so each clip carries ``NAME.geometry.json`` (ego speed, and for
every drawn road user its box and distance, per frame) and training adds a small loss that asks each frame's
image embeddings to say, on a coarse grid over the frame, whether a road user is there, how near it is and how
far across, and, precisely, how far and how far across the nearest road user ahead and the nearest one in the
ego lane are (not the ego speed: one still frame does not show it, and asking for it only adds noise). A
second probe asks the state the head reads (the last token's)
for the window's motion: where the nearest road user ahead is at the last frame and how its distance and
offset changed since the first and the middle frame, and the ego speed and its change. Those few numbers
nearly decide the label (gradient boosting on them, exact, reaches 0.99 validation AUROC), and a dense
regression target teaches the text model to compare frames far sooner than the risk label alone. Both probes
are training-only: nothing of them is exported, and the served model is the same SmolVLM with the same head.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from crashwatch.contract.sidecars import FrameGeometry
from crashwatch.train.model import CrashRiskModel, RiskOutput, risk_loss

GRID = 4  # cells per side of the grid the targets are given on
CHANNELS = 3  # occupied, nearness exp(-d/10 m), across offset x/5 m (of the nearest user in the cell)
MOTION = 9  # window motion targets, see ClipGeometry.motion
MOTION_ACROSS = (1, 3, 5)  # which of them are across offsets (or their change)
NEAREST = 5  # per frame: nearest road user ahead (distance, offset, present), nearest in the ego lane (distance, present)
NEAREST_ACROSS = (1,)
EGO_LANE = 1.75  # m either side of the ego lane's centre
FAR = 40.0  # m: a road user farther than this (or none) counts as this far


class ClipGeometry:
    """A clip's ``*.geometry.json`` (``crashwatch.contract.sidecars.FrameGeometry``), turned into targets frame by frame."""

    def __init__(self, path: Path) -> None:
        geometry = FrameGeometry.read(path)
        self.width, self.height, self.frames = geometry.width, geometry.height, geometry.frames

    def targets(self, indices: Sequence[int]) -> np.ndarray:
        """``[len(indices), GRID * GRID, CHANNELS]`` float32 targets for the given frame indices."""
        return np.stack([self._frame_targets(self._frame(i)) for i in indices])

    def nearest(self, indices: Sequence[int]) -> np.ndarray:
        """``[len(indices), NEAREST]`` float32 targets: per frame, the nearest road user ahead (distance / 20 m
        capped at FAR, offset / 5 m, present) and the nearest in the ego lane (distance, present). The precise
        per-frame numbers whose change over a window the motion targets ask for."""
        rows = []
        for index in indices:
            frame = self._frame(index)
            d_ahead, x_ahead, ahead = _nearest_ahead(frame)
            d_lane, _, in_lane = _nearest_ahead(frame, lane_only=True)
            rows.append([d_ahead / 20, x_ahead / 5, ahead, d_lane / 20, in_lane])
        return np.clip(np.array(rows, np.float32).reshape(-1, NEAREST), -2.0, 2.0)

    def motion(self, indices: Sequence[int]) -> np.ndarray:
        """``[MOTION]`` float32 targets for the window of frames ``indices``, scaled to about unit range: the
        nearest road user ahead at the last frame (distance, offset), the change of each since the first and
        since the middle frame, the ego speed at the last frame and its change, and whether anyone is ahead;
        clipped to +-2."""
        first, middle, last = (self._frame(indices[k]) for k in (0, len(indices) // 2, -1))
        (d0, x0, _), (dm, xm, _), (d1, x1, present) = (_nearest_ahead(f) for f in (first, middle, last))
        speed0, speed1 = first["ego_speed"], last["ego_speed"]
        targets = [d1 / 20, x1 / 5, (d1 - d0) / 10, (x1 - x0) / 3, (d1 - dm) / 10, (x1 - xm) / 3,
                   speed1 / 20, (speed1 - speed0) / 5, present]
        return np.clip(np.array(targets, np.float32), -2.0, 2.0)  # someone appearing: a jump, not a speed

    def _frame(self, index: int) -> dict:
        return self.frames[min(index, len(self.frames) - 1)]

    def _frame_targets(self, frame: dict) -> np.ndarray:
        out = np.zeros((GRID * GRID, CHANNELS), np.float32)
        nearest = np.full(GRID * GRID, math.inf)
        cell_w, cell_h = self.width / GRID, self.height / GRID
        for u0, v0, u1, v1, near, across in frame["agents"]:
            for row in range(GRID):
                for col in range(GRID):
                    overlap_u = min(u1, (col + 1) * cell_w) - max(u0, col * cell_w)
                    overlap_v = min(v1, (row + 1) * cell_h) - max(v0, row * cell_h)
                    cell = row * GRID + col
                    if overlap_u > 2 and overlap_v > 2 and near < nearest[cell]:  # more than a sliver
                        nearest[cell] = near
                        out[cell, :3] = (1.0, math.exp(-near / 10.0), max(-2.0, min(2.0, across / 5.0)))
        return out


def mirrored_targets(targets: np.ndarray) -> np.ndarray:
    """Grid targets ``[F, GRID * GRID, CHANNELS]`` of the frames mirrored left to right: columns swapped and
    the across offset negated."""
    grid = targets.reshape(-1, GRID, GRID, CHANNELS)[:, :, ::-1].copy()
    grid[..., 2] *= -1
    return grid.reshape(targets.shape)


def mirrored_motion(motion: np.ndarray) -> np.ndarray:
    """Window motion targets (``ClipGeometry.motion``, ``[..., MOTION]``) of the window mirrored: every across
    offset negated."""
    out = motion.copy()
    out[..., list(MOTION_ACROSS)] *= -1
    return out


def mirrored_nearest(nearest: np.ndarray) -> np.ndarray:
    """Per-frame nearest-road-user targets (``ClipGeometry.nearest``) of the frames mirrored."""
    out = nearest.copy()
    out[..., list(NEAREST_ACROSS)] *= -1
    return out


def _nearest_ahead(frame: dict, lane_only: bool = False) -> tuple[float, float, float]:
    """(distance capped at FAR, offset, 1) of the nearest road user ahead of the camera (in the ego lane only,
    with ``lane_only``), (FAR, 0, 0) if none."""
    ahead = [(near, across) for *_, near, across in frame["agents"]
             if near > 0 and (not lane_only or abs(across) < EGO_LANE)]
    if not ahead:
        return FAR, 0.0, 0.0
    near, across = min(ahead)
    return min(near, FAR), across, 1.0


class GeometryProbe(nn.Module):
    """A linear read-out of one frame's image embeddings ``[F, T, D]`` -> grid predictions ``[F, cells, C]``."""

    def __init__(self, tokens_per_frame: int, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(tokens_per_frame * hidden_size, GRID * GRID * CHANNELS)

    def forward(self, frame_embeds: torch.Tensor) -> torch.Tensor:
        return self.linear(frame_embeds.flatten(1)).view(-1, GRID * GRID, CHANNELS)


def geometry_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Occupancy as BCE; nearness and offset as squared error where a user is."""
    occupied = target[..., 0]
    presence = nn.functional.binary_cross_entropy_with_logits(predicted[..., 0], occupied)
    where = ((predicted[..., 1:3] - target[..., 1:3]) ** 2).sum(-1)
    placement = (where * occupied).sum() / occupied.sum().clamp(min=1.0)
    return presence + placement


class GeometrySupervised(nn.Module):
    """What ``Trainer`` trains when ``training.geometry_weight`` is set: the risk model plus the probes, with
    loss = risk BCE + weight x (grid loss + nearest-road-user and motion Huber losses), each geometry term only
    where a batch brings its targets."""

    def __init__(self, model: CrashRiskModel, weight: float) -> None:
        super().__init__()
        self.model = model
        hidden = model.text_model.config.hidden_size
        self.probe = GeometryProbe(model.tokens_per_frame, hidden)
        self.nearest_probe = nn.Linear(model.tokens_per_frame * hidden, NEAREST)
        self.motion_probe = nn.Linear(hidden, MOTION)
        self.weight = weight

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        window_frames: torch.Tensor | None = None,
        geometry: torch.Tensor | None = None,
        nearest: torch.Tensor | None = None,
        motion: torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
    ) -> RiskOutput:
        pooled, frames = self.model.pooled_and_frames(pixel_values, input_ids, attention_mask, window_frames, segments)
        logits = self.model.classify(pooled)
        loss = None
        if labels is not None:
            loss = risk_loss(logits, labels)
            if geometry is not None:
                predicted = self.probe(frames).view(geometry.shape)
                loss = loss + self.weight * geometry_loss(predicted, geometry)
            if nearest is not None:
                predicted = self.nearest_probe(frames.flatten(1).float())
                loss = loss + self.weight * nn.functional.smooth_l1_loss(predicted, nearest.view(predicted.shape))
            if motion is not None:
                motion_error = nn.functional.smooth_l1_loss(self.motion_probe(pooled.float()), motion)
                loss = loss + self.weight * motion_error
        return RiskOutput(loss=loss, logits=logits)
