"""A zero-shot baseline: a pretrained SmolVLM2's own answer to the question, as the head of a normal model.

No training and no labelled data. The risk logit is the language-model head's logit of the positive answer's
token minus the negative's, at the prompt's last position: ``sigmoid`` of it is the probability the model gives
the positive answer of the two. The language-model head is a linear layer on the text model's final (normed)
hidden state, so that difference is itself one linear layer, ``h . (W[pos] - W[neg])``: the same graph
interface as a trained head, and the same cost, so the exporter and the monitor treat it as any other model.

An answer is scored as SmolVLM's chat template writes an assistant turn, ``Assistant: Yes``, so its tokens are
those the tokenizer gives for ``" " + answer`` after the prompt. Where both answers begin with the same tokens
(SmolVLM's tokenizer gives ``" 1"`` as ``" "``, ``"1"``), those go into the prompt and the answers' next tokens
are compared: the two answers' probabilities share that prefix's factor, so their ratio is still exact.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from crashwatch.contract.errors import CrashwatchError
from crashwatch.contract.prompt import SMOLVLM_SPECIAL_TOKENS, PromptLayout, render_prompt
from crashwatch.train.checkpoint import Checkpoint
from crashwatch.train.config import BackboneConfig, RunConfig
from crashwatch.train.model import CrashRiskModel, check_image_token, frame_tokens, load_pretrained
from crashwatch.train.tokenizer import load_tokenizer

log = logging.getLogger(__name__)

DEFAULT_ANSWERS = ("Yes", "No")
# sigmoid(logit) is P(positive) / (P(positive) + P(negative)): at 0.5 the model prefers neither. With no
# labelled data there is nothing better to start from; `crashwatch calibrate` sets one for a false-alert budget.
THRESHOLD = 0.5
# What SmolVLM's chat template puts between "Assistant:" and the text of an assistant turn.
ANSWER_SEPARATOR = " "


class ZeroShotError(CrashwatchError):
    """A zero-shot model that cannot be built; the message names the option or the model."""


class AnswerHead(nn.Module):
    """Last-token state ``[B, D]`` -> ``lm_head(h)[positive] - lm_head(h)[negative]`` ``[B]``, as one linear
    layer: the difference of the two rows (and of their biases, where the head has any)."""

    def __init__(self, lm_head: nn.Linear, positive: int, negative: int) -> None:
        super().__init__()
        self.difference = nn.Linear(lm_head.in_features, 1, bias=lm_head.bias is not None)
        with torch.no_grad():
            self.difference.weight.copy_(lm_head.weight[positive] - lm_head.weight[negative])
            if lm_head.bias is not None:
                self.difference.bias.copy_(lm_head.bias[positive:positive + 1] - lm_head.bias[negative:negative + 1])
        self.token_ids = (positive, negative)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.difference(pooled).squeeze(-1)

    def describe(self) -> dict[str, Any]:
        """The head as a bundle's manifest names it."""
        return {"kind": "zero-shot", "answer_token_ids": list(self.token_ids)}


@dataclass(frozen=True)
class AnswerTokens:
    """The two answers (positive first), the token each is scored by, and the tokens both begin with."""

    answers: tuple[str, str]
    token_ids: tuple[int, int]
    prefix: tuple[int, ...]


def check_answers(answers: Sequence[str]) -> None:
    """Two different, non-empty answers: refused before any model is loaded."""
    if len(answers) != 2 or not all(answers) or answers[0] == answers[1]:
        raise ZeroShotError(f"--answers: give two different answers, the positive first (e.g. Yes,No or 1,0), "
                            f"got {','.join(answers)!r}")


def answer_tokens(tokenizer: PreTrainedTokenizerBase, prompt: str, answers: Sequence[str], model: str) -> AnswerTokens:
    """How ``answers`` (two, ``check_answers``) continue the rendered ``prompt`` in ``model``'s tokenizer; each
    must be one token beyond what both begin with, else a ``ZeroShotError`` saying how it tokenizes."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    continuations = []
    for answer in answers:
        ids = tokenizer(prompt + ANSWER_SEPARATOR + answer, add_special_tokens=False)["input_ids"]
        if ids[:len(prompt_ids)] != prompt_ids:
            raise ZeroShotError(f"--answers: {answer!r} merges with the end of the prompt in {model}'s tokenizer; "
                                "give an answer that starts a token of its own")
        continuations.append(ids[len(prompt_ids):])
    shared = 0
    while all(len(c) > shared + 1 for c in continuations) and continuations[0][shared] == continuations[1][shared]:
        shared += 1
    for answer, ids in zip(answers, continuations):
        if len(ids) != shared + 1:
            pieces = ", ".join(f"{tokenizer.decode([i])!r} ({i})" for i in ids)
            raise ZeroShotError(f"--answers: {answer!r} is {len(ids)} tokens in {model}'s tokenizer after "
                                f"'Assistant:' ({pieces}); each answer must be a single token (beyond any both "
                                "answers begin with), e.g. Yes,No")
    if continuations[0] == continuations[1]:
        raise ZeroShotError(f"--answers: {answers[0]!r} and {answers[1]!r} are the same token in {model}'s tokenizer")
    return AnswerTokens((answers[0], answers[1]), (continuations[0][shared], continuations[1][shared]),
                        tuple(continuations[0][:shared]))


def load_zero_shot(model: str, config: RunConfig, answers: Sequence[str] = DEFAULT_ANSWERS) -> Checkpoint:
    """``model`` (a hub id or a folder ``from_pretrained`` loads) with ``AnswerHead`` for ``answers``, on the
    window, frame size, pixels and question of ``config``; its backbone block is not used: the model is
    ``model``, its tokenizer ``model``'s own, the one its language-model head's rows belong to."""
    check_answers(answers)
    if config.layout is not PromptLayout.SMOLVLM:
        raise ZeroShotError(f"--zero-shot: the run configuration's prompt layout is {config.layout.value!r}; a "
                            "pretrained model answers only in the layout it was trained on (prompt.layout: smolvlm)")
    try:
        full = load_pretrained(model, config.backbone.attn_implementation)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ZeroShotError(f"--zero-shot {model}: cannot load a model there ({first}); give a SmolVLM2 hub id or "
                            "a folder holding its config.json and weights") from None
    if full.config.model_type != "smolvlm":
        raise ZeroShotError(f"--zero-shot {model}: a {full.config.model_type!r} model, not SmolVLM2 ('smolvlm')")
    tokenizer = load_tokenizer(model)
    check_image_token(full.config, tokenizer.convert_tokens_to_ids(SMOLVLM_SPECIAL_TOKENS.image), model)
    prompt = render_prompt(config.question, config.window, frame_tokens(full.config, config.image_size))
    tokens = answer_tokens(tokenizer, prompt, answers, model)
    head = AnswerHead(full.get_output_embeddings(), *tokens.token_ids)
    log.info("zero-shot head: %s's logit of %r (token %d) minus %r (token %d)%s", model, tokens.answers[0],
             tokens.token_ids[0], tokens.answers[1], tokens.token_ids[1],
             f", after the shared {tokenizer.decode(list(tokens.prefix))!r}" if tokens.prefix else "")
    backbone = BackboneConfig(pretrained=model, tokenizer=model, attn_implementation=config.backbone.attn_implementation)
    description = {"model": model, "answers": list(tokens.answers), "answer_token_ids": list(tokens.token_ids),
                   "answer_tokens": tokenizer.convert_ids_to_tokens(list(tokens.token_ids)),
                   "prompt_suffix_ids": list(tokens.prefix)}
    return Checkpoint(CrashRiskModel(full.model, head, config.image_size).eval(), tokenizer,
                      dataclasses.replace(config, backbone=backbone), THRESHOLD, {"zero_shot": description},
                      tokens.prefix)
