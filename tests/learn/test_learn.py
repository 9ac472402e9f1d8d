"""Learning from verdicts: the head found and rewritten in real bundles' graphs, a fit that moves what the
verdicts say, and an update end to end on the shipped demo model, accepted, run from the store, rolled back,
and refused when it would not help."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from crashwatch.contract.dataset import read_split
from crashwatch.contract.risk import sigmoid
from crashwatch.contract.video import probe_clip, read_frames
from crashwatch.learn.features import FeatureReader
from crashwatch.learn.fit import FitSettings, fit_head
from crashwatch.learn.graphs import STATE_OUTPUT, read_head, with_head, with_state
from crashwatch.monitor.engines.model import RiskModel
from tests.support.cli import crashwatch

DEMO = Path(__file__).resolve().parents[2] / "crashwatch" / "assets" / "demo"
EVENT_TIME = json.loads((DEMO / "drive.json").read_text())["event_time"]


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(outputs, feed)


def _feed(hidden: int, rows: int = 3, length: int = 12) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"inputs_embeds": rng.standard_normal((rows, length, hidden)).astype(np.float32),
            "attention_mask": np.ones((rows, length), np.int64)}


@pytest.mark.parametrize("which", ["demo int8", "tiny fp32"])
def test_the_head_is_found_and_rewritten_exactly(which, tiny_bundle):
    """The state output leaves the graph's logits as they were; a head written in gives, from the graph, what
    it computes in numpy on that state (an int8 head dequantized within the int8 rounding)."""
    folder = DEMO / "bundle" if which == "demo int8" else tiny_bundle
    model = onnx.load(str(folder / "head.onnx"))
    _, head = read_head(model)
    feed = _feed(head.w1.shape[0])
    (before,) = _run(model, feed, ["logits"])
    logits, states = _run(with_state(model), feed, ["logits", STATE_OUTPUT])
    np.testing.assert_array_equal(logits, before)
    assert np.abs(head.logits(states) - before).max() < (0.05 if which == "demo int8" else 1e-5)
    moved = type(head)(head.w1 * 1.5, head.b1 - 0.1, head.w2[::-1].copy(), head.b2 + 1.0)
    rewritten = with_head(model, "logits", moved)
    new_logits, new_states = _run(rewritten, feed, ["logits", STATE_OUTPUT])
    np.testing.assert_array_equal(new_states, states)
    np.testing.assert_allclose(new_logits, moved.logits(states), atol=1e-5)
    assert np.abs(new_logits - before).max() > 0.1
    _, read_back = read_head(rewritten)  # a learned version is updated again the same way
    np.testing.assert_allclose(read_back.w1, moved.w1, atol=1e-6)


def test_the_fit_moves_what_the_verdicts_say_and_little_else():
    """As an update fits: 20 windows the head rates highest said to be safe (towards 0), the others towards
    what the head says of them. The 20 come down below where they were; the others stay where they were."""
    rng = np.random.default_rng(1)
    _, head = read_head(onnx.load(str(DEMO / "bundle" / "head.onnx")))
    states = rng.standard_normal((400, head.w1.shape[0])).astype(np.float32)
    start = head.logits(states)
    wrong = np.argsort(start)[-20:]
    targets = sigmoid(start).astype(np.float32)
    targets[wrong] = 0
    fitted, figures = fit_head(head, states, targets, np.ones(len(targets)), FitSettings(steps=300))
    after = fitted.logits(states)
    assert figures["loss_after"] < figures["loss_before"]
    assert np.all(sigmoid(after[wrong]) < sigmoid(start[wrong]) - 0.2)
    others = np.setdiff1d(np.arange(len(targets)), wrong)
    assert np.median(np.abs(sigmoid(after[others]) - sigmoid(start[others]))) < 0.05


def _cut(source: Path, target: Path, start: float, end: float) -> None:
    info = probe_clip(source)
    indices = [i for i in range(info.num_frames) if start <= i / info.fps < end]
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), info.fps, (info.width, info.height))
    for frame in read_frames(source, indices):
        writer.write(frame)
    writer.release()


def _verdicts(root: Path, events: list[tuple[str, float, float, int]]) -> Path:
    """A dataset as `review export` writes it: clips cut from the demo drive, (name, start, end, label)."""
    (root / "train").mkdir(parents=True)
    lines = []
    for n, (name, start, end, label) in enumerate(events):
        _cut(DEMO / "drive.mp4", root / "train" / f"{name}.mp4", start, end)
        line = {"video": f"{name}.mp4", "text": "q", "label": label,
                "meta": {"reviewed_at": float(n), "source": "review", **({} if label else {"reason": "other"})}}
        if label:
            line["event_time"] = round(EVENT_TIME - start, 3)
        lines.append(json.dumps(line))
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_an_update_end_to_end_accepted_run_from_the_store_and_rolled_back(tmp_path):
    """The demo model alerts on the drive's last seconds; said twice to be a false alert (the newer one held
    out), the head learns it: the gate sees the held-out alert gone, accepts, the store runs the new version,
    and one command goes back."""
    verdicts = _verdicts(tmp_path / "verdicts", [("calm", 0.0, 8.0, 0), ("late", 65.0, 72.4, 0),
                                                 ("late-again", 64.4, 72.4, 0)])
    store = tmp_path / "models"
    run = crashwatch("review", "learn", str(verdicts), "--models", str(store), "--bundle", str(DEMO / "bundle"),
                     "--report", str(tmp_path / "report.json"))
    out = run.stdout
    assert "calibrated on build/demo-calibration/drives: give it as --data" in run.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    gate = report["gate"]
    assert "accepted" in out, out
    assert report["verdicts"] == {"confirmed": 0, "dismissed": 3, "held_out": 1, "unmarked": 0}
    assert gate["running"]["false_alerts"] >= 1 and gate["new"]["false_alerts"] < gate["running"]["false_alerts"]
    new = report["version"]
    assert (store / "CURRENT").read_text().strip() == new
    lineage = json.loads((store / "versions" / new / "manifest.json").read_text())["lineage"]
    assert lineage["parent_version"].startswith("v1-") and lineage["gate"]["accepted"]

    model = RiskModel.open(store)  # what `crashwatch monitor --bundle STORE` opens
    assert model.name == new
    held = read_split(verdicts, "train")[2]
    features = FeatureReader(store / "versions" / new, None).clip(held.video)
    assert sigmoid(features.logits).max() < model.manifest.threshold
    cached = FeatureReader(store / "versions" / lineage["parent_version"], None).clip(held.video)
    assert sigmoid(cached.logits).max() >= model.manifest.threshold

    listed = crashwatch("review", "models", str(store)).stdout
    assert f"* {new}" in listed and "accepted" in listed
    back = crashwatch("review", "rollback", str(store)).stdout
    assert lineage["parent_version"] in back
    assert RiskModel.open(store).name == lineage["parent_version"]


def test_an_update_that_does_not_help_is_refused_and_the_running_version_stays(tmp_path):
    verdicts = _verdicts(tmp_path / "verdicts", [("calm", 0.0, 8.0, 0), ("calm-again", 20.0, 28.0, 0)])
    store = tmp_path / "models"
    out = crashwatch("review", "learn", str(verdicts), "--models", str(store), "--bundle",
                     str(DEMO / "bundle")).stdout
    assert "refused: false alerts not fewer (0 -> 0)" in out, out
    current = (store / "CURRENT").read_text().strip()
    assert current.startswith("v1-")
    history = [json.loads(line) for line in (store / "history.jsonl").read_text().splitlines()]
    assert [h["action"] for h in history] == ["created", "refused"]
    assert (store / "versions" / history[1]["version"] / "manifest.json").is_file()  # kept, not run
    again = crashwatch("review", "learn", str(verdicts), "--models", str(store), "--bundle", str(DEMO / "bundle"),
                       check=False)
    assert again.returncode != 0 and "a model store already" in again.stderr
