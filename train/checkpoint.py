"""Checkpoints: ``model.safetensors`` + ``crashwatch.json`` + ``tokenizer/``, never pickle.

``crashwatch.json`` holds the run configuration (backbone, head, window geometry, question), the backbone's
full architecture (so that evaluation and export rebuild it without the hub), the calibrated decision
threshold and the validation figures.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
from transformers import PreTrainedTokenizerBase

from crashwatch.contract.config import ConfigError
from crashwatch.contract.errors import CrashwatchError
from crashwatch.contract.prompt import EncodedPrompt, PromptEncoder
from crashwatch.contract.versioned import read_versioned_json
from crashwatch.train.config import RunConfig
from crashwatch.train.model import CrashRiskModel
from crashwatch.train.tokenizer import load_tokenizer

log = logging.getLogger(__name__)

FORMAT = "crashwatch-checkpoint"
VERSION = 1
WEIGHTS = "model.safetensors"
META = "crashwatch.json"
TOKENIZER = "tokenizer"


class CheckpointError(CrashwatchError):
    """A checkpoint folder that cannot be loaded; the message names the file."""


@dataclass
class Checkpoint:
    """A model ready to evaluate or export: a trained run folder's (``load_checkpoint``), or a pretrained
    model's own answer (``crashwatch.export.zeroshot.load_zero_shot``)."""

    model: CrashRiskModel
    tokenizer: PreTrainedTokenizerBase
    config: RunConfig
    threshold: float
    meta: dict[str, Any]
    # Token ids the model reads after the contract's prompt: a zero-shot model's answers' shared first tokens
    # (train.zeroshot); none for a trained model.
    prompt_suffix: tuple[int, ...] = ()

    def prompt(self) -> EncodedPrompt:
        """One window's input as token ids, ``<image>`` where the frames go (what a bundle stores), in the run's
        layout."""
        prompt = PromptEncoder(self.tokenizer, self.config.window, self.model.tokens_per_frame, self.config.layout)
        encoded = prompt.encode(self.config.question)
        if not self.prompt_suffix:
            return encoded
        return dataclasses.replace(encoded, ids=encoded.ids + list(self.prompt_suffix))

    def prompt_ids(self) -> list[int]:
        return self.prompt().ids


def save_checkpoint(
    out: Path, model: CrashRiskModel, tokenizer: PreTrainedTokenizerBase, config: RunConfig,
    threshold: float, validation: dict[str, Any] | None = None,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_model(model, str(out / WEIGHTS))
    tokenizer.save_pretrained(str(out / TOKENIZER))
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "config": config.to_dict(),
        "backbone_config": model.backbone.config.to_dict(),
        "tokens_per_frame": model.tokens_per_frame,
        "threshold": threshold,
        "validation": validation or {},
    }
    (out / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    log.info("checkpoint written to %s", out)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Rebuild the model from a checkpoint folder written by ``save_checkpoint``."""
    path = Path(path)
    meta_path = path / META
    meta = read_versioned_json(meta_path, FORMAT, VERSION, CheckpointError, "crashwatch train")
    try:
        config = RunConfig.from_dict(meta["config"], str(meta_path))
        model = CrashRiskModel.from_saved_config(meta["backbone_config"], config.head, config.image_size)
    except (KeyError, ConfigError, TypeError, ValueError) as err:
        raise CheckpointError(f"{meta_path}: inconsistent description ({err})") from None
    if meta.get("tokens_per_frame") != model.tokens_per_frame:
        raise CheckpointError(f"{meta_path}: tokens_per_frame is {meta.get('tokens_per_frame')!r}, but "
                              f"{config.image_size} px frames make {model.tokens_per_frame} on this architecture")
    model.apply_freezing(config.training.freeze, config.training.lora)
    weights = path / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing")
    try:
        missing, unexpected = safetensors.torch.load_model(model, str(weights), strict=True)
    except (RuntimeError, OSError, safetensors.SafetensorError) as err:
        raise CheckpointError(f"{weights}: does not match the architecture in {meta_path} ({err})") from None
    model.eval()
    tokenizer = load_tokenizer(str(path / TOKENIZER))
    return Checkpoint(model, tokenizer, config, float(meta["threshold"]), meta)
