"""`crashwatch train`, `eval` and `dataset index` end to end, as a user runs them."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from crashwatch.train.checkpoint import CheckpointError, load_checkpoint
from tests.support.cli import crashwatch
from tests.support.media import write_video
from tests.support.shared import CLIPS, TINY_CONFIG, need_shared


def _state(run) -> dict:
    steps = sorted((run / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return json.loads((steps[-1] / "trainer_state.json").read_text())


def test_train_resume_eval_on_written_clips(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    out = crashwatch("train", "--config", str(TINY_CONFIG), "--data", str(tiny_dataset), "--out", str(run))
    assert "run written to" in out.stdout
    meta = json.loads((run / "crashwatch.json").read_text())
    assert meta["format"] == "crashwatch-checkpoint" and 0.0 <= meta["threshold"] <= 1.0
    assert meta["config"]["question"].startswith("Is a vehicle collision")
    assert meta["validation"]["count"] == 4
    assert (run / "model.safetensors").is_file() and (run / "tokenizer").is_dir()
    assert not list(run.glob("*.bin")) and not list(run.glob("*.pt"))  # the deliverable is never pickle
    first = _state(run)["global_step"]
    assert first == 3  # 6 clips, batch 2, 1 epoch

    crashwatch("train", "--config", str(TINY_CONFIG), "--data", str(tiny_dataset), "--out", str(run),
               "--resume", "--epochs", "2")
    state = _state(run)
    assert state["global_step"] == 2 * first
    assert [h["step"] for h in state["log_history"] if "loss" in h][:first] == list(range(1, first + 1))

    report = tmp_path / "eval"
    out = crashwatch("eval", "--checkpoint", str(run), "--data", str(tiny_dataset), "--out", str(report))
    assert "test: 4 clips" in out.stdout
    rows = list(csv.DictReader((report / "predictions.csv").open()))
    assert [r["file_name"] for r in rows] == [f"test_{i}.mp4" for i in range(4)]
    assert all(r["risk"] in ("0", "1") and 0 <= float(r["probability"]) <= 1 for r in rows)
    threshold = json.loads((run / "crashwatch.json").read_text())["threshold"]
    assert all(int(r["risk"]) == int(float(r["probability"]) >= threshold) for r in rows)
    metrics = json.loads((report / "metrics.json").read_text())
    assert {"accuracy", "f1", "auroc", "ap", "confusion_matrix"} <= set(metrics)
    assert sum(map(sum, metrics["confusion_matrix"]["matrix"])) == 4
    assert (report / "pr_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The stored model is the trained one: reloading it scores the test clips as eval did.
    loaded = load_checkpoint(run)
    assert loaded.threshold == threshold
    from crashwatch.contract.dataset import read_split
    from crashwatch.contract.prompt import PromptEncoder
    from crashwatch.train.dataset import model_inputs
    from crashwatch.train.windows import clip_end_window

    clip = read_split(tiny_dataset, "test")[0]
    inputs = model_inputs(clip, clip_end_window(clip).end, PromptEncoder(loaded.tokenizer, loaded.config.window,
                                                                        loaded.model.tokens_per_frame),
                          loaded.config.pixels)
    with torch.no_grad():
        logit = loaded.model(inputs["pixel_values"][None], inputs["input_ids"][None],
                             torch.ones_like(inputs["input_ids"][None])).logits
    assert float(torch.sigmoid(logit)) == pytest.approx(float(rows[0]["probability"]), abs=1e-5)


def test_user_mistakes_are_one_clear_line_not_a_traceback(tiny_dataset, tmp_path):
    (tiny_dataset / "val.jsonl").write_text('{"video": "val_0.mp4", "text": "q", "label": 3}\n')
    cases = [
        (["train", "--config", str(tmp_path / "none.yaml"), "--data", str(tiny_dataset), "--out", str(tmp_path / "r")],
         "none.yaml: no such file, nor a configuration shipped with crashwatch"),
        (["train", "--config", str(TINY_CONFIG), "--data", str(tiny_dataset), "--out", str(tmp_path / "r")],
         "val.jsonl:1: 'label' must be 0 or 1"),
        (["train", "--config", str(TINY_CONFIG), "--data", str(tiny_dataset), "--out", str(tmp_path / "r2"), "--resume"],
         "nothing to resume"),
        (["eval", "--checkpoint", str(tiny_dataset), "--data", str(tiny_dataset), "--out", str(tmp_path / "e")],
         "crashwatch.json: missing; is"),
    ]
    for args, message in cases:
        result = crashwatch(*args, check=False)
        assert result.returncode != 0, args
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_a_folder_without_a_tokenizer_is_named(tiny_dataset, tmp_path):
    result = crashwatch("train", "--config", str(TINY_CONFIG), "--data", str(tiny_dataset), "--out", str(tmp_path / "r"),
                        "--tokenizer", str(tmp_path), "--max-steps", "0", check=False)
    assert result.returncode != 0
    assert f"tokenizer '{tmp_path}': cannot load a tokenizer there" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r" / "crashwatch.json").exists()


def test_corrupt_checkpoint_is_named(tmp_path):
    (tmp_path / "crashwatch.json").write_text('{"format": "crashwatch-checkpoint", "version": 99}')
    with pytest.raises(CheckpointError, match="format version 99; this crashwatch reads version 1 .upgrade"):
        load_checkpoint(tmp_path)


def test_dataset_index_from_folders_and_csv(tmp_path):
    source = tmp_path / "labelled"
    for i in range(8):
        write_video(source / "positive" / f"p{i}.mp4", 8)
        write_video(source / "negative" / f"n{i}.mp4", 8)
    out = tmp_path / "ds"
    result = crashwatch("dataset", "index", str(source), "--out", str(out), "--split", "0.5,0.25,0.25", "--seed", "3")
    assert "train 8, val 4, test 4" in result.stdout
    from crashwatch.contract.dataset import read_split

    for split in ("train", "val", "test"):
        clips = read_split(out, split)
        assert {c.label for c in clips} == {0, 1}  # stratified
    names = [c.name for s in ("train", "val", "test") for c in read_split(out, s)]
    assert sorted(names) == sorted([f"p{i}.mp4" for i in range(8)] + [f"n{i}.mp4" for i in range(8)])

    table = tmp_path / "labels.csv"
    table.write_text("video,label,event_time\nlabelled/positive/p0.mp4,1,0.4\nlabelled/negative/n0.mp4,0,\n"
                     "labelled/negative/n1.mp4,maybe,\n")
    bad = crashwatch("dataset", "index", str(table), "--out", str(tmp_path / "ds2"), check=False)
    assert bad.returncode != 0 and "labels.csv:4: label must be 0 or 1" in bad.stderr
    crashwatch("dataset", "index", str(table), "--out", str(tmp_path / "ds2"), "--skip-bad", "--split", "1,0,0")
    lines = [json.loads(x) for x in (tmp_path / "ds2" / "train.jsonl").read_text().splitlines()]
    assert sorted((x["video"], x["label"], x.get("event_time")) for x in lines) == [("n0.mp4", 0, None), ("p0.mp4", 1, 0.4)]


def test_tiny_training_on_real_dashcam_clips(tmp_path):
    """End to end on real clips: a dataset indexed from ../shared/clips, trained and evaluated."""
    manifest = need_shared(CLIPS / "MANIFEST.csv")
    data = tmp_path / "real"
    indexed = crashwatch("dataset", "index", str(manifest), "--out", str(data), "--link", "--skip-bad",
                         "--split", "0.7,0.15,0.15")
    assert "train 16, val 3, test 3" in indexed.stdout  # 22 labelled clips; the unlabelled near-miss is left out
    assert "MANIFEST.csv:21: label must be 0 or 1" in indexed.stderr
    run = tmp_path / "run"
    crashwatch("train", "--config", str(TINY_CONFIG), "--data", str(data), "--out", str(run))
    out = crashwatch("eval", "--checkpoint", str(run), "--data", str(data), "--out", str(tmp_path / "eval"))
    assert "test: 3 clips" in out.stdout


def test_a_run_is_replaced_only_when_asked(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    args = ("train", "--config", str(TINY_CONFIG), "--data", str(tiny_dataset), "--out", str(run), "--max-steps", "1")
    crashwatch(*args)
    (run / "checkpoints" / "checkpoint-999").mkdir()  # stands for a longer run's checkpoint
    made = (run / "crashwatch.json").stat().st_mtime_ns
    refused = crashwatch(*args, check=False)
    assert refused.returncode == 2 and "holds a run already" in refused.stderr and "--force" in refused.stderr
    assert (run / "crashwatch.json").stat().st_mtime_ns == made
    both = crashwatch(*args, "--force", "--resume", check=False)
    assert both.returncode == 2 and "give one" in both.stderr
    typo = crashwatch("train", "--config", "tinny", "--data", str(tiny_dataset), "--out", str(run), "--force",
                      check=False)
    assert typo.returncode == 1 and "tinny: no such file" in typo.stderr
    assert (run / "crashwatch.json").stat().st_mtime_ns == made  # a bad config deletes nothing
    crashwatch(*args, "--force")
    assert not (run / "checkpoints" / "checkpoint-999").exists() and _state(run)["global_step"] == 1
