"""The prompt: the text half of the training/serving contract.

SmolVLM2's video chat layout, as transformers' ``SmolVLMProcessor`` renders a user turn holding a video and a
question with the generation prompt appended::

    <|im_start|>User: You are provided the following series of eight frames from a 0:00:02 [H:MM:SS] video.
    \\nFrame from 00:00:<fake_token_around_image><global-img><image>*T<fake_token_around_image> ... (per frame)
    \\n\\n{question}<end_of_utterance>\\nAssistant:

Timestamps are the nominal frame times relative to the window start, so the layout depends only on the
window's timing and the question, never on the answer: the label is not part of any input. The trainer
tokenizes this string; the exporter stores its token ids in the bundle, so the monitor needs no tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from contract.window import WindowSpec

# The research question, the default of every run configuration and of `crashwatch dataset index`.
DEFAULT_QUESTION = "Is a vehicle collision likely to happen within 1 to 2 seconds?(0: No, 1: Yes)"

VIDEO_INTRO = "You are provided the following series of {frame_count} frames from a {duration} [H:MM:SS] video.\n"
FRAME_TIMESTAMP = "\nFrame from {timestamp}:"
MEDIA_OUTTRO = "\n\n"


@dataclass(frozen=True)
class SpecialTokens:
    """The special token strings of SmolVLM's tokenizer that the layout uses."""

    begin: str = "<|im_start|>"
    image: str = "<image>"
    around_image: str = "<fake_token_around_image>"
    global_image: str = "<global-img>"
    end_of_utterance: str = "<end_of_utterance>"


SMOLVLM_SPECIAL_TOKENS = SpecialTokens()


def _number_in_words(n: int) -> str:
    # num2words is only needed where prompts are rendered to text (trainer, exporter); the monitor reads
    # ready token ids from its bundle and must not need it.
    from num2words import num2words

    return num2words(n)


def _mm_ss(seconds: float) -> str:
    return f"{int(seconds // 60):02d}:{int(seconds % 60):02d}"


def render_prompt(
    question: str,
    window: WindowSpec,
    tokens_per_frame: int,
    special: SpecialTokens = SMOLVLM_SPECIAL_TOKENS,
) -> str:
    """The full model input text for one window: video turn, question, and the assistant cue."""
    image_block = special.around_image + special.global_image + special.image * tokens_per_frame + special.around_image
    video = VIDEO_INTRO.format(
        frame_count=_number_in_words(window.num_frames),
        duration=str(timedelta(seconds=int(window.seconds))),
    )
    for t in window.relative_times():
        video += FRAME_TIMESTAMP.format(timestamp=_mm_ss(t)) + image_block
    video += MEDIA_OUTTRO
    return f"{special.begin}User: {video}{question}{special.end_of_utterance}\nAssistant:"


class Tokenizer(Protocol):
    """What the prompt needs of a tokenizer (a transformers tokenizer is one): text to ``{"input_ids": [...]}``."""

    def __call__(self, text: str, add_special_tokens: bool = ...) -> dict: ...


class PromptEncoder:
    """Question text -> token ids of the full prompt, cached (a run has one or a few questions). The trainer
    feeds these ids to the model and the exporter stores them in the bundle, so both use the very same."""

    def __init__(self, tokenizer: Tokenizer, window: WindowSpec, tokens_per_frame: int) -> None:
        self.tokenizer = tokenizer
        self.window = window
        self.tokens_per_frame = tokens_per_frame
        self._cache: dict[str, list[int]] = {}

    def __call__(self, question: str) -> list[int]:
        if question not in self._cache:
            text = render_prompt(question, self.window, self.tokens_per_frame)
            self._cache[question] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._cache[question]
