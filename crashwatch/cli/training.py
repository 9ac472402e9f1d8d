"""Commands for the people who train: ``train``, ``eval``, ``export``, ``synth``, ``dataset index`` and
``dataset import``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click

from crashwatch.cli.options import Finite, Fractions, existing_dir, fmt, skip_bad_option, split_option
from crashwatch.contract.bundle import PRECISIONS
from crashwatch.contract.prompt import DEFAULT_QUESTION, PromptLayout
from crashwatch.datasets.importers import KINDS as IMPORT_KINDS
from crashwatch.datasets.importers import VAL_FRACTION


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
              help="Run configuration YAML, or a shipped one by name: tiny, demo, smolvlm2-256m, smolvlm2-500m.")
@click.option("--data", "data_dir", required=True, type=existing_dir,
              help="Dataset folder: train/, val/ and train.jsonl, val.jsonl.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder: the final checkpoint, and checkpoints/ for resuming.")
@click.option("--epochs", type=Finite(min=0, min_open=True, max=10000), help="Override the config's number of epochs.")
@click.option("--max-steps", type=click.IntRange(min=0),
              help="Stop after this many optimiser steps (smoke runs); 0 writes the model untrained (sizing, benchmarks).")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in OUT/checkpoints.")
@click.option("--force", is_flag=True, help="Replace the run OUT holds (its checkpoints are deleted first).")
@click.option("--random-init", is_flag=True, help="Build the config's architecture with random weights (no hub).")
@click.option("--tokenizer", help="Tokenizer to use instead of the config's (hub id, folder, or 'builtin').")
@click.option("--layout", type=click.Choice([layout.value for layout in PromptLayout]),
              help="Prompt layout instead of the config's prompt.layout: smolvlm (SmolVLM2's own, the default) or "
                   "streaming (each frame computed once by the monitor; must be learnt in fine-tuning).")
@skip_bad_option
def train(config_path: Path, data_dir: Path, out_dir: Path, epochs: float | None, max_steps: int | None,
          resume: bool, force: bool, random_init: bool, tokenizer: str | None, layout: str | None,
          skip_bad: bool) -> None:
    """Fine-tune the crash-risk classifier on a dataset of clips."""
    if resume and force:
        raise click.UsageError("--resume continues the run in OUT and --force replaces it: give one")
    if resume and not (out_dir / "checkpoints").is_dir():
        raise click.UsageError(f"--resume: {out_dir / 'checkpoints'} does not exist; nothing to resume")
    replace = not resume and out_dir.is_dir() and any(out_dir.iterdir())
    if replace and not force:
        raise click.UsageError(f"--out {out_dir}: holds a run already (hours of training, perhaps); --resume "
                               "continues it, --force replaces it")
    # The config is read (torch-free, quick) before anything is deleted or the training libraries load.
    from crashwatch.train.config import load_config

    config = load_config(config_path)
    if random_init:
        if not config.backbone.architecture:
            raise click.UsageError(f"{config_path}: --random-init needs an `architecture` block in backbone")
        config.backbone.random_init = True
    if tokenizer:
        config.backbone.tokenizer = tokenizer
    if layout:
        config.prompt.layout = layout
    if replace:
        shutil.rmtree(out_dir)  # a new run's checkpoints must not mix with the old run's
    from crashwatch.train.fit import train as run_training

    metrics = run_training(config, data_dir, out_dir, epochs=epochs, resume=resume, skip_bad=skip_bad,
                           max_steps=max_steps)
    click.echo(f"run written to {out_dir}; validation: accuracy {metrics['accuracy']:.3f}, "
               f"F1 {metrics['f1']:.3f}, AUROC {fmt(metrics['auroc'])}, threshold {metrics['threshold']:.3f}")


@click.command("eval")
@click.option("--checkpoint", "checkpoint_dir", required=True, type=existing_dir, help="Run folder from `crashwatch train`.")
@click.option("--data", "data_dir", required=True, type=existing_dir, help="Dataset folder.")
@split_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where predictions.csv, metrics.json and pr_curve.png go.")
@skip_bad_option
def evaluate(checkpoint_dir: Path, data_dir: Path, split: str, out_dir: Path, skip_bad: bool) -> None:
    """Score every clip of a split and write predictions, metrics and a PR curve."""
    from crashwatch.train.evaluate import evaluate as run_eval

    m = run_eval(checkpoint_dir, data_dir, split, out_dir, skip_bad=skip_bad)
    cm = m["confusion_matrix"]["matrix"]
    click.echo(f"{split}: {m['count']} clips, accuracy {m['accuracy']:.3f}, F1 {m['f1']:.3f}, "
               f"AUROC {fmt(m['auroc'])}, AP {fmt(m['ap'])}, confusion [[TN FP] [FN TP]] = {cm}")
    for kind, k in m.get("by_kind", {}).items():
        click.echo(f"  {kind:<15} {k['clips']:>5} clips (label {k['label']}): mean probability {k['mean_probability']:.3f}, "
                   f"{k['at_or_above_threshold']:.0%} at or above the threshold, AUROC against the other label "
                   f"{fmt(k['auroc_against_other_label'])}")
    click.echo(f"wrote {out_dir / 'predictions.csv'}, {out_dir / 'metrics.json'}, {out_dir / 'pr_curve.png'}")


def _answers(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(a.strip() for a in value.split(","))


@click.command("export")
@click.option("--checkpoint", "checkpoint_dir", type=existing_dir, help="Run folder from `crashwatch train`.")
@click.option("--zero-shot", "zero_shot", metavar="MODEL",
              help="Instead of a checkpoint: a SmolVLM2 hub id or local folder whose own answer to the question is "
                   "the risk (its logit of the first of --answers minus the second's); no training.")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="With --zero-shot: the run configuration (or a shipped one by name) whose window, frame size, "
                   "pixels and question the bundle uses (e.g. the one a fine-tune of MODEL trains with); its "
                   "backbone block is not used.")
@click.option("--answers", callback=_answers,
              help="With --zero-shot: the positive and the negative answer, each one token of MODEL's tokenizer "
                   "as the assistant's reply starts [default: Yes,No].")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Bundle folder to write.")
@click.option("--precision", default="fp32", show_default=True, type=click.Choice(PRECISIONS),
              help="fp32: reference; fp16: for CUDA/TensorRT; int8: dynamic quantization for CPUs.")
@click.option("--video", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A real clip whose last window checks the export against PyTorch (e.g. one from your test split).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--openvino", is_flag=True,
              help="Also write OpenVINO graphs (fp16 weights, run at bf16 where the CPU has bf16 units), checked "
                   "against PyTorch too; `--runtime auto` then times them against onnxruntime's, graph by graph "
                   "(needs crashwatch[openvino]).")
def export_command(checkpoint_dir: Path | None, zero_shot: str | None, config_path: Path | None,
                   answers: tuple[str, ...] | None, out_dir: Path, precision: str, video: Path, force: bool,
                   openvino: bool) -> None:
    """Export a checkpoint, or a pretrained model's zero-shot answer, to an ONNX bundle the torch-free monitor
    runs."""
    from crashwatch.export.exporter import export_bundle, export_zero_shot
    from crashwatch.export.zeroshot import DEFAULT_ANSWERS

    if (checkpoint_dir is None) == (zero_shot is None):
        raise click.UsageError("give either --checkpoint RUN or --zero-shot MODEL")
    if zero_shot is None:
        if config_path is not None or answers is not None:
            raise click.UsageError("--config and --answers go with --zero-shot; a checkpoint holds its own configuration")
        manifest = export_bundle(checkpoint_dir, out_dir, precision, video, force=force, openvino=openvino)
        what = precision
    else:
        if config_path is None:
            raise click.UsageError("--zero-shot needs --config: the run configuration whose window, frame size and "
                                   "question the bundle uses (e.g. configs/smolvlm2-500m.yaml)")
        answers = answers or DEFAULT_ANSWERS
        manifest = export_zero_shot(zero_shot, config_path, out_dir, precision, video, answers, force=force,
                                    openvino=openvino)
        what = f"{precision}, zero-shot {zero_shot} answering {answers[0]}/{answers[1]}"
    size = sum(f["bytes"] for f in manifest["files"].values())
    click.echo(f"wrote {out_dir} ({what}{' + OpenVINO' if openvino else ''}, {size / 1e6:.1f} MB)")
    for name, parity in (("onnxruntime", manifest["parity"]), ("OpenVINO", (manifest.get("openvino") or {}).get("parity"))):
        if parity is not None:
            click.echo(f"parity on {video.name}, {name} at {parity['inference_precision']}: embedding cosine "
                       f"{parity['embedding_cosine']:.6f}, probability |diff| {parity['probability_abs_diff']:.2e}")


@click.command("synth")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Dataset folder to write (train/ val/ test/ + JSONL, and drives/ with --drives).")
@click.option("--clips", type=click.IntRange(min=0), default=200, show_default=True, help="Number of clips (split 70/15/15).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed: the same seed writes the same data.")
@click.option("--drives", type=click.IntRange(min=0), default=0, show_default=True,
              help="Long continuous drives for replay-eval, in OUT/drives.")
@click.option("--drive-minutes", type=Finite(min=0, min_open=True, max=600), default=3.0, show_default=True,
              help="Length of each drive.")
@click.option("--demo-drive", is_flag=True, help="Write only the demo's drive (drive.mp4 + drive.json) into OUT.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes rendering clips (default: one per CPU); the files are the same whatever the number.")
def synth_command(out_dir: Path, clips: int, seed: int, drives: int, drive_minutes: float, demo_drive: bool,
                  workers: int | None) -> None:
    """Render labelled dashcam scenarios (collisions, near misses, normal driving) with exact ground truth."""
    from crashwatch.datasets.synth.generate import generate, write_demo_drive

    if demo_drive:
        truth = write_demo_drive(out_dir, seed)
        click.echo(f"wrote {out_dir / 'drive.mp4'}: {truth['duration_s']:.0f} s, collision at {truth['event_time']:.1f} s")
        return
    generate(out_dir, clips, seed, drives, drive_minutes, workers=workers or os.cpu_count() or 1)
    click.echo(f"wrote {out_dir}" + (f" and {out_dir / 'drives'}" if drives else ""))


@click.group()
def dataset() -> None:
    """Build and check datasets in the research format."""


@dataset.command("index")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Dataset folder to write: train/ val/ test/ and their .jsonl files.")
@click.option("--split", "fractions", type=Fractions(), default="0.7,0.15,0.15", show_default=True,
              help="Fractions for train,val,test (stratified by label).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the split.")
@click.option("--question", default=None, help="Question text for every line (default: the research question).")
@click.option("--link", is_flag=True, help="Hard-link videos instead of copying them.")
@click.option("--skip-bad", is_flag=True, help="Leave out bad rows and videos with a warning instead of stopping.")
def dataset_index(source: Path, out_dir: Path, fractions: tuple[float, float, float], seed: int,
                  question: str | None, link: bool,
                  skip_bad: bool) -> None:
    """Write the JSONL files from labelled videos.

    SOURCE is a folder with positive/ and negative/ subfolders, or a CSV with columns video (or file),
    label and optionally event_time (or event_time_s), paths relative to the CSV.
    """
    from crashwatch.datasets.index import index_dataset

    counts = index_dataset(source, out_dir, question or DEFAULT_QUESTION, fractions, seed, link, skip_bad)
    click.echo(f"wrote {out_dir}: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + " clips")


@dataset.command("import")
@click.argument("kind", type=click.Choice(IMPORT_KINDS))
@click.argument("source", type=existing_dir)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Dataset folder to write: train/ val/ test/ and their .jsonl files, and import_report.json.")
@click.option("--split", "fractions", type=Fractions(), default=None,
              help="Re-split every clip by these fractions (stratified by label) [default: the set's own split "
                   "(DAD training/testing, CCD train.txt/test.txt, DoTA train/val as train/test), validation "
                   "drawn from its training part; Nexar, which has none, 0.7,0.15,0.15].")
@click.option("--val-fraction", type=Finite(min=0, max=1, max_open=True), default=VAL_FRACTION, show_default=True,
              help="With the set's own split: the share of its training clips that become validation.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the split.")
@click.option("--question", default=None, help="Question text for every line (default: the research question).")
@click.option("--link", is_flag=True, help="Hard-link videos instead of copying them.")
def dataset_import(kind: str, source: Path, out_dir: Path, fractions: tuple[float, float, float] | None,
                   val_fraction: float, seed: int, question: str | None, link: bool) -> None:
    """Write the research format from a public data set in its own published layout.

    KIND is nexar (Kaggle: train.csv, train/NNNNN.mp4), dad (videos/{training,testing}/{positive,negative}/),
    ccd (videos/Crash-1500.txt, videos/Crash-1500/, videos/Normal/) or dota (dataset/annotations/*.json,
    frames/VIDEO/images/). Every file or line that cannot be used is listed with the reason.
    """
    from crashwatch.datasets.importers import import_dataset

    report = import_dataset(kind, source, out_dir, question or DEFAULT_QUESTION, fractions, val_fraction, seed, link)
    click.echo(report.summary())
    if report.problems:
        click.echo(f"not used ({len(report.problems)}):")
        for problem in report.problems:
            click.echo(f"  {problem}")


@dataset.command("check")
@click.argument("data_dir", metavar="DATA", type=existing_dir)
def dataset_check(data_dir: Path) -> None:
    """Check every line and video of DATA's splits as `crashwatch train` does before it starts, and report each
    split's clips by class; exit 1 naming every problem."""
    from crashwatch.contract.dataset import SPLITS, DatasetError, read_split

    problems = []
    for split in SPLITS:
        if not (data_dir / f"{split}.jsonl").is_file():
            if split in ("train", "val"):
                problems.append(f"{data_dir / split}.jsonl: missing (crashwatch train needs train and val)")
            continue
        try:
            clips = read_split(data_dir, split)
        except DatasetError as err:
            problems.append(str(err))
            continue
        positive = sum(clip.label for clip in clips)
        click.echo(f"{split}: {len(clips)} clips, {positive} positive, {len(clips) - positive} negative"
                   + ("" if 0 < positive < len(clips) else " (one class only: AUROC and calibration need both)"))
    if problems:
        raise click.ClickException("\n".join(problems))
    click.echo(f"{data_dir}: every line and video is usable")


COMMANDS = (train, evaluate, export_command, synth_command, dataset)
