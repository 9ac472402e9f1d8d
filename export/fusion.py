"""onnxruntime's fused kernels for the vision graph, written into it after the trace.

The traced SigLIP tower runs its tanh-GELU as seven elementwise ops and its attention as transpose, matmul,
scale, softmax, matmul, transpose: onnxruntime fuses neither on load, and they were an eighth and two fifths
of the int8 vision pass (docs/benchmarks.md, "Streaming prompt layout"). Here the GELU becomes ``FastGelu``
(onnxruntime's transformers optimizer's own fusion) and each attention ``MultiHeadAttention``: written here, as
that optimizer's attention fusion does not match this graph. Both are contrib ops that onnxruntime (CPU, CUDA,
fp16 and int8 graphs) and OpenVINO's ONNX reader run; the outputs are the plain graph's within float rounding,
and the export's parity step checks them against PyTorch as for any graph.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper

if TYPE_CHECKING:
    from onnxruntime.transformers.onnx_model import OnnxModel

log = logging.getLogger(__name__)

CONTRIB = "com.microsoft"
HEADS_FIRST = [0, 2, 1, 3]  # [N, S, heads, hd] -> [N, heads, S, hd], and back
KEYS_TRANSPOSED = [0, 2, 3, 1]  # [N, S, heads, hd] -> [N, heads, hd, S]


def fuse_vision(path: Path, num_heads: int) -> dict[str, int]:
    """Fuse the vision graph at ``path`` in place; the number of each fused op, which is the tower's layer count
    where every layer matched (a layer that does not match keeps its plain ops: slower, not wrong)."""
    from onnxruntime.transformers.fusion_fastgelu import FusionFastGelu
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = onnx.load(str(path))
    wrapped = OnnxModel(model)
    if _fuse_attention(wrapped, num_heads) and not any(op.domain == CONTRIB for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid(CONTRIB, 1))
    FusionFastGelu(wrapped).apply()
    wrapped.prune_graph()  # and the initializers of the replaced ops, now used by nothing
    onnx.save(model, str(path))
    counts = {op: sum(node.op_type == op for node in model.graph.node) for op in ("FastGelu", "MultiHeadAttention")}
    log.info("%s: %d FastGelu and %d MultiHeadAttention fused", path.name, counts["FastGelu"],
             counts["MultiHeadAttention"])
    return counts


class _Graph:
    """The matches the attention fusion needs, over onnxruntime's ``OnnxModel`` maps of who produces and who
    consumes each value (taken once, before any node is replaced)."""

    def __init__(self, model: OnnxModel) -> None:
        self.model = model
        self.producer = model.output_name_to_node()
        self.consumers = model.input_name_to_nodes()

    def sole_producer(self, name: str, op: str) -> onnx.NodeProto | None:
        """The ``op`` node making ``name``, if nothing but one node uses ``name`` (so the node may be replaced)."""
        node = self.producer.get(name)
        alone = len(self.consumers.get(name, [])) == 1
        return node if alone and node is not None and node.op_type == op else None

    def only_consumer(self, node: onnx.NodeProto, op: str) -> onnx.NodeProto | None:
        users = self.consumers.get(node.output[0], [])
        return users[0] if len(users) == 1 and users[0].op_type == op else None

    def split_heads(self, name: str, perm: list[int], num_heads: int) -> tuple[str, list[onnx.NodeProto]] | None:
        """``name`` as Transpose(Reshape(x)) splitting x ``[N, S, D]`` into ``num_heads`` heads: x and the two."""
        transpose = self.sole_producer(name, "Transpose")
        if transpose is None or _perm(transpose) != perm:
            return None
        reshape = self.sole_producer(transpose.input[0], "Reshape")
        if reshape is None:
            return None
        shape = self.model.get_constant_value(reshape.input[1])
        if shape is not None and (shape.size != 4 or int(shape[2]) != num_heads):
            return None
        return reshape.input[0], [transpose, reshape]


def _perm(node: onnx.NodeProto) -> list[int]:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), [])


def _fuse_attention(model: OnnxModel, num_heads: int) -> int:
    """Replace each ``Reshape(Transpose(Softmax(q @ k * scale) @ v))`` over heads split from [N, S, D] projections
    by one ``MultiHeadAttention`` of those projections, in the ``OnnxModel`` ``model``; the number replaced."""
    g = _Graph(model)
    graph = model.model.graph
    replaced: dict[int, onnx.NodeProto] = {}  # id of the chain's last node -> the fused node
    dropped: set[int] = set()
    for softmax in [node for node in graph.node if node.op_type == "Softmax"]:
        scale = g.sole_producer(softmax.input[0], "Mul")
        factor = None if scale is None else model.get_constant_value(scale.input[1])
        scores = None if scale is None else g.sole_producer(scale.input[0], "MatMul")
        mix = g.only_consumer(softmax, "MatMul")
        merge = None if mix is None else g.only_consumer(mix, "Transpose")
        out = None if merge is None or _perm(merge) != HEADS_FIRST else g.only_consumer(merge, "Reshape")
        if factor is None or factor.size != 1 or scores is None or out is None:
            continue
        query = g.split_heads(scores.input[0], HEADS_FIRST, num_heads)
        key = g.split_heads(scores.input[1], KEYS_TRANSPOSED, num_heads)
        value = g.split_heads(mix.input[1], HEADS_FIRST, num_heads)
        if query is None or key is None or value is None:
            continue
        replaced[id(out)] = helper.make_node(
            "MultiHeadAttention", [query[0], key[0], value[0]], [out.output[0]], domain=CONTRIB,
            name=f"MultiHeadAttention_{len(replaced)}", num_heads=num_heads,
            scale=float(np.asarray(factor, np.float32).reshape(())))
        dropped |= {id(node) for node in (scores, scale, softmax, mix, merge, out, *query[1], *key[1], *value[1])}
    kept = [replaced.get(id(node), node) for node in graph.node if id(node) in replaced or id(node) not in dropped]
    del graph.node[:]
    graph.node.extend(kept)
    return len(replaced)

