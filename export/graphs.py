"""The two ONNX graphs, traced from exactly the model parts that training runs.

``torch.onnx.export(dynamo=True)``: the legacy TorchScript exporter emits an invalid graph for SigLIP's
bucketized position ids (a float index into Gather), the dynamo exporter handles them.

Graphs are traced with eager attention. It is the same arithmetic as SDPA, but the exporter decomposes SDPA
with a NaN guard (IsNaN and Where over every attention matrix) that onnxruntime runs as separate passes: on
the 256M architecture it took a fifth of the int8 run time; eager makes the int8 vision graph ~18 % and the
int8 text graph ~28 % faster (see BENCHMARKS.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
import torch
from torch import nn

from train.model import CrashRiskModel

log = logging.getLogger(__name__)

OPSET = 18
# Graphs whose weights pass this go to an external ``.onnx.data`` file (protobuf's hard limit is 2 GB).
EXTERNAL_DATA_BYTES = 1 << 30


class VisionGraph(nn.Module):
    """pixel_values [F, 3, S, S] -> frame_embeds [F, T, D]."""

    def __init__(self, model: CrashRiskModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.encode_frames(pixel_values)


class HeadGraph(nn.Module):
    """inputs_embeds [B, L, D], attention_mask [B, L] -> logits [B]."""

    def __init__(self, model: CrashRiskModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.score(inputs_embeds, attention_mask)


def _weight_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def use_eager_attention(model: CrashRiskModel) -> None:
    """Switch every attention layer to the plain matmul-softmax-matmul form before tracing (see above)."""
    model.backbone.set_attn_implementation("eager")


def export_vision(model: CrashRiskModel, path: Path, image_size: int) -> None:
    use_eager_attention(model)
    graph = VisionGraph(model).eval()
    example = torch.zeros(2, 3, image_size, image_size)
    frames = torch.export.Dim("frames", min=1, max=1024)
    _export(graph, (example,), path, ["pixel_values"], ["frame_embeds"], {"pixel_values": {0: frames}},
            _weight_bytes(model.backbone.vision_model) + _weight_bytes(model.backbone.connector))


def export_head(model: CrashRiskModel, path: Path) -> None:
    use_eager_attention(model)
    graph = HeadGraph(model).eval()
    hidden = model.backbone.config.text_config.hidden_size
    example = (torch.zeros(1, 16, hidden), torch.ones(1, 16, dtype=torch.long))
    batch = torch.export.Dim("batch", min=1, max=256)
    seq = torch.export.Dim("sequence", min=2, max=16384)
    _export(graph, example, path, ["inputs_embeds", "attention_mask"], ["logits"],
            {"inputs_embeds": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            _weight_bytes(model.text_model) + _weight_bytes(model.head))


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
    """Remove the intermediate shapes the exporter recorded. Some disagree with ONNX's own inference (SigLIP's
    position buckets come from an arange in steps of 1/6 at 96 px, six values in torch, five by ONNX's
    arithmetic), and onnxruntime's quantizer then refuses the graph; the runtime never needs them."""
    model = onnx.load(str(path), load_external_data=False)
    del model.graph.value_info[:]
    onnx.save(model, str(path))
