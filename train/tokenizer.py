"""Tokenizers: the checkpoint's own, or a small built-in one for random-init models.

Random-init configs (tiny tests, demo, real architectures benchmarked without weights) have no checkpoint to
take a tokenizer from, and files under ``../shared`` must not be shipped. The built-in tokenizer is built in
code, the same every time: byte-level BPE, so any question encodes, plus SmolVLM's special tokens.
"""

from __future__ import annotations

from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from crashwatch.contract.config import ConfigError
from crashwatch.contract.prompt import DEFAULT_QUESTION, SMOLVLM_SPECIAL_TOKENS, render_prompt
from crashwatch.contract.window import WindowSpec

BUILTIN = "builtin"
BUILTIN_VOCAB = 512  # what configs using the built-in tokenizer give as vocab_size


def builtin_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE (any text encodes) with merges learnt, deterministically, from the prompt layout itself,
    followed by SmolVLM's special tokens. Learnt merges keep the prompt's text short (about 100 tokens for 7
    frames instead of 330 bytes), so a small model's attention is not spread over filler."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from tokenizers.pre_tokenizers import ByteLevel

    special = SMOLVLM_SPECIAL_TOKENS
    image_block = special.around_image + special.global_image + special.image + special.around_image
    corpus = [render_prompt(DEFAULT_QUESTION, WindowSpec(seconds, frames), 1).replace(image_block, " ")
              for frames in range(1, 65) for seconds in (1.0, 2.0, 2.4, 3.5, 10.0, 75.0)]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=BUILTIN_VOCAB - 8, show_progress=False,
                                                         initial_alphabet=ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core)
    tokenizer.add_special_tokens({
        "pad_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
        "additional_special_tokens": [special.begin, special.image, special.around_image, special.global_image,
                                      special.end_of_utterance],
    })
    return tokenizer


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """``builtin``, a hub id or a local folder."""
    if name == BUILTIN:
        return builtin_tokenizer()
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:  # missing files, unreachable hub, or files that are not a tokenizer
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"tokenizer {name!r}: cannot load a tokenizer there ({first}); give a checkpoint folder "
                          f"holding tokenizer.json, a hub id, or 'builtin'") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
