"""`crashwatch export --zero-shot`: a pretrained model's own Yes/No answer as a normal bundle, equal to
transformers' full forward of that model, refused answers, and the monitor running it.

The pretrained model is the tiny config's architecture with random weights, saved by transformers with the
built-in tokenizer (in which " Yes" and " No" are single tokens): a folder `from_pretrained` loads, as it would
a hub checkpoint; the real SmolVLM tokenizer is used, where ../shared has it, for how answers tokenize.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from crashwatch.bench.process import free_port
from crashwatch.cli import main
from crashwatch.contract.preprocess import preprocess_frames
from crashwatch.contract.prompt import render_prompt
from crashwatch.contract.video import probe_clip, read_frames
from crashwatch.contract.window import WindowSpec, pick_frames
from crashwatch.export.zeroshot import AnswerHead, ZeroShotError, answer_tokens
from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.frame import Frame
from crashwatch.monitor.pipeline.scorer import WindowScorer
from tests.support.imports import FORBID_TORCH
from tests.support.media import QUESTION, write_video
from tests.support.shared import REPO, SMOLVLM_TOKENIZER, TINY_CONFIG, need_shared


def _save_pretrained(folder: Path, tokenizer) -> Path:
    """A SmolVLM2 checkpoint folder as `save_pretrained` writes one: the tiny architecture for ``tokenizer``'s
    vocabulary, random weights, the language-model head scaled up so that the answers' logits differ by units
    rather than hundredths."""
    from transformers import SmolVLMForConditionalGeneration

    from crashwatch.train.config import load_config
    from crashwatch.train.model import smolvlm_config

    architecture = load_config(TINY_CONFIG).backbone.architecture
    architecture["text_config"]["vocab_size"] = len(tokenizer)
    torch.manual_seed(0)
    model = SmolVLMForConditionalGeneration(smolvlm_config(architecture, tokenizer.convert_tokens_to_ids("<image>"),
                                                           "sdpa"))
    with torch.no_grad():
        model.lm_head.weight.mul_(20)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """With the built-in tokenizer, where " Yes" and " No" are one token each."""
    from crashwatch.train.tokenizer import builtin_tokenizer

    return _save_pretrained(tmp_path_factory.mktemp("hub") / "tiny-smolvlm2", builtin_tokenizer())


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "drive.mp4", 40, fps=10, size=(160, 96))


@pytest.fixture(scope="module")
def bundle(pretrained, clip, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "zero-shot"
    result = subprocess.run([sys.executable, "-m", "crashwatch", "export", "--zero-shot", str(pretrained), "--config",
                             str(TINY_CONFIG), "--out", str(out), "--video", str(clip)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert f"zero-shot {pretrained} answering Yes/No" in result.stdout and "parity on drive.mp4" in result.stdout
    return out


def _transformers_probability(pretrained: Path, pixels: np.ndarray, tokens_per_frame: int, answers=(" Yes", " No"),
                              lead: str = "") -> float:
    """sigmoid(logit(answers[0]) - logit(answers[1])) at the last position of transformers' own forward of the
    model (vision, merge, text model and language-model head) on the prompt followed by ``lead``, and the frames."""
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    model = AutoModelForImageTextToText.from_pretrained(pretrained, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(pretrained)
    prompt = render_prompt(QUESTION, WindowSpec(2.0, 4), tokens_per_frame) + lead
    ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    (positive,), (negative,) = (tokenizer(answer, add_special_tokens=False)["input_ids"] for answer in answers)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                       pixel_values=torch.from_numpy(pixels)[None]).logits[0, -1]
    return float(torch.sigmoid(logits[positive] - logits[negative]))


def _window(video: Path, end: float, manifest) -> np.ndarray:
    indices = pick_frames(probe_clip(video).timestamps(), end, manifest.window)
    return preprocess_frames(read_frames(video, indices), manifest.pixels)


def test_the_bundle_is_the_models_own_answer(pretrained, clip, bundle, tmp_path):
    model = RiskModel.open(bundle)
    m = model.manifest
    assert m.zero_shot["model"] == str(pretrained) and m.zero_shot["answers"] == ["Yes", "No"]
    assert m.zero_shot["answer_tokens"] == ["ĠYes", "ĠNo"] and m.zero_shot["prompt_suffix_ids"] == []
    assert m.raw["model"]["head"] == {"kind": "zero-shot", "answer_token_ids": m.zero_shot["answer_token_ids"]}
    assert m.raw["source_checkpoint"] == str(pretrained) and m.raw["model"]["backbone"] == str(pretrained)
    assert m.threshold == 0.5 and m.window.num_frames == 4 and m.pixels.image_size == 64 and m.question == QUESTION
    assert m.raw["parity"]["probability_abs_diff"] <= 1e-5
    # Two windows: the parity check's (the clip's last), and one of another clip the export never saw.
    other = write_video(tmp_path / "other.mp4", 30, fps=10, size=(120, 80))
    for video, end in ((clip, probe_clip(clip).timestamps()[-1]), (other, 2.7)):
        pixels = _window(video, end, m)
        expected = _transformers_probability(pretrained, pixels, m.tokens_per_frame)
        assert abs(expected - 0.5) > 0.01  # a window the answer rows tell apart, not a coin toss
        assert model.window_probability(model.encode_frames(pixels)) == pytest.approx(expected, abs=1e-5)


def test_digit_answers_in_smolvlms_tokenizer_are_the_models_own_answer(clip, tmp_path):
    """SmolVLM's tokenizer writes " 1" as " " and "1": the bundle's prompt ends with the shared " ", and its
    probability is transformers' odds of "1" against "0" after "Assistant: "."""
    from crashwatch.export.exporter import export_zero_shot
    from crashwatch.train.tokenizer import load_tokenizer

    folder = _save_pretrained(tmp_path / "tiny-smolvlm2", load_tokenizer(str(need_shared(SMOLVLM_TOKENIZER))))
    manifest = export_zero_shot(str(folder), TINY_CONFIG, tmp_path / "bundle", "fp32", clip, answers=("1", "0"))
    assert manifest["zero_shot"]["answer_tokens"] == ["1", "0"] and manifest["zero_shot"]["prompt_suffix_ids"] == [216]
    model = RiskModel.open(tmp_path / "bundle")
    pixels = _window(clip, 3.1, model.manifest)
    expected = _transformers_probability(folder, pixels, model.manifest.tokens_per_frame, ("1", "0"), lead=" ")
    assert abs(expected - 0.5) > 0.01
    assert model.window_probability(model.encode_frames(pixels)) == pytest.approx(expected, abs=1e-5)


def test_the_head_is_the_difference_of_two_language_model_rows():
    torch.manual_seed(1)
    lm_head = torch.nn.Linear(8, 5, bias=True)
    head = AnswerHead(lm_head, 3, 1)
    hidden = torch.randn(4, 8)
    with torch.no_grad():
        logits = lm_head(hidden)
        assert torch.allclose(head(hidden), logits[:, 3] - logits[:, 1], atol=1e-6)


def test_answers_are_single_tokens_after_the_shared_ones():
    """SmolVLM's tokenizer writes " Yes" as one token but " 1" as " " and "1": the shared " " joins the prompt
    and the digits are compared after it."""
    from crashwatch.train.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(str(need_shared(SMOLVLM_TOKENIZER)))
    prompt = render_prompt(QUESTION, WindowSpec(3.5, 8), 64)
    words = answer_tokens(tokenizer, prompt, ("Yes", "No"), "smolvlm")
    assert words.prefix == () and tokenizer.convert_ids_to_tokens(list(words.token_ids)) == ["ĠYes", "ĠNo"]
    digits = answer_tokens(tokenizer, prompt, ("1", "0"), "smolvlm")
    assert tokenizer.convert_ids_to_tokens(list(digits.prefix + digits.token_ids)) == ["Ġ", "1", "0"]
    with pytest.raises(ZeroShotError, match=r"'10' is 3 tokens in smolvlm's tokenizer after 'Assistant:' "
                                            r"\(' ' \(216\), '1' \(33\), '0' \(32\)\)"):
        answer_tokens(tokenizer, prompt, ("10", "0"), "smolvlm")


@pytest.mark.parametrize("args,message", [
    (["--answers", "Maybe,No"], "--answers: 'Maybe' is 6 tokens in {model}'s tokenizer after 'Assistant:' "
                                "(' ' ("),
    (["--answers", "Yes"], "--answers: give two different answers, the positive first"),
    (["--answers", "Yes,Yes"], "--answers: give two different answers"),
])
def test_a_refused_answer_is_named_and_nothing_is_written(pretrained, clip, tmp_path, args, message):
    out = tmp_path / "b"
    result = CliRunner().invoke(main, ["export", "--zero-shot", str(pretrained), "--config", str(TINY_CONFIG), "--out",
                                       str(out), "--video", str(clip), *args])
    assert result.exit_code == 1, result.output
    assert message.format(model=pretrained) in result.output
    assert not out.exists() and not out.with_name("b.partial").exists()


@pytest.mark.parametrize("args,message", [
    (["--zero-shot", "{model}"], "--zero-shot needs --config"),
    (["--zero-shot", "{model}", "--checkpoint", "{model}", "--config", "{config}"], "either --checkpoint RUN or"),
    ([], "either --checkpoint RUN or --zero-shot MODEL"),
    (["--checkpoint", "{model}", "--answers", "1,0"], "--config and --answers go with --zero-shot"),
    (["--zero-shot", "{missing}", "--config", "{config}"], "--zero-shot {missing}: cannot load a model there"),
])
def test_option_mistakes_are_named(pretrained, clip, tmp_path, args, message):
    names = {"model": pretrained, "config": TINY_CONFIG, "missing": tmp_path / "nothing-here"}
    args = [a.format(**names) for a in args]
    result = CliRunner().invoke(main, ["export", *args, "--out", str(tmp_path / "b"), "--video", str(clip)])
    assert result.exit_code != 0
    assert message.format(**names) in result.output


def test_the_monitor_scores_the_zero_shot_bundle_and_names_it(pretrained, bundle, tmp_path):
    model = RiskModel.open(bundle)
    assert model.identity()["zero_shot"] == {"model": str(pretrained), "answers": ["Yes", "No"]}
    video = write_video(tmp_path / "c.mp4", 30, fps=10)
    m = model.manifest
    clip = probe_clip(video)
    frames = [Frame(i, t, 0.0, image) for i, (t, image) in
              enumerate(zip(clip.timestamps(), read_frames(video, list(range(clip.num_frames)))))]
    scorer = WindowScorer(model, m.window, m.pixels)
    scores = [scorer.score(frames[:i + 1], frames[i].t) for i in range(len(frames))]
    assert all(0.0 < s.probability < 1.0 for s in scores)

    # The monitor command, unchanged and torch-free, runs it to the end of the file.
    args = ["crashwatch", "monitor", "--bundle", str(bundle), "--source", str(video), "--replay", "fast",
            "--pub", f"tcp://127.0.0.1:{free_port()}"]
    script = FORBID_TORCH + f"sys.argv = {args!r}\nimport runpy\nrunpy.run_module('crashwatch', run_name='__main__')\n"
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "stopped:" in result.stdout and f"zero-shot baseline: {pretrained}'s own answer, 'Yes' vs 'No'" in result.stderr
    assert json.loads((bundle / "manifest.json").read_text())["zero_shot"]["model"] == str(pretrained)
