"""The ONNX graphs, traced from exactly the model parts that training runs, the vision tower's position ids
excepted: those are a constant of the graph (see ``VisionGraph``). The vision graph, then the head graph
(smolvlm layout) or the block and readout graphs (streaming layout, ``crashwatch.export.streaming``).

The dynamo exporter, as the legacy one emitted an invalid graph for SigLIP's bucketized position ids when they
were traced; eager attention, as the exporter decomposes SDPA with a NaN guard that onnxruntime runs as
separate passes (the measurements behind both are in docs/decisions.md). Input and output names are the bundle
format's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
import torch
from torch import nn

from crashwatch.contract.bundle import (
    BLOCK_EMBEDS,
    BLOCK_OUTPUT,
    HEAD_EMBEDS,
    HEAD_MASK,
    HEAD_OUTPUT,
    READOUT_BLOCKS,
    READOUT_EMBEDS,
    READOUT_KEEP,
    READOUT_OUTPUT,
    READOUT_PREFIX,
    VISION_INPUT,
    VISION_OUTPUT,
)
from crashwatch.export.streaming import StreamingTextModel
from crashwatch.train.model import CrashRiskModel

log = logging.getLogger(__name__)

OPSET = 18
# Graphs whose weights pass this go to an external ``.onnx.data`` file (protobuf's hard limit is 2 GB).
EXTERNAL_DATA_BYTES = 1 << 30


class VisionGraph(nn.Module):
    """pixel_values [F, 3, S, S] -> frame_embeds [F, T, D], for the model's one frame size S.

    The tower's layers as ``CrashRiskModel.encode_frames`` runs them, but with the patches' position ids as a
    constant. SmolVLM's embeddings derive them from the patch grid with an arange in steps of 1/side and a
    bucketize; at some sides (6, 7 and 24 among them) that arange is one value longer in PyTorch than by ONNX's
    arithmetic, and the traced graph indexed out of range in onnxruntime (`GatherND invalid index`). A bundle's
    frame size is fixed, so the ids are computed once, here, by the embeddings' own code.
    """

    def __init__(self, model: CrashRiskModel) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("position_ids", grid_position_ids(model), persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        vision = self.model.backbone.vision_model
        patches = vision.embeddings.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        # No attention mask: every patch of a full frame is real, as the tower's own forward finds (it passes
        # none to the encoder then either).
        hidden = vision.encoder(inputs_embeds=patches + vision.embeddings.position_embedding(self.position_ids))
        return self.model.backbone.connector(vision.post_layernorm(hidden.last_hidden_state))


def grid_position_ids(model: CrashRiskModel) -> torch.Tensor:
    """The position ids ``[P]`` SmolVLM's vision embeddings give the patches of a full frame of the model's size,
    taken from a run of the embeddings themselves (an all-ones patch mask), so they are the ones PyTorch uses."""
    embeddings = model.backbone.vision_model.embeddings
    size, side = model.image_size, model.image_size // embeddings.patch_size
    weight = embeddings.patch_embedding.weight
    seen: list[torch.Tensor] = []
    hook = embeddings.position_embedding.register_forward_hook(lambda _module, args, _out: seen.append(args[0]))
    try:
        with torch.no_grad():
            embeddings(torch.zeros(1, 3, size, size, dtype=weight.dtype, device=weight.device),
                       torch.ones(1, side, side, dtype=torch.bool, device=weight.device))
    finally:
        hook.remove()
    return seen[0][0].clone()


class HeadGraph(nn.Module):
    """inputs_embeds [B, L, D], attention_mask [B, L] -> logits [B]."""

    def __init__(self, model: CrashRiskModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.window_logits(inputs_embeds, attention_mask)


class BlockGraph(nn.Module):
    """inputs_embeds [N, L, D] -> state [N, 2, layers, kv_heads, L, head_dim] (``StreamingTextModel.block``)."""

    def __init__(self, model: CrashRiskModel) -> None:
        super().__init__()
        self.text = StreamingTextModel(model.text_model)

    def forward(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        return self.text.block(inputs_embeds)


class ReadoutGraph(nn.Module):
    """inputs_embeds [N, R, D], prefix [N, 2, layers, kv_heads, P, head_dim], blocks [N, 2, layers, kv_heads, F,
    B, head_dim], keep [N, F, B] (1, or 0 to withhold a block position from the readout) -> logits [N]."""

    def __init__(self, model: CrashRiskModel) -> None:
        super().__init__()
        self.model = model
        self.text = StreamingTextModel(model.text_model)

    def forward(self, inputs_embeds: torch.Tensor, prefix: torch.Tensor, blocks: torch.Tensor,
                keep: torch.Tensor) -> torch.Tensor:
        return self.model.classify(self.text.readout(inputs_embeds, prefix, blocks, keep))


def state_shape(model: CrashRiskModel) -> tuple[int, int, int, int]:
    """A segment's state shape without batch and length: ``[2, layers, kv_heads, head_dim]``."""
    text = model.backbone.config.text_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return (2, text.num_hidden_layers, text.num_key_value_heads, head_dim)


def _weight_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def use_eager_attention(model: CrashRiskModel) -> None:
    """Switch every attention layer to the plain matmul-softmax-matmul form before tracing (see the module)."""
    model.backbone.set_attn_implementation("eager")


def export_vision(model: CrashRiskModel, path: Path) -> None:
    use_eager_attention(model)
    graph = VisionGraph(model).eval()
    example = torch.zeros(2, 3, model.image_size, model.image_size)
    frames = torch.export.Dim("frames", min=1, max=1024)
    _export(graph, (example,), path, [VISION_INPUT], [VISION_OUTPUT], {VISION_INPUT: {0: frames}},
            _weight_bytes(model.backbone.vision_model) + _weight_bytes(model.backbone.connector))


def export_head(model: CrashRiskModel, path: Path) -> None:
    use_eager_attention(model)
    graph = HeadGraph(model).eval()
    hidden = model.backbone.config.text_config.hidden_size
    example = (torch.zeros(1, 16, hidden), torch.ones(1, 16, dtype=torch.long))
    batch = torch.export.Dim("batch", min=1, max=256)
    seq = torch.export.Dim("sequence", min=2, max=16384)
    _export(graph, example, path, [HEAD_EMBEDS, HEAD_MASK], [HEAD_OUTPUT],
            {HEAD_EMBEDS: {0: batch, 1: seq}, HEAD_MASK: {0: batch, 1: seq}},
            _weight_bytes(model.text_model) + _weight_bytes(model.head))


def export_block(model: CrashRiskModel, path: Path) -> None:
    use_eager_attention(model)
    hidden = model.backbone.config.text_config.hidden_size
    batch, seq = torch.export.Dim("batch", min=1, max=256), torch.export.Dim("sequence", min=2, max=16384)
    _export(BlockGraph(model).eval(), (torch.zeros(2, 16, hidden),), path, [BLOCK_EMBEDS],
            [BLOCK_OUTPUT], {BLOCK_EMBEDS: {0: batch, 1: seq}}, _weight_bytes(model.text_model))


def export_readout(model: CrashRiskModel, path: Path, segments: tuple[int, int, int], frames: int) -> None:
    """The readout graph for prompts of ``segments`` (prefix, block, readout lengths) and windows of ``frames``:
    all fixed for a bundle, so they are the graph's static shapes (the batch is dynamic)."""
    use_eager_attention(model)
    hidden = model.backbone.config.text_config.hidden_size
    two, layers, heads, head_dim = state_shape(model)
    prefix, block, readout = segments
    batch = torch.export.Dim("batch", min=1, max=256)
    example = (torch.zeros(2, readout, hidden), torch.zeros(2, two, layers, heads, prefix, head_dim),
               torch.zeros(2, two, layers, heads, frames, block, head_dim), torch.ones(2, frames, block))
    names = [READOUT_EMBEDS, READOUT_PREFIX, READOUT_BLOCKS, READOUT_KEEP]
    _export(ReadoutGraph(model).eval(), example, path, names, [READOUT_OUTPUT],
            {name: {0: batch} for name in names}, _weight_bytes(model.text_model) + _weight_bytes(model.head))


def _export(graph: nn.Module, example: tuple, path: Path, inputs: list[str], outputs: list[str],
            dynamic: dict, weight_bytes: int) -> None:
    external = weight_bytes > EXTERNAL_DATA_BYTES
    log.info("exporting %s (%.0f MB of weights%s)", path.name, weight_bytes / 1e6, ", external data" if external else "")
    with torch.no_grad():
        program = torch.onnx.export(graph, example, dynamo=True, opset_version=OPSET, input_names=inputs,
                                    output_names=outputs, dynamic_shapes=dynamic, verbose=False)
    program.save(str(path), external_data=external)
    _drop_recorded_shapes(path)


def _drop_recorded_shapes(path: Path) -> None:
    """Remove the intermediate shapes the exporter recorded: some disagree with ONNX's own inference (SigLIP's
    position buckets, docs/decisions.md), and onnxruntime's quantizer then refuses the graph; nothing needs them."""
    model = onnx.load(str(path), load_external_data=False)
    del model.graph.value_info[:]
    onnx.save(model, str(path))
