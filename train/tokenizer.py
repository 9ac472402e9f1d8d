"""Tokenizers: the checkpoint's own, or a small built-in one for random-init models.

Random-init configs (tiny tests, demo, real architectures benchmarked without weights) have no checkpoint to
take a tokenizer from, and files under ``../shared`` must not be shipped. The built-in tokenizer is byte-level
(every byte one token, so any question encodes) plus SmolVLM's special tokens, built in code in milliseconds.
"""

from __future__ import annotations

from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from monitor.prompt import SMOLVLM_SPECIAL_TOKENS

BUILTIN = "builtin"


def builtin_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level tokenizer (256 ids) followed by SmolVLM's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    special = SMOLVLM_SPECIAL_TOKENS
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<|endoftext|>", eos_token="<|endoftext|>")
    tokenizer.add_special_tokens(
        {
            "additional_special_tokens": [
                special.begin,
                special.image,
                special.around_image,
                special.global_image,
                special.end_of_utterance,
            ]
        }
    )
    return tokenizer


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """``builtin``, a hub id or a local folder."""
    if name == BUILTIN:
        return builtin_tokenizer()
    tokenizer = AutoTokenizer.from_pretrained(name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
