"""What the monitor's path is compared with: the research code's way (the Hugging Face model's full forward
over the whole window for every query) and PyTorch running the monitor's own stride (fp32 and bf16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crashwatch.bench.report import median_time
from crashwatch.contract.bundle import PROMPT_IDS, Manifest
from crashwatch.contract.prompt import PromptEncoder


def research_query_time(config_name: str, repeats: int, bundle: Path | None = None) -> tuple[float, int]:
    """The Hugging Face model's full forward over an 8-frame window at the config's frame size, eager attention,
    fp32; with a bundle, on that bundle's exact prompt (the checkpoint's tokenizer), else the built-in
    tokenizer's. Returns seconds per query and the prompt's length."""
    import torch
    from transformers import SmolVLMForConditionalGeneration

    from crashwatch.train.config import load_config
    from crashwatch.train.model import frame_tokens, smolvlm_config
    from crashwatch.train.tokenizer import builtin_tokenizer

    config = load_config(config_name)
    if bundle is not None:
        prompt = np.load(bundle / PROMPT_IDS)
        image_token_id = Manifest.read(bundle).image_token_id
    else:
        tokenizer = builtin_tokenizer()
        image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    vlm = smolvlm_config(config.backbone.architecture, image_token_id, "eager")
    model = SmolVLMForConditionalGeneration(vlm).eval()
    if bundle is None:
        prompt = PromptEncoder(tokenizer, config.window, frame_tokens(vlm, config.image_size))(config.question)
    ids = torch.tensor(np.asarray(prompt, dtype=np.int64))[None]
    pixels = torch.randn(1, config.num_frames, 3, config.image_size, config.image_size)
    with torch.no_grad():
        seconds = median_time(lambda: model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels),
                              repeats)
    return seconds, int(ids.shape[1])


def torch_stride_time(config_name: str, repeats: int, dtype: str, length: int) -> float:
    """PyTorch doing the monitor's own stride: one frame encoded, one window of ``length`` prompt tokens scored
    (bf16 for reference)."""
    import torch

    from crashwatch.train.config import load_config
    from crashwatch.train.model import CrashRiskModel

    config = load_config(config_name)
    config.backbone.random_init = True
    model = CrashRiskModel.from_backbone_config(config.backbone, config.head, 257, config.image_size).eval()
    hidden = model.backbone.config.text_config.hidden_size
    frame = torch.randn(1, 3, config.image_size, config.image_size)
    embeds, mask = torch.randn(1, length, hidden), torch.ones(1, length, dtype=torch.long)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")
    with torch.no_grad(), autocast:
        return median_time(lambda: (model.encode_frames(frame), model.window_logits(embeds, mask)), repeats)
