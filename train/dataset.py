"""Torch side of the data: window samples to model inputs, with the shared contract.

Frames are picked with ``monitor.window.pick_frames``, preprocessed with ``monitor.preprocess`` and the
prompt rendered with ``monitor.prompt``: the exact code the monitor serves with.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from monitor.preprocess import PixelSpec, normalise, preprocess_frames, resize_frame
from monitor.prompt import render_prompt
from monitor.video import read_frames
from monitor.window import WindowGeometry, pick_frames
from train.data import Clip
from train.geometry import ClipGeometry, mirrored_motion, mirrored_targets
from train.synth.generate import geometry_path
from train.windows import WindowSample


class PromptEncoder:
    """Question text -> token ids of the full prompt, cached (a run has one or a few questions)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, geometry: WindowGeometry, tokens_per_frame: int) -> None:
        self.tokenizer = tokenizer
        self.geometry = geometry
        self.tokens_per_frame = tokens_per_frame
        self._cache: dict[str, list[int]] = {}

    def __call__(self, question: str) -> list[int]:
        if question not in self._cache:
            text = render_prompt(question, self.geometry, self.tokens_per_frame)
            self._cache[question] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._cache[question]


def window_frames(clip: Clip, end: float, geometry: WindowGeometry) -> list[int]:
    """Indices of the frames of ``clip`` in the window ending at ``end``."""
    return pick_frames(clip.info.timestamps(), end, geometry)


def model_inputs(clip: Clip, end: float, prompt: PromptEncoder, pixels: PixelSpec) -> dict[str, torch.Tensor]:
    """The model's inputs for the window of ``clip`` ending at ``end``. Takes no label, by design."""
    frames = preprocess_frames(read_frames(clip.video, window_frames(clip, end, prompt.geometry)), pixels)
    return _inputs(clip, frames, prompt)


def _inputs(clip: Clip, pixel_values: np.ndarray, prompt: PromptEncoder) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.from_numpy(pixel_values),
        "input_ids": torch.tensor(prompt(clip.text), dtype=torch.long),
    }


class WindowDataset(Dataset):
    """Window samples as model inputs plus their labels, and with ``with_geometry`` the per-frame geometry
    and window motion targets of ``train.geometry`` (training-only, never a model input).

    With ``cache_frames`` each window's frames are decoded and resized once and kept (uint8) for the next
    epochs: a small model on a 2-core CPU otherwise spends a third of each step decoding video (measured on
    the demo recipe: 0.32 s of decoding per batch beside 0.47 s of compute). The cache lives in the process
    that reads the data, so with workers it needs them persistent (``train.fit`` sets that).

    With ``mirror`` that share of the windows read is mirrored left to right, drawn anew at each read (torch's
    generator, which the data loader seeds per worker from the run's seed)."""

    def __init__(
        self, samples: Sequence[WindowSample], prompt: PromptEncoder, pixels: PixelSpec, with_geometry: bool = False,
        cache_frames: bool = False, mirror: float = 0.0,
    ) -> None:
        self.samples = list(samples)
        self.prompt = prompt
        self.pixels = pixels
        self.with_geometry = with_geometry
        self.cache_frames = cache_frames
        self.mirror = mirror
        self._frames: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def cache_bytes(self) -> int:
        """What the frame cache holds once every window was read."""
        frames, size = self.prompt.geometry.num_frames, self.pixels.image_size
        return len(self.samples) * frames * size * size * 3 if self.cache_frames else 0

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.samples[index]
        indices = window_frames(sample.clip, sample.end, self.prompt.geometry)
        mirrored = self.mirror > 0 and torch.rand(()).item() < self.mirror
        pixels = self._pixels(index, sample.clip, indices)
        item = _inputs(sample.clip, np.ascontiguousarray(pixels[..., ::-1]) if mirrored else pixels, self.prompt)
        item["labels"] = torch.tensor(float(sample.label))
        if self.with_geometry:
            clip_geometry = _clip_geometry(geometry_path(sample.clip.video))
            targets, motion = clip_geometry.targets(indices), clip_geometry.motion(indices)
            if mirrored:
                targets, motion = mirrored_targets(targets), mirrored_motion(motion)
            item["geometry"] = torch.from_numpy(targets)
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
    """Stacks frames and right-pads prompts (the model pools the last real token)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, batch: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
        longest = max(item["input_ids"].shape[0] for item in batch)
        ids = torch.full((len(batch), longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, item in enumerate(batch):
            n = item["input_ids"].shape[0]
            ids[row, :n] = item["input_ids"]
            mask[row, :n] = 1
        out = {"pixel_values": torch.stack([item["pixel_values"] for item in batch]), "input_ids": ids, "attention_mask": mask}
        for key in ("labels", "geometry", "motion"):
            if key in batch[0]:
                out[key] = torch.stack([item[key] for item in batch])
        return out
