"""Run configurations: the shipped ones load and describe the real models; mistakes name file and key."""

from __future__ import annotations

import json

import pytest
import yaml

from crashwatch.contract.config import ConfigError
from crashwatch.train.config import RunConfig, load_config
from tests.support.shared import REPO, SHARED, TINY_CONFIG, need_shared


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


TOWER_128 = "backbone: {random_init: true, architecture: {scale_factor: 2, vision_config: {image_size: 128, patch_size: 16}}}"


def test_frames_may_be_smaller_than_the_tower():
    """A smaller frame keeps the tower's position table (and its pretrained weights): accepted at any multiple
    of patch_size x scale_factor up to the tower's size."""
    for size in (32, 64, 96, 128):
        assert RunConfig.from_dict(yaml.safe_load(f"{TOWER_128}\nimage_size: {size}")).image_size == size


def test_a_pretrained_folders_tower_bounds_the_frame_size(tmp_path):
    """Where `pretrained` is a local folder, its config.json tells the tower's size before anything loads."""
    folder = tmp_path / "smolvlm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"scale_factor": 4, "vision_config": {"image_size": 512,
                                                                                        "patch_size": 16}}))
    path = tmp_path / "run.yaml"
    path.write_text(f"backbone: {{pretrained: {folder}}}\nimage_size: 640")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert f"{path}: image_size: 640 px frames are larger than the vision tower's 512 px" in str(caught.value)
    assert str(folder / "config.json") in str(caught.value)
    path.write_text(f"backbone: {{pretrained: {folder}}}\nimage_size: 384")
    assert load_config(path).image_size == 384


@pytest.mark.parametrize("text,message", [
    ("window_seconds: -1\nbackbone: {random_init: true}", "window_seconds: must be a positive number"),
    ("num_frames: 2.5\nbackbone: {random_init: true}", "num_frames"),
    ("backbone: {random_init: true}\nhead: {width: 3}", "unknown key(s) head.width"),
    ("backbone: {random_init: true}\ntraining: {freeze: [wheels]}", "training.freeze: unknown part"),
    ("backbone: {}", "backbone: name a `pretrained`"),
    ("backbone: [1, 2]", "backbone must be a mapping"),
    ("backbone: {random_init: true}\nquestion: ''", "question: must be a non-empty string"),
    ("backbone: {random_init: true\n", "not valid YAML"),
    (f"{TOWER_128}\nimage_size: 80", "image_size: 80 px is not a multiple of vision_config.patch_size x scale_factor "
     "= 16 x 2 in backbone.architecture"),
    (f"{TOWER_128}\nimage_size: 160", "image_size: 160 px frames are larger than the vision tower's 128 px "
     "(vision_config.image_size in backbone.architecture)"),
])
def test_config_mistakes_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_missing_config_file_names_the_shipped_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.yaml: no such file, nor a configuration shipped with crashwatch "
                                          r"\(cameras.example, demo, smolvlm2-256m, smolvlm2-500m, tiny\)"):
        load_config(tmp_path / "nope.yaml")


def test_a_shipped_configuration_is_found_by_its_name_and_a_path_wins_over_it(tmp_path, monkeypatch):
    assert load_config("tiny") == load_config(TINY_CONFIG)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").write_text("backbone: {random_init: true}\nwindow_seconds: -1\n")
    with pytest.raises(ConfigError, match="tiny: window_seconds"):  # the file named tiny here, not the shipped one
        load_config("tiny")
