"""Run configurations: the shipped ones load and describe the real models; mistakes name file and key."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO, SHARED, need_shared
from train.config import ConfigError, load_config


@pytest.mark.parametrize("name", ["tiny", "demo", "smolvlm2-256m", "smolvlm2-500m"])
def test_shipped_configs_load(name):
    config = load_config(REPO / "configs" / f"{name}.yaml")
    assert config.question.startswith("Is a vehicle collision likely")
    assert config.window.num_frames >= 1 and config.head.hidden > 0


def test_500m_architecture_is_the_real_one():
    real = json.loads(need_shared(SHARED / "smolvlm" / "SmolVLM2-500M-Video-Instruct" / "config.json").read_text())
    config = load_config(REPO / "configs" / "smolvlm2-500m.yaml")
    arch = config.backbone.architecture
    assert config.backbone.pretrained == "HuggingFaceTB/SmolVLM2-500M-Video-Instruct"
    assert arch["scale_factor"] == real["scale_factor"]
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "vocab_size", "rms_norm_eps"):
        assert arch["text_config"][key] == real["text_config"][key], key
    assert arch["text_config"]["rope_parameters"]["rope_theta"] == real["text_config"]["rope_theta"]
    for key in ("hidden_size", "num_attention_heads", "patch_size", "image_size"):
        assert arch["vision_config"][key] == real["vision_config"][key], key
    assert config.image_size == real["vision_config"]["max_image_size"]["longest_edge"]


@pytest.mark.parametrize("text,message", [
    ("window_seconds: -1\nbackbone: {random_init: true}", "window_seconds: must be a positive number"),
    ("num_frames: 2.5\nbackbone: {random_init: true}", "num_frames"),
    ("backbone: {random_init: true}\nhead: {width: 3}", "unknown key(s) head.width"),
    ("backbone: {random_init: true}\ntraining: {freeze: [wheels]}", "training.freeze: unknown part"),
    ("backbone: {}", "backbone: name a `pretrained`"),
    ("backbone: [1, 2]", "backbone must be a mapping"),
    ("backbone: {random_init: true}\nquestion: ''", "question: must be a non-empty string"),
    ("backbone: {random_init: true\n", "not valid YAML"),
    ("backbone: {random_init: true, architecture: {vision_config: {image_size: 96, patch_size: 16}}}",
     "a 6x6 patch grid"),
])
def test_config_mistakes_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")
