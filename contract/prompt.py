"""The prompt: the text half of the training/serving contract, in one of two layouts (``PromptLayout``).

``smolvlm`` (the default) is SmolVLM2's video chat layout, as transformers' ``SmolVLMProcessor`` renders a user
turn holding a video and a question with the generation prompt appended::

    <|im_start|>User: You are provided the following series of eight frames from a 0:00:02 [H:MM:SS] video.
    \\nFrame from 00:00:<fake_token_around_image><global-img><image>*T<fake_token_around_image> ... (per frame)
    \\n\\n{question}<end_of_utterance>\\nAssistant:

Timestamps are the nominal frame times relative to the window start, so the layout depends only on the
window's timing and the question, never on the answer: the label is not part of any input. The trainer
tokenizes this string; the exporter stores its token ids in the bundle, so the monitor needs no tokenizer.

``streaming`` puts the same words in three kinds of segment, each tokenized on its own::

    prefix   <|im_start|>User: You are provided the following series of ... video.\n{question}\n
    block    <fake_token_around_image><global-img><image>*T<fake_token_around_image>   (one per frame)
    readout  <end_of_utterance>\nAssistant:

and with an attention rule of its own (``attention_allowed``): the prefix and every block attend only to
themselves (causally), the readout to everything before it. A block holds nothing that changes as the
window slides, so its keys and values depend on its frame alone and the monitor computes them once per frame
(``crashwatch.monitor.engines.model``); the trainer gives the same rule to the text model as a mask (``crashwatch.train.model``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import numpy as np

from crashwatch.contract.window import WindowSpec

# The research question, the default of every run configuration and of `crashwatch dataset index`.
DEFAULT_QUESTION = "Is a vehicle collision likely to happen within 1 to 2 seconds?(0: No, 1: Yes)"

VIDEO_INTRO = "You are provided the following series of {frame_count} frames from a {duration} [H:MM:SS] video.\n"
FRAME_TIMESTAMP = "\nFrame from {timestamp}:"
MEDIA_OUTTRO = "\n\n"


class PromptLayout(str, enum.Enum):
    """How a window's prompt is laid out and who attends to whom (the module docstring shows both)."""

    SMOLVLM = "smolvlm"  # SmolVLM2's own chat layout and plain causal attention: what the pretrained model knows
    STREAMING = "streaming"  # prefix, one self-contained block per frame, readout: must be learnt in fine-tuning


# Segment ids of the streaming layout: the prefix is 0, frame k (oldest first) k + 1, the readout the last.
PREFIX_SEGMENT = 0


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


def _image_block(tokens_per_frame: int, special: SpecialTokens) -> str:
    return special.around_image + special.global_image + special.image * tokens_per_frame + special.around_image


def _video_intro(window: WindowSpec) -> str:
    return VIDEO_INTRO.format(frame_count=_number_in_words(window.num_frames),
                              duration=str(timedelta(seconds=int(window.seconds))))


def _readout(special: SpecialTokens) -> str:
    return f"{special.end_of_utterance}\nAssistant:"


def render_prompt(
    question: str,
    window: WindowSpec,
    tokens_per_frame: int,
    special: SpecialTokens = SMOLVLM_SPECIAL_TOKENS,
) -> str:
    """The full model input text for one window in the ``smolvlm`` layout: video turn, question, assistant cue."""
    video = _video_intro(window)
    for t in window.relative_times():
        video += FRAME_TIMESTAMP.format(timestamp=_mm_ss(t)) + _image_block(tokens_per_frame, special)
    video += MEDIA_OUTTRO
    return f"{special.begin}User: {video}{question}{_readout(special)}"


@dataclass(frozen=True)
class StreamingText:
    """The three texts of the ``streaming`` layout: a window is ``prefix + block * num_frames + readout``."""

    prefix: str
    block: str
    readout: str


def render_streaming(question: str, window: WindowSpec, tokens_per_frame: int,
                     special: SpecialTokens = SMOLVLM_SPECIAL_TOKENS) -> StreamingText:
    """The ``streaming`` layout's segments for one window: the same words as ``render_prompt``'s but the frame
    timestamps, which change as the window slides."""
    return StreamingText(prefix=f"{special.begin}User: {_video_intro(window)}{question}\n",
                         block=_image_block(tokens_per_frame, special), readout=_readout(special))


def attention_allowed(segments: np.ndarray) -> np.ndarray:
    """The streaming layout's attention rule: segment ids ``[..., L]`` (``PREFIX_SEGMENT``, then one per frame,
    the readout's the largest of a row; -1 for padding after the row) -> ``[..., L, L]``, True where query ``i``
    may attend key ``j``: causally, within its own segment, and everywhere before it for the readout."""
    segments = np.asarray(segments)
    length = segments.shape[-1]
    causal = np.tril(np.ones((length, length), bool))
    query, key = segments[..., :, None], segments[..., None, :]
    readout = segments.max(axis=-1)[..., None, None]
    return causal & ((query == key) | (query == readout))


class Tokenizer(Protocol):
    """What the prompt needs of a tokenizer (a transformers tokenizer is one): text to ``{"input_ids": [...]}``."""

    def __call__(self, text: str, add_special_tokens: bool = ...) -> dict: ...


@dataclass(frozen=True)
class EncodedPrompt:
    """One window's prompt as token ids, and for the streaming layout each token's segment id (``None``: plain
    causal attention). ``lengths`` are the streaming segments' (prefix, one block, readout)."""

    ids: list[int]
    segments: list[int] | None = None
    lengths: tuple[int, int, int] | None = None


class PromptEncoder:
    """Question text -> the full prompt's token ids (and segments), cached (a run has one or a few questions).
    The trainer feeds these ids to the model and the exporter stores them in the bundle, so both use the very
    same."""

    def __init__(self, tokenizer: Tokenizer, window: WindowSpec, tokens_per_frame: int,
                 layout: PromptLayout = PromptLayout.SMOLVLM) -> None:
        self.tokenizer = tokenizer
        self.window = window
        self.tokens_per_frame = tokens_per_frame
        self.layout = PromptLayout(layout)
        self._cache: dict[str, EncodedPrompt] = {}

    def __call__(self, question: str) -> list[int]:
        return self.encode(question).ids

    def encode(self, question: str) -> EncodedPrompt:
        if question not in self._cache:
            self._cache[question] = self._encode(question)
        return self._cache[question]

    def _tokens(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _encode(self, question: str) -> EncodedPrompt:
        if self.layout is PromptLayout.SMOLVLM:
            return EncodedPrompt(self._tokens(render_prompt(question, self.window, self.tokens_per_frame)))
        text = render_streaming(question, self.window, self.tokens_per_frame)
        prefix, block, readout = self._tokens(text.prefix), self._tokens(text.block), self._tokens(text.readout)
        frames = self.window.num_frames
        segments = ([PREFIX_SEGMENT] * len(prefix) + [k + 1 for k in range(frames) for _ in block]
                    + [frames + 1] * len(readout))
        return EncodedPrompt(prefix + block * frames + readout, segments, (len(prefix), len(block), len(readout)))
