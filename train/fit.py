"""``crashwatch train``: fine-tune with Hugging Face ``Trainer``.

``Trainer`` brings what a real run needs and what ``accelerate launch``/``torchrun`` expect: multi-GPU,
bf16, gradient accumulation, progress bars, per-epoch validation, checkpoints with resume, the best
checkpoint kept. After training, the decision threshold is calibrated on validation and stored with the
model in the run folder.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import EvalPrediction, Trainer, TrainingArguments, set_seed

from crashwatch.contract.dataset import read_split
from crashwatch.contract.prompt import PromptEncoder
from crashwatch.contract.risk import sigmoid
from crashwatch.contract.sidecars import GeometryError, geometry_path
from crashwatch.train.checkpoint import save_checkpoint
from crashwatch.train.config import RunConfig
from crashwatch.train.dataset import Collator, WindowDataset
from crashwatch.train.geometry import GeometrySupervised
from crashwatch.train.metrics import binary_metrics, calibrate_threshold
from crashwatch.train.model import CrashRiskModel
from crashwatch.train.tokenizer import load_tokenizer
from crashwatch.train.windows import clip_end_window, group_windows, training_windows

log = logging.getLogger(__name__)


def _use_bf16(setting: str | bool) -> bool:
    if setting == "auto":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(setting)


def _compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
    logits = np.asarray(prediction.predictions).reshape(-1)
    metrics = binary_metrics(sigmoid(logits), np.asarray(prediction.label_ids).reshape(-1), 0.5)
    # Trainer logs scalars only; an undefined AUROC (one class) is reported as NaN rather than hidden.
    return {k: (float("nan") if v is None else v) for k, v in metrics.items() if k in ("accuracy", "f1", "auroc", "ap")}


def train(
    config: RunConfig,
    data_dir: Path,
    out_dir: Path,
    epochs: float | None = None,
    resume: bool = False,
    skip_bad: bool = False,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Train, keep the best checkpoint, calibrate its threshold on validation and write the run folder."""
    recipe = config.training
    set_seed(recipe.seed)
    random.seed(recipe.seed)
    train_clips = read_split(data_dir, "train", skip_bad)
    val_clips = read_split(data_dir, "val", skip_bad)
    _warn_other_questions(config, train_clips + val_clips)

    tokenizer = load_tokenizer(config.backbone.tokenizer or config.backbone.pretrained)
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    model = CrashRiskModel.from_backbone_config(config.backbone, config.head, image_token_id, config.image_size)
    model.apply_freezing(recipe.freeze, recipe.lora)
    if recipe.gradient_checkpointing:
        # Trainer only enables it on PreTrainedModels; the backbone is one.
        model.backbone.gradient_checkpointing_enable()
    log.info("parameters: %s", model.parameter_counts())

    prompt = PromptEncoder(tokenizer, config.window, model.tokens_per_frame, config.layout)
    train_samples = [
        w for clip in train_clips
        for w in training_windows(clip, config.window, recipe.horizon_seconds, recipe.windows_per_clip)
    ]
    val_samples = [clip_end_window(clip) for clip in val_clips]
    log.info("training windows: %d (%d positive) in items of up to %d; validation clips: %d",
             len(train_samples), sum(s.label for s in train_samples), recipe.windows_per_item, len(val_samples))
    with_geometry = recipe.geometry_weight > 0
    if with_geometry:
        _check_geometry_files(train_clips)
    train_set = WindowDataset(group_windows(train_samples, recipe.windows_per_item), prompt, config.pixels,
                              with_geometry, recipe.cache_frames, recipe.mirror)
    val_set = WindowDataset([[sample] for sample in val_samples], prompt, config.pixels, cache_frames=recipe.cache_frames)
    if recipe.cache_frames:
        log.info("frame cache: %.1f GB once every window was read", (train_set.cache_bytes() + val_set.cache_bytes()) / 1e9)

    greater_is_better = recipe.best_metric not in ("eval_loss", "loss")  # accuracy, f1, auroc, ap: higher
    args = TrainingArguments(
        output_dir=str(out_dir / "checkpoints"),
        num_train_epochs=epochs if epochs is not None else recipe.epochs,
        max_steps=max_steps if max_steps is not None else -1,
        per_device_train_batch_size=recipe.batch_size,
        per_device_eval_batch_size=recipe.batch_size * recipe.windows_per_item,  # validation items are one window
        gradient_accumulation_steps=recipe.grad_accum,
        learning_rate=recipe.learning_rate,
        weight_decay=recipe.weight_decay,
        warmup_steps=recipe.warmup,
        eval_strategy="steps" if max_steps else "epoch",
        save_strategy="steps" if max_steps else "epoch",
        eval_steps=max_steps or None,
        save_steps=max_steps or None,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model=recipe.best_metric,
        greater_is_better=greater_is_better,
        logging_steps=recipe.logging_steps,
        bf16=_use_bf16(recipe.bf16),
        dataloader_pin_memory=torch.cuda.is_available(),
        dataloader_num_workers=recipe.num_workers,
        # a worker's frame cache must outlive the epoch
        dataloader_persistent_workers=recipe.cache_frames and recipe.num_workers > 0,
        remove_unused_columns=False,
        label_names=["labels"],
        report_to=[],
        seed=recipe.seed,
    )
    trainer = Trainer(
        model=GeometrySupervised(model, recipe.geometry_weight) if with_geometry else model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set,
        data_collator=Collator(tokenizer.pad_token_id),
        compute_metrics=_compute_metrics,
    )
    if max_steps != 0:  # 0: keep the model as built (pretrained or random), e.g. to size an export
        trainer.train(resume_from_checkpoint=True if resume else None)

    prediction = trainer.predict(val_set)
    probabilities = sigmoid(np.asarray(prediction.predictions).reshape(-1))
    labels = np.asarray([s.label for s in val_samples])
    threshold = calibrate_threshold(probabilities, labels)
    validation = binary_metrics(probabilities, labels, threshold)
    save_checkpoint(out_dir, model, tokenizer, config, threshold, validation)
    log.info("validation at threshold %.3f: %s", threshold,
             {k: validation[k] for k in ("accuracy", "f1", "auroc", "ap")})
    return validation


def _check_geometry_files(clips: list) -> None:
    """Fail before training, not hours in, when clips lack the geometry files the recipe asks for."""
    missing = [path for path in map(geometry_path, (c.video for c in clips)) if not path.is_file()]
    if missing:
        raise GeometryError(f"training.geometry_weight is set but {len(missing)} of {len(clips)} training clips have "
                            f"no geometry file beside them, e.g. {missing[0]} (`crashwatch synth` writes them; "
                            "for other data set training.geometry_weight: 0)")


def _warn_other_questions(config: RunConfig, clips: list) -> None:
    """Lines may carry their own question (the research format has one per line); the monitor serves only
    the configured one, so say when the data asks something else."""
    others = sum(1 for c in clips if c.text != config.question)
    if others:
        log.warning("%d line(s) ask a question other than the configured one (%r); they are trained with their "
                    "own text, but the monitor will ask the configured question", others, config.question)
