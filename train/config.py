"""Run configuration: one YAML file names the backbone, window geometry, question, head and training recipe.

The same values are stored beside every checkpoint (``crashwatch.json``) so that evaluation and export never
need the YAML again, nor the hub.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NoReturn

from crashwatch.contract.config import Fail, build, find_config, read_yaml
from crashwatch.contract.preprocess import PixelSpec
from crashwatch.contract.prompt import DEFAULT_QUESTION, PromptLayout
from crashwatch.contract.window import WindowSpec

FREEZABLE = ("vision", "connector", "text")


@dataclass
class BackboneConfig:
    """Where the SmolVLM2 backbone comes from.

    ``pretrained`` is a hub id or a local folder for ``from_pretrained``. With ``random_init`` (or no
    ``pretrained``) the backbone is built from ``architecture`` (``SmolVLMConfig`` arguments) with random
    weights. ``tokenizer`` defaults to the pretrained checkpoint's own; ``builtin`` is the project's small
    byte-level tokenizer with SmolVLM's special tokens, for random-init models where no checkpoint exists.
    """

    pretrained: str | None = None
    random_init: bool = False
    architecture: dict[str, Any] = field(default_factory=dict)
    tokenizer: str | None = None
    attn_implementation: str = "sdpa"


@dataclass
class HeadConfig:
    """MLP on the last-token hidden state (research default: Linear(H,256), ReLU, Dropout 0.3, Linear(256,1))."""

    hidden: int = 256
    dropout: float = 0.3


@dataclass
class LoraConfig:
    """LoRA adapters on the text model's projections (peft)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclass
class PromptConfig:
    """How a window's prompt is laid out (``crashwatch.contract.prompt``): ``smolvlm``, the pretrained model's own chat
    layout, or ``streaming``, whose frames the monitor computes once each (docs/training.md)."""

    layout: str = PromptLayout.SMOLVLM.value


@dataclass
class TrainingConfig:
    """The recipe. ``freeze`` lists the parts kept fixed (research default: the text model)."""

    epochs: float = 3
    batch_size: int = 1
    grad_accum: int = 1
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    warmup: float = 0.0  # optimiser steps (a whole number), or a fraction of all steps below 1
    seed: int = 42
    freeze: list[str] = field(default_factory=lambda: ["text"])
    lora: LoraConfig | None = None
    bf16: str | bool = "auto"
    gradient_checkpointing: bool = False
    num_workers: int = 0
    # Keep every window's decoded, resized frames in memory (uint8) after the first epoch: for small models
    # whose steps are cheaper than decoding video. Costs windows x frames x size^2 x 3 bytes (logged).
    cache_frames: bool = False
    horizon_seconds: float = 2.0
    windows_per_clip: int = 1
    # Windows of one clip read as one training item (consecutive on the stride grid, see train.windows): the
    # frames they share are decoded and encoded once. batch_size counts items.
    windows_per_item: int = 1
    best_metric: str = "eval_loss"
    logging_steps: int = 10
    # > 0: add the per-frame geometry loss of train.geometry (generated data only), for random-init vision
    geometry_weight: float = 0.0
    # Share of training windows seen mirrored left to right (geometry targets mirrored with them): a generated
    # world mirrored is as physical as the original, so it doubles the scenes a small model learns from.
    mirror: float = 0.0


@dataclass
class RunConfig:
    """Everything a run needs besides the data."""

    backbone: BackboneConfig
    window_seconds: float = 2.0
    num_frames: int = 8
    image_size: int = 512
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    question: str = DEFAULT_QUESTION
    prompt: PromptConfig = field(default_factory=PromptConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    @property
    def window(self) -> WindowSpec:
        return WindowSpec(self.window_seconds, self.num_frames)

    @property
    def layout(self) -> PromptLayout:
        return PromptLayout(self.prompt.layout)

    @property
    def pixels(self) -> PixelSpec:
        return PixelSpec(self.image_size, tuple(self.image_mean), tuple(self.image_std))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<config>") -> "RunConfig":
        return build(cls, data, source, _check)


def _check(obj: Any, fail: Fail) -> None:
    """The values a run config may hold, object by object (``crashwatch.contract.config.build`` calls it)."""
    if isinstance(obj, RunConfig):
        if not isinstance(obj.window_seconds, (int, float)) or obj.window_seconds <= 0:
            fail("window_seconds", f"must be a positive number, got {obj.window_seconds!r}")
        if not isinstance(obj.num_frames, int) or obj.num_frames < 1:
            fail("num_frames", f"must be a positive integer, got {obj.num_frames!r}")
        if not isinstance(obj.image_size, int) or obj.image_size < 1:
            fail("image_size", f"must be a positive integer, got {obj.image_size!r}")
        for key in ("image_mean", "image_std"):
            value = getattr(obj, key)
            if not (isinstance(value, (list, tuple)) and len(value) == 3):
                fail(key, f"must be three numbers (RGB), got {value!r}")
            setattr(obj, key, tuple(float(v) for v in value))
        if not isinstance(obj.question, str) or not obj.question.strip():
            fail("question", "must be a non-empty string")
        if obj.backbone.pretrained is None and not obj.backbone.random_init:
            fail("backbone", "name a `pretrained` hub id or folder, or set `random_init: true` with an `architecture`")
        _check_frame_size(obj, fail)
    elif isinstance(obj, PromptConfig):
        if obj.layout not in {layout.value for layout in PromptLayout}:
            fail("layout", f"unknown prompt layout {obj.layout!r}; choose from "
                 f"{', '.join(layout.value for layout in PromptLayout)}")
    elif isinstance(obj, TrainingConfig):
        bad = sorted(set(obj.freeze) - set(FREEZABLE))
        if bad:
            fail("freeze", f"unknown part(s) {bad}; choose from {list(FREEZABLE)}")
        if obj.bf16 not in ("auto", True, False):
            fail("bf16", f"must be auto, true or false, got {obj.bf16!r}")
        if obj.horizon_seconds <= 0:
            fail("horizon_seconds", "must be positive")
        if obj.windows_per_clip < 1:
            fail("windows_per_clip", "must be at least 1")
        if obj.windows_per_item < 1:
            fail("windows_per_item", "must be at least 1")
        if not isinstance(obj.geometry_weight, (int, float)) or obj.geometry_weight < 0:
            fail("geometry_weight", f"must be a number >= 0, got {obj.geometry_weight!r}")
        if not isinstance(obj.mirror, (int, float)) or not 0.0 <= obj.mirror <= 1.0:
            fail("mirror", f"must be a share between 0 and 1, got {obj.mirror!r}")


def frame_size_problem(image_size: int, tower_size: Any, patch_size: Any, scale_factor: Any, where: str) -> str | None:
    """Why frames of ``image_size`` px cannot run on a vision tower, or None; values not known (None) are not
    judged. Frames may be smaller than the tower: SmolVLM maps a smaller patch grid onto buckets of the tower's
    position table, so a pretrained tower keeps its weights. ``where`` says where the tower's values come from."""
    if isinstance(patch_size, int) and isinstance(scale_factor, int) and image_size % (patch_size * scale_factor):
        return (f"{image_size} px is not a multiple of vision_config.patch_size x scale_factor = {patch_size} x "
                f"{scale_factor} in {where}: the connector's pixel shuffle folds the patch grid by {scale_factor} "
                "on each side")
    if isinstance(tower_size, int) and image_size > tower_size:
        return (f"{image_size} px frames are larger than the vision tower's {tower_size} px (vision_config.image_size "
                f"in {where}): its position table has no place for the extra patches")
    return None


def _check_frame_size(config: RunConfig, fail: Callable[[str, str], NoReturn]) -> None:
    """The frame size against what the file tells of the vision tower: the ``architecture`` block (what a
    random-init run builds and what the shipped configs say of the hub model), and for a pretrained local
    folder its ``config.json``. A hub id's tower is checked when the model is built (``crashwatch.train.model``)."""
    arch = config.backbone.architecture
    vision = arch.get("vision_config") or {}
    problem = frame_size_problem(config.image_size, vision.get("image_size"), vision.get("patch_size"),
                                 arch.get("scale_factor"), "backbone.architecture")
    folder_config = Path(config.backbone.pretrained or "") / "config.json"
    if problem is None and not config.backbone.random_init and config.backbone.pretrained and folder_config.is_file():
        try:
            real = json.loads(folder_config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            fail("backbone.pretrained", f"{folder_config}: unreadable ({err})")
        vision = real.get("vision_config") or {}
        problem = frame_size_problem(config.image_size, vision.get("image_size"), vision.get("patch_size"),
                                     real.get("scale_factor"), str(folder_config))
    if problem:
        fail("image_size", problem)


def load_config(path: str | Path) -> RunConfig:
    """Read a run configuration YAML file. Raises ConfigError naming the file on any problem."""
    path = find_config(path)
    return RunConfig.from_dict(read_yaml(path) or {}, str(path))
