"""The crash-risk model: SmolVLM2's vision encoder, connector and text model, with a classifier head.

The forward pass is two parts, and the exporter turns exactly these into ONNX graphs:

1. ``encode_frames``: pixels ``[F, 3, S, S]`` -> per-frame image embeddings ``[F, T, D]`` (vision encoder and
   connector). A frame's embeddings depend on that frame alone, which lets the monitor cache them.
2. ``window_logits``: prompt embeddings with the image embeddings merged in ``[B, L, D]`` and their attention mask
   -> one logit per window, from the last real token's hidden state. The language-model head is never run (a
   zero-shot model's head is two of its rows, ``crashwatch.export.zeroshot``).

``embed_prompt`` does the merge between the two (token embedding lookup, image rows scattered where the
prompt holds ``<image>``); the monitor does the same merge in numpy from the bundle's embedding rows. A
streaming-layout prompt runs through the same text model with that layout's mask (``pool``); its bundle runs
it one segment at a time (``crashwatch.export.streaming``), to the same result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForImageTextToText, SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMModel
from transformers.utils import ModelOutput

from crashwatch.contract.config import ConfigError
from crashwatch.contract.prompt import attention_allowed
from crashwatch.train.config import BackboneConfig, HeadConfig, LoraConfig, frame_size_problem

log = logging.getLogger(__name__)


class RiskHead(nn.Module):
    """MLP from the last-token hidden state to one logit."""

    def __init__(self, hidden_size: int, config: HeadConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(hidden_size, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, 1),
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled).squeeze(-1)

    def describe(self) -> dict[str, Any]:
        """The head as a bundle's manifest names it."""
        return {"hidden": self.net[0].out_features, "dropout": self.net[2].p}


@dataclass
class RiskOutput(ModelOutput):
    """Loss (given labels) and one logit per window; a ``ModelOutput`` so that ``Trainer`` reads it."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


class CrashRiskModel(nn.Module):
    """SmolVLM2 backbone (no language-model head) plus a head from the last-token state to one logit (``RiskHead``;
    a zero-shot model's ``crashwatch.export.zeroshot.AnswerHead``), fed frames of ``image_size`` px: at most the vision
    tower's own size, a smaller frame keeping the tower's pretrained position table (see
    ``crashwatch.train.config.frame_size_problem``)."""

    def __init__(self, backbone: SmolVLMModel, head: nn.Module, image_size: int) -> None:
        super().__init__()
        vision = backbone.config.vision_config
        problem = frame_size_problem(image_size, vision.image_size, vision.patch_size, backbone.config.scale_factor,
                                     backbone.config.name_or_path or "the backbone's architecture")
        if problem:
            raise ConfigError(f"image_size: {problem}")
        self.backbone = backbone
        self.image_size = image_size
        self.head = head
        self.image_token_id = int(backbone.config.image_token_id)

    # -- construction ---------------------------------------------------------------------------------------

    @classmethod
    def from_backbone_config(cls, backbone: BackboneConfig, head: HeadConfig, image_token_id: int,
                             image_size: int) -> "CrashRiskModel":
        """Load the pretrained backbone, or build it from ``architecture`` with random weights, for frames of
        ``image_size`` px."""
        if backbone.random_init or backbone.pretrained is None:
            config = smolvlm_config(backbone.architecture, image_token_id, backbone.attn_implementation)
            log.info("building a randomly initialised SmolVLM backbone")
            return cls.with_risk_head(SmolVLMModel(config), head, image_size)
        full = load_pretrained(backbone.pretrained, backbone.attn_implementation)
        check_image_token(full.config, image_token_id, backbone.pretrained)
        return cls.with_risk_head(full.model, head, image_size)

    @classmethod
    def from_saved_config(cls, backbone_config: dict[str, Any], head: HeadConfig, image_size: int) -> "CrashRiskModel":
        """Rebuild the architecture stored in a checkpoint (weights are loaded afterwards)."""
        return cls.with_risk_head(SmolVLMModel(SmolVLMConfig.from_dict(backbone_config)), head, image_size)

    @classmethod
    def with_risk_head(cls, backbone: SmolVLMModel, head: HeadConfig, image_size: int) -> "CrashRiskModel":
        """``backbone`` with a new ``RiskHead``: the model training fine-tunes."""
        return cls(backbone, RiskHead(backbone.config.text_config.hidden_size, head), image_size)

    # -- the two exported parts -----------------------------------------------------------------------------

    @property
    def tokens_per_frame(self) -> int:
        """Image tokens one frame becomes; the backbone's own ``image_seq_len`` counts a tower-size frame only."""
        return frame_tokens(self.backbone.config, self.image_size)

    @property
    def text_model(self) -> nn.Module:
        return self.backbone.text_model

    def encode_frames(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pixels ``[F, 3, S, S]`` -> image embeddings ``[F, T, D]``, each frame independent of the others."""
        hidden = self.backbone.vision_model(pixel_values=pixel_values).last_hidden_state
        return self.backbone.connector(hidden)

    def embed_prompt(self, input_ids: torch.Tensor, frame_embeds: torch.Tensor) -> torch.Tensor:
        """Token embeddings of ``input_ids`` ``[B, L]`` with the ``<image>`` positions filled, in order, from
        ``frame_embeds`` ``[B * F, T, D]``."""
        embeds = self.text_model.get_input_embeddings()(input_ids)
        mask = input_ids == self.image_token_id
        image_rows = frame_embeds.reshape(-1, frame_embeds.shape[-1]).to(embeds.dtype)
        if int(mask.sum()) != image_rows.shape[0]:
            raise ValueError(f"prompt holds {int(mask.sum())} image tokens but {image_rows.shape[0]} image rows came")
        return embeds.masked_scatter(mask.unsqueeze(-1), image_rows)

    def pool(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
             segments: torch.Tensor | None = None) -> torch.Tensor:
        """Merged embeddings ``[B, L, D]`` and mask ``[B, L]`` (right-padded) -> the last real token's hidden
        state ``[B, D]``, what the head reads. With ``segments`` ``[B, L]`` (a streaming prompt's segment ids,
        ``crashwatch.contract.prompt``) the text model attends by the streaming layout's rule, given to it as a 4-D mask
        (the positions stay 0..L-1, its default)."""
        mask = attention_mask if segments is None else streaming_mask(segments, inputs_embeds.dtype)
        hidden = self.text_model(inputs_embeds=inputs_embeds, attention_mask=mask, use_cache=False).last_hidden_state
        last = attention_mask.long().sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def window_logits(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
                      segments: torch.Tensor | None = None) -> torch.Tensor:
        """Merged embeddings ``[B, L, D]`` and mask ``[B, L]`` (right-padded) -> logits ``[B]``; ``segments`` as
        ``pool`` takes them."""
        return self.classify(self.pool(inputs_embeds, attention_mask, segments))

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """The head: pooled states ``[B, D]`` -> logits ``[B]``."""
        return self.head(pooled.to(next(self.head.parameters()).dtype))

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        window_frames: torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
    ) -> RiskOutput:
        """Logits and, given labels, the BCE-with-logits loss; inputs as ``pooled_and_frames`` takes them."""
        pooled, _ = self.pooled_and_frames(pixel_values, input_ids, attention_mask, window_frames, segments)
        logits = self.classify(pooled)
        return RiskOutput(logits=logits, loss=None if labels is None else risk_loss(logits, labels))

    def pooled_and_frames(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
        window_frames: torch.Tensor | None = None, segments: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The pooled state ``[B, D]`` the head reads and the image embeddings ``[N, T, D]`` it was computed
        from (auxiliary losses read both, see ``crashwatch.train.geometry``). ``pixel_values`` is ``[B, F, 3, S, S]``, a
        window's frames per row; or, with ``window_frames`` ``[B, F]`` saying which of them make each window,
        the batch's distinct frames ``[N, 3, S, S]``, so that a frame shared by windows is encoded once.
        ``segments`` ``[B, L]``: a streaming prompt's segment ids (``pool``)."""
        if window_frames is None:
            batch, per_window = pixel_values.shape[:2]
            window_frames = torch.arange(batch * per_window, device=pixel_values.device).view(batch, per_window)
            pixel_values = pixel_values.flatten(0, 1)
        frames = self.encode_frames(pixel_values)
        embeds = self.embed_prompt(input_ids, frames[window_frames.flatten()])
        return self.pool(embeds, attention_mask, segments), frames

    # -- training strategies --------------------------------------------------------------------------------

    def apply_freezing(self, freeze: list[str], lora: LoraConfig | None) -> None:
        """Fix the listed parts; with ``lora``, add LoRA adapters to the text model and train only those there."""
        parts = {"vision": self.backbone.vision_model, "connector": self.backbone.connector, "text": self.text_model}
        for name, module in parts.items():
            module.requires_grad_(name not in freeze)
        if lora is not None:
            from peft import LoraConfig as PeftLoraConfig
            from peft import inject_adapter_in_model

            peft_config = PeftLoraConfig(
                r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules
            )
            inject_adapter_in_model(peft_config, self.text_model)
            self.text_model.requires_grad_(False)
            for name, param in self.text_model.named_parameters():
                if "lora_" in name:
                    param.requires_grad_(True)

    def parameter_counts(self) -> dict[str, int]:
        """Trainable and total parameter counts, for the log."""
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"total": total, "trainable": trainable}


def streaming_mask(segments: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Segment ids ``[B, L]`` -> the additive 4-D mask ``[B, 1, L, L]`` of the streaming layout's rule
    (``crashwatch.contract.prompt.attention_allowed``, the one the exported graphs are built to): 0 where a query may
    attend a key, the dtype's minimum elsewhere. Additive, as eager attention adds the mask it is given."""
    allowed = torch.from_numpy(attention_allowed(segments.cpu().numpy())).to(segments.device)
    return torch.zeros(allowed.shape, dtype=dtype, device=segments.device).masked_fill(
        ~allowed, torch.finfo(dtype).min)[:, None]


def risk_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())


def load_pretrained(name: str, attn_implementation: str) -> SmolVLMForConditionalGeneration:
    """A hub id or local folder through ``from_pretrained``, in float32, language-model head included: the
    trained model drops it, a zero-shot one reads two of its rows (``crashwatch.export.zeroshot``)."""
    log.info("loading pretrained SmolVLM %s", name)
    return AutoModelForImageTextToText.from_pretrained(name, dtype=torch.float32,
                                                       attn_implementation=attn_implementation)


def check_image_token(config: SmolVLMConfig, image_token_id: int, name: str) -> None:
    """The model merges frames where the prompt holds its own image token: the tokenizer's must be that one."""
    if int(config.image_token_id) != image_token_id:
        raise ValueError(f"{name}: the model's image token id {config.image_token_id} is not the tokenizer's "
                         f"<image> id {image_token_id}; use the checkpoint's own tokenizer")


def frame_tokens(config: SmolVLMConfig, image_size: int) -> int:
    """Image tokens of one ``image_size`` px frame: its patch grid folded by the connector's pixel shuffle."""
    side = image_size // config.vision_config.patch_size
    return side * side // config.scale_factor**2


def smolvlm_config(architecture: dict[str, Any], image_token_id: int, attn_implementation: str) -> SmolVLMConfig:
    """A ``SmolVLMConfig`` from the YAML ``architecture`` block, with the tokenizer's image token id."""
    arch = dict(architecture)
    arch["image_token_id"] = image_token_id
    config = SmolVLMConfig(**arch)
    config._attn_implementation = attn_implementation
    config.text_config._attn_implementation = attn_implementation
    config.vision_config._attn_implementation = attn_implementation
    return config
