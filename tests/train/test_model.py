"""The model: two parts that the exporter reuses, frame independence, loading and freezing strategies."""

from __future__ import annotations

import pytest
import torch

from crashwatch.contract.config import ConfigError
from crashwatch.contract.prompt import render_prompt
from crashwatch.train.config import BackboneConfig, LoraConfig, load_config
from crashwatch.train.model import CrashRiskModel
from crashwatch.train.tokenizer import builtin_tokenizer
from tests.support.shared import TINY_CONFIG


@pytest.fixture(scope="module")
def tiny():
    config = load_config(TINY_CONFIG)
    tokenizer = builtin_tokenizer()
    torch.manual_seed(0)
    model = CrashRiskModel.from_backbone_config(config.backbone, config.head, tokenizer.convert_tokens_to_ids("<image>"),
                                              config.image_size)
    model.eval()
    ids = tokenizer(render_prompt(config.question, config.window, model.tokens_per_frame),
                    add_special_tokens=False)["input_ids"]
    return config, tokenizer, model, torch.tensor([ids])


def test_forward_is_exactly_the_two_exported_parts(tiny):
    config, _, model, ids = tiny
    pixels = torch.randn(1, config.num_frames, 3, config.image_size, config.image_size)
    with torch.no_grad():
        full = model(pixels, ids, torch.ones_like(ids)).logits
        frames = model.encode_frames(pixels[0])
        parts = model.window_logits(model.embed_prompt(ids, frames), torch.ones_like(ids))
    assert frames.shape == (config.num_frames, model.tokens_per_frame, 64)
    assert torch.equal(full, parts)


def test_windows_sharing_frames_score_as_if_each_brought_its_own(tiny):
    """A training batch holds each frame once and says which frames make each window: the logits are those of
    the same windows given frame by frame."""
    config, _, model, ids = tiny
    frames = torch.randn(config.num_frames + 2, 3, config.image_size, config.image_size)
    windows = torch.stack([torch.arange(config.num_frames) + k for k in range(3)])  # consecutive, sharing frames
    ids = ids.repeat(3, 1)
    with torch.no_grad():
        shared = model(frames, ids, torch.ones_like(ids), window_frames=windows).logits
        own = model(frames[windows], ids, torch.ones_like(ids)).logits
    torch.testing.assert_close(shared, own, rtol=0, atol=1e-6)
    assert len(set(shared.tolist())) == 3


def test_a_frames_embeddings_depend_on_that_frame_alone(tiny):
    config, _, model, _ = tiny
    pixels = torch.randn(5, 3, config.image_size, config.image_size)
    with torch.no_grad():
        batch = model.encode_frames(pixels)
        alone = torch.cat([model.encode_frames(pixels[i:i + 1]) for i in range(5)])
    torch.testing.assert_close(batch, alone, rtol=0, atol=1e-6)


def test_right_padding_does_not_change_the_score(tiny):
    config, tokenizer, model, ids = tiny
    pixels = torch.randn(config.num_frames, 3, config.image_size, config.image_size)
    padded = torch.cat([ids, torch.full((1, 7), tokenizer.pad_token_id)], dim=1)
    mask = torch.cat([torch.ones_like(ids), torch.zeros(1, 7, dtype=torch.long)], dim=1)
    with torch.no_grad():
        frames = model.encode_frames(pixels)
        plain = model.window_logits(model.embed_prompt(ids, frames), torch.ones_like(ids))
        with_pad = model.window_logits(model.embed_prompt(padded, frames), mask)
    torch.testing.assert_close(plain, with_pad, rtol=0, atol=1e-5)


def test_image_token_count_must_match(tiny):
    config, _, model, ids = tiny
    frames = torch.zeros(config.num_frames - 1, model.tokens_per_frame, 64)
    with pytest.raises(ValueError, match="image tokens"):
        model.embed_prompt(ids, frames)


def _trainable(model: CrashRiskModel) -> dict[str, bool]:
    parts = {"vision": model.backbone.vision_model, "connector": model.backbone.connector,
             "text": model.text_model, "head": model.head}
    return {k: any(p.requires_grad for p in m.parameters()) for k, m in parts.items()}


def test_freezing_strategies():
    config = load_config(TINY_CONFIG)
    build = lambda: CrashRiskModel.from_backbone_config(config.backbone, config.head, 257, config.image_size)  # noqa: E731
    model = build()
    model.apply_freezing(["text"], None)
    assert _trainable(model) == {"vision": True, "connector": True, "text": False, "head": True}
    model = build()
    model.apply_freezing(["text", "vision"], None)
    assert _trainable(model) == {"vision": False, "connector": True, "text": False, "head": True}
    model = build()
    model.apply_freezing(["vision"], LoraConfig(r=2, alpha=4))
    trainable_text = [n for n, p in model.text_model.named_parameters() if p.requires_grad]
    assert trainable_text and all("lora_" in n for n in trainable_text)
    assert not any(p.requires_grad for p in model.backbone.vision_model.parameters())


def test_loads_a_pretrained_checkpoint_folder(tmp_path, tiny):
    """The `from_pretrained` path users take with the hub id, here on a folder written by transformers."""
    from transformers import SmolVLMForConditionalGeneration

    config, _, model, _ = tiny
    source = SmolVLMForConditionalGeneration(model.backbone.config)
    source.save_pretrained(tmp_path / "hub-copy")
    config.backbone.pretrained = str(tmp_path / "hub-copy")
    config.backbone.random_init = False
    loaded = CrashRiskModel.from_backbone_config(config.backbone, config.head, model.image_token_id, config.image_size)
    for name, tensor in source.model.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[name], tensor), name
    assert not hasattr(loaded.backbone, "lm_head")
    with pytest.raises(ValueError, match="image token id"):
        CrashRiskModel.from_backbone_config(config.backbone, config.head, model.image_token_id + 1, config.image_size)


def test_the_frame_size_is_checked_against_the_tower_the_model_really_has(tmp_path, tiny):
    """A hub id's tower is only known once it is loaded: the model checks the frame size against it, naming where
    the tower came from; a smaller frame gives fewer image tokens, from the frame size, not the tower's."""
    from transformers import SmolVLMForConditionalGeneration

    config, _, model, _ = tiny
    SmolVLMForConditionalGeneration(model.backbone.config).save_pretrained(tmp_path / "hub-copy")
    backbone = BackboneConfig(pretrained=str(tmp_path / "hub-copy"))
    with pytest.raises(ConfigError) as caught:
        CrashRiskModel.from_backbone_config(backbone, config.head, model.image_token_id, 128)
    assert (f"image_size: 128 px frames are larger than the vision tower's 64 px (vision_config.image_size in "
            f"{tmp_path / 'hub-copy'})") in str(caught.value)
    smaller = CrashRiskModel.from_backbone_config(backbone, config.head, model.image_token_id, 32)
    assert smaller.tokens_per_frame == 1 and model.tokens_per_frame == model.backbone.image_seq_len == 4
    with torch.no_grad():
        assert smaller.encode_frames(torch.zeros(2, 3, 32, 32)).shape == (2, 1, 64)
