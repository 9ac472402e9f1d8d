"""``crashwatch eval``: score a split clip by clip, as the research ``custom_infer.py`` did, and report.

Writes ``predictions.csv`` (the research columns ``file_name,risk`` plus ``probability`` and ``label``),
``metrics.json`` (accuracy and F1 of the yes/no answer at the calibrated threshold, AUROC, AP, confusion
matrix) and ``pr_curve.png``.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from crashwatch.contract.dataset import read_split
from crashwatch.contract.prompt import PromptEncoder
from crashwatch.contract.risk import sigmoid
from crashwatch.contract.sidecars import kinds_of, read_truth
from crashwatch.train.checkpoint import load_checkpoint
from crashwatch.train.dataset import Collator, WindowDataset
from crashwatch.train.metrics import binary_metrics, by_kind
from crashwatch.train.windows import clip_end_window

log = logging.getLogger(__name__)


@torch.no_grad()
def evaluate(checkpoint_dir: Path, data_dir: Path, split: str, out_dir: Path, skip_bad: bool = False,
             batch_size: int = 2) -> dict[str, Any]:
    run = load_checkpoint(checkpoint_dir)
    clips = read_split(data_dir, split, skip_bad)
    prompt = PromptEncoder(run.tokenizer, run.config.window, run.model.tokens_per_frame, run.config.layout)
    samples = [clip_end_window(clip) for clip in clips]
    loader = DataLoader(WindowDataset([[sample] for sample in samples], prompt, run.config.pixels), batch_size=batch_size,
                        collate_fn=Collator(run.tokenizer.pad_token_id))
    logits = []
    for batch in tqdm(loader, desc=f"eval {split}", unit="batch"):
        batch.pop("labels")
        logits.append(run.model(**batch).logits.float().numpy())
    probabilities = sigmoid(np.concatenate(logits))
    labels = np.asarray([s.label for s in samples])
    metrics = binary_metrics(probabilities, labels, run.threshold)
    kinds = kinds_of(read_truth(data_dir, split), [clip.name for clip in clips])
    if kinds:
        metrics["by_kind"] = by_kind(probabilities, labels, kinds, run.threshold)
    metrics.update({"split": split, "checkpoint": str(checkpoint_dir), "data": str(data_dir)})

    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "predictions.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "risk", "probability", "label"])
        for clip, p in zip(clips, probabilities):
            # Every digit: rounded, a probability within 1e-6 of the threshold could read as on the wrong side.
            writer.writerow([clip.name, int(p >= run.threshold), repr(float(p)), clip.label])
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    _plot_pr_curve(probabilities, labels, run.threshold, out_dir / "pr_curve.png")
    log.info("wrote %s, %s and %s", out_dir / "predictions.csv", out_dir / "metrics.json", out_dir / "pr_curve.png")
    return metrics


def _plot_pr_curve(probabilities: np.ndarray, labels: np.ndarray, threshold: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    if labels.sum() > 0:
        precision, recall, thresholds = precision_recall_curve(labels, probabilities)
        ax.plot(recall, precision, label="PR curve")
        at = int(np.searchsorted(thresholds, threshold).clip(0, len(thresholds) - 1)) if len(thresholds) else 0
        ax.scatter([recall[at]], [precision[at]], color="red", zorder=3, label=f"threshold {threshold:.3f}")
        ax.legend(loc="lower left")
    else:
        ax.text(0.5, 0.5, "no positive clips: PR curve undefined", ha="center", va="center")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"precision-recall, {labels.size} clips, {int(labels.sum())} positive")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
