"""Per-frame geometry supervision: what stands in for a pretrained vision encoder on generated scenes.

A SmolVLM fine-tuned for real roads starts from a vision encoder that already knows what a car is. The demo
model starts from random weights, and one risk label per window is a weak signal to learn from scratch where
the road users are (trained on that label alone, it stayed at the class prior for two epochs of 20,000
windows). The generator knows exactly what it drew, so each clip carries ``NAME.geometry.json`` (ego speed, and for
every drawn road user its box and distance, per frame) and training adds a small loss that asks each frame's
image embeddings to say, on a coarse grid over the frame, whether a road user is there, how near it is and how
far across, and how fast the ego car goes. The probe reading the embeddings is training-only: nothing of it
is exported, and the served model is the same SmolVLM with the same head.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from train.data import DatasetError
from train.model import CrashRiskModel, RiskOutput, risk_loss

GRID = 4  # cells per side of the grid the targets are given on
CHANNELS = 4  # occupied, nearness exp(-d/10 m), across offset x/5 m (of the nearest user), ego speed/20 m/s


class GeometryError(DatasetError):
    """A geometry file that is missing or unreadable; the message names it."""


class ClipGeometry:
    """A clip's ``*.geometry.json``, turned into grid targets frame by frame."""

    def __init__(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self.width, self.height = (int(v) for v in data["size"])
            self.frames: list[dict] = data["frames"]
        except FileNotFoundError:
            raise GeometryError(f"{path}: no such geometry file (training.geometry_weight needs one beside every "
                                "training video, as `crashwatch synth` writes; set it to 0 for other data)") from None
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise GeometryError(f"{path}: not a geometry file ({err})") from None

    def targets(self, indices: Sequence[int]) -> np.ndarray:
        """``[len(indices), GRID * GRID, CHANNELS]`` float32 targets for the given frame indices."""
        return np.stack([self._frame_targets(self.frames[min(i, len(self.frames) - 1)]) for i in indices])

    def _frame_targets(self, frame: dict) -> np.ndarray:
        out = np.zeros((GRID * GRID, CHANNELS), np.float32)
        out[:, 3] = frame["ego_speed"] / 20.0
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


class GeometryProbe(nn.Module):
    """A linear read-out of one frame's image embeddings ``[F, T, D]`` -> grid predictions ``[F, cells, C]``."""

    def __init__(self, tokens_per_frame: int, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(tokens_per_frame * hidden_size, GRID * GRID * CHANNELS)

    def forward(self, frame_embeds: torch.Tensor) -> torch.Tensor:
        return self.linear(frame_embeds.flatten(1)).view(-1, GRID * GRID, CHANNELS)


def geometry_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Occupancy as BCE; nearness and offset as squared error where a user is; ego speed from the frame mean."""
    occupied = target[..., 0]
    presence = nn.functional.binary_cross_entropy_with_logits(predicted[..., 0], occupied)
    where = ((predicted[..., 1:3] - target[..., 1:3]) ** 2).sum(-1)
    placement = (where * occupied).sum() / occupied.sum().clamp(min=1.0)
    speed = ((predicted[..., 3].mean(-1) - target[..., 0, 3]) ** 2).mean()
    return presence + placement + speed


class GeometrySupervised(nn.Module):
    """What ``Trainer`` trains when ``training.geometry_weight`` is set: the risk model plus the probe, with
    loss = risk BCE + weight x geometry loss (the geometry term only where a batch brings targets)."""

    def __init__(self, model: CrashRiskModel, weight: float) -> None:
        super().__init__()
        self.model = model
        self.probe = GeometryProbe(model.tokens_per_frame, model.text_model.config.hidden_size)
        self.weight = weight

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        geometry: torch.Tensor | None = None,
    ) -> RiskOutput:
        logits, frames = self.model.logits_and_frames(pixel_values, input_ids, attention_mask)
        loss = None
        if labels is not None:
            loss = risk_loss(logits, labels)
            if geometry is not None:
                predicted = self.probe(frames).view(geometry.shape)
                loss = loss + self.weight * geometry_loss(predicted, geometry)
        return RiskOutput(loss=loss, logits=logits)
