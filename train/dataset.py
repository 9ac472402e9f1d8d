"""Torch side of the data: window samples to model inputs, with the shared contract.

Frames are picked with ``crashwatch.contract.window.pick_frames``, preprocessed with ``crashwatch.contract.preprocess`` and the
prompt encoded with ``crashwatch.contract.prompt``: the exact code the exporter and the monitor use.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from crashwatch.contract.dataset import Clip
from crashwatch.contract.preprocess import PixelSpec, normalise, preprocess_frames, resize_frame
from crashwatch.contract.prompt import PromptEncoder
from crashwatch.contract.sidecars import geometry_path
from crashwatch.contract.video import read_frames
from crashwatch.contract.window import WindowSpec, pick_frames
from crashwatch.train.geometry import ClipGeometry, mirrored_motion, mirrored_nearest, mirrored_targets
from crashwatch.train.windows import WindowSample


def window_frames(clip: Clip, end: float, geometry: WindowSpec) -> list[int]:
    """Indices of the frames of ``clip`` in the window ending at ``end``."""
    return pick_frames(clip.info.timestamps(), end, geometry)


def model_inputs(clip: Clip, end: float, prompt: PromptEncoder, pixels: PixelSpec) -> dict[str, torch.Tensor]:
    """The model's inputs for the window of ``clip`` ending at ``end``. Takes no label, by design."""
    frames = preprocess_frames(read_frames(clip.video, window_frames(clip, end, prompt.window)), pixels)
    encoded = prompt.encode(clip.text)
    inputs = {"pixel_values": torch.from_numpy(frames), "input_ids": torch.tensor(encoded.ids, dtype=torch.long)}
    if encoded.segments is not None:
        inputs["segments"] = torch.tensor(encoded.segments, dtype=torch.long)
    return inputs


class WindowDataset(Dataset):
    """Groups of windows of one clip (``crashwatch.train.windows.group_windows``; a group of one for evaluation) as model
    inputs plus their labels. An item holds each frame its windows use once (``pixel_values`` ``[N, 3, S, S]``)
    and, per window, which of them it takes (``window_frames`` ``[K, F]``), its prompt and label: a frame shared
    by windows is decoded and encoded once, as the monitor does. With ``with_geometry`` it also holds the
    per-frame grid and nearest-road-user targets and the per-window motion targets of ``crashwatch.train.geometry``
    (training-only, never a model input).

    With ``cache_frames`` each item's frames are decoded and resized once and kept (uint8) for the next
    epochs: for small models, whose steps cost less than decoding video. The cache lives in the process that
    reads the data, so with workers it needs them persistent (``crashwatch.train.fit`` sets that).

    With ``mirror`` that share of the items read is mirrored left to right, drawn anew at each read (torch's
    generator, which the data loader seeds per worker from the run's seed)."""

    def __init__(
        self, groups: Sequence[Sequence[WindowSample]], prompt: PromptEncoder, pixels: PixelSpec,
        with_geometry: bool = False, cache_frames: bool = False, mirror: float = 0.0,
    ) -> None:
        self.groups = [list(group) for group in groups]
        self.prompt = prompt
        self.pixels = pixels
        self.with_geometry = with_geometry
        self.cache_frames = cache_frames
        self.mirror = mirror
        self._frames: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.groups)

    def cache_bytes(self) -> int:
        """What the frame cache holds once every item was read."""
        if not self.cache_frames:
            return 0
        frames = sum(len(self._frame_indices(group)[0]) for group in self.groups)
        return frames * self.pixels.image_size ** 2 * 3

    def _frame_indices(self, group: list[WindowSample]) -> tuple[list[int], list[list[int]]]:
        """The clip frames the group's windows use, each once and in order, and per window where its frames
        lie among them."""
        per_window = [window_frames(sample.clip, sample.end, self.prompt.window) for sample in group]
        distinct = sorted({i for indices in per_window for i in indices})
        where = {frame: k for k, frame in enumerate(distinct)}
        return distinct, [[where[i] for i in indices] for indices in per_window]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        group = self.groups[index]
        clip = group[0].clip
        distinct, per_window = self._frame_indices(group)
        mirrored = self.mirror > 0 and torch.rand(()).item() < self.mirror
        pixels = self._pixels(index, clip, distinct)
        encoded = self.prompt.encode(clip.text)
        item = {
            "pixel_values": torch.from_numpy(np.ascontiguousarray(pixels[..., ::-1]) if mirrored else pixels),
            "window_frames": torch.tensor(per_window, dtype=torch.long),
            "input_ids": torch.tensor(encoded.ids, dtype=torch.long).repeat(len(group), 1),
            "labels": torch.tensor([float(sample.label) for sample in group]),
        }
        if encoded.segments is not None:
            item["segments"] = torch.tensor(encoded.segments, dtype=torch.long).repeat(len(group), 1)
        if self.with_geometry:
            geometry = _clip_geometry(geometry_path(clip.video))
            targets, nearest = geometry.targets(distinct), geometry.nearest(distinct)
            motion = np.stack([geometry.motion([distinct[k] for k in frames]) for frames in per_window])
            if mirrored:
                targets, nearest, motion = mirrored_targets(targets), mirrored_nearest(nearest), mirrored_motion(motion)
            item["geometry"] = torch.from_numpy(targets)
            item["nearest"] = torch.from_numpy(nearest)
            item["motion"] = torch.from_numpy(motion)
        return item

    def _pixels(self, index: int, clip: Clip, indices: list[int]) -> np.ndarray:
        if not self.cache_frames:
            return preprocess_frames(read_frames(clip.video, indices), self.pixels)
        if index not in self._frames:
            self._frames[index] = np.stack([resize_frame(frame, self.pixels.image_size)
                                            for frame in read_frames(clip.video, indices)])
        return normalise(self._frames[index], self.pixels)


@functools.lru_cache(maxsize=4096)
def _clip_geometry(path: Path) -> ClipGeometry:
    return ClipGeometry(path)


class Collator:
    """Items to one batch: their frames concatenated (``window_frames`` pointing into them), every window's
    prompt right-padded (the model pools the last real token; a streaming prompt's segment ids padded with -1),
    labels and targets concatenated."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, batch: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
        prompts = [row for item in batch for row in item["input_ids"]]
        longest = max(row.shape[0] for row in prompts)
        ids = torch.full((len(prompts), longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), longest), dtype=torch.long)
        for n, row in enumerate(prompts):
            ids[n, :row.shape[0]] = row
            mask[n, :row.shape[0]] = 1
        offsets = np.cumsum([0] + [item["pixel_values"].shape[0] for item in batch[:-1]])
        out = {
            "pixel_values": torch.cat([item["pixel_values"] for item in batch]),
            "window_frames": torch.cat([item["window_frames"] + int(offset) for item, offset in zip(batch, offsets)]),
            "input_ids": ids,
            "attention_mask": mask,
        }
        if "segments" in batch[0]:
            segments = torch.full((len(prompts), longest), -1, dtype=torch.long)
            for n, row in enumerate(row for item in batch for row in item["segments"]):
                segments[n, :row.shape[0]] = row
            out["segments"] = segments
        for key in ("labels", "geometry", "nearest", "motion"):
            if key in batch[0]:
                out[key] = torch.cat([item[key] for item in batch])
        return out
