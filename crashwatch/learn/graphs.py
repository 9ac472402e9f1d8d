"""The head inside a bundle's graph: where its input (the last-token state) lies, its weights, and the graph
again with the state as a second output or with another head.

The trainer's head (``crashwatch.train.model.RiskHead``) is Linear, ReLU, Linear from the last-token state to
one logit; the exporter keeps its parameters' names (``model.head.net.0.weight``, ...), whatever the precision:
a Gemm in fp32 and fp16, a MatMulInteger behind a DynamicQuantizeLinear in int8. Everything downstream of
the state belongs to the head, so replacing it is: drop those nodes, add an fp32 head that writes ``logits``.
The fitted head stays fp32 in every bundle: it is a few thousand weights, and its input is the graph's own.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from crashwatch.contract.bundle import GRAPHS, BundleError, Manifest
from crashwatch.learn.fit import HeadWeights

STATE_OUTPUT = "state"  # the last-token state [batch, hidden], float32: what the head reads
FIRST, SECOND = "model.head.net.0", "model.head.net.3"


def head_graph(manifest: Manifest) -> str:
    """The name of the bundle's graph that holds the head: its layout's last (head, or readout)."""
    return GRAPHS[manifest.layout][-1]


def _initializers(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """The graph's own tensors; those it names in another file are the text model's shared weights
    (``crashwatch.export.sharing``), never the head's, and a graph loaded without them names them only."""
    return {i.name: numpy_helper.to_array(i) for i in graph.initializer if i.data_location != TensorProto.EXTERNAL}


def _linear(graph: onnx.GraphProto, prefix: str, values: dict[str, np.ndarray]) -> tuple[str, np.ndarray, np.ndarray]:
    """The input tensor of the head's linear layer ``prefix``, its weight [in, out] and bias (fp32)."""
    weight = f"{prefix}.weight"
    for node in graph.node:
        if node.op_type == "Gemm" and len(node.input) > 1 and node.input[1] == weight:
            trans = {a.name: a.i for a in node.attribute}.get("transB", 0)
            w = values[weight].astype(np.float32)
            return node.input[0], (w.T if trans else w), values[node.input[2]].astype(np.float32).reshape(-1)
        if node.op_type == "MatMulInteger" and node.input[1].startswith(weight):
            quantized, zero = values[node.input[1]].astype(np.float32), values[node.input[3]].astype(np.float32)
            scale = values[node.input[1].replace("_quantized", "_scale")].astype(np.float32)
            source = next(n for n in graph.node if node.input[0] in n.output)
            bias = values[f"{prefix}.bias"].astype(np.float32).reshape(-1)
            return source.input[0], (quantized - zero) * scale, bias
    raise BundleError(f"the graph has no trained head ({weight} is not used): a zero-shot baseline's answer head "
                      "cannot be updated; fine-tune the model (`crashwatch train`) and export it")


def read_head(model: onnx.ModelProto) -> tuple[str, HeadWeights]:
    """The state tensor's name and the head's weights (int8 ones dequantized)."""
    values = _initializers(model.graph)
    state, w1, b1 = _linear(model.graph, FIRST, values)
    _, w2, b2 = _linear(model.graph, SECOND, values)
    return state, HeadWeights(w1, b1, w2.reshape(-1), float(b2[0]))


def _downstream(graph: onnx.GraphProto, tensor: str) -> set[int]:
    """The indices of the nodes that read ``tensor`` or anything computed from it."""
    reached, names, changed = set(), {tensor}, True
    while changed:
        changed = False
        for k, node in enumerate(graph.node):
            if k not in reached and names.intersection(node.input):
                reached.add(k)
                names.update(node.output)
                changed = True
    return reached


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    result = onnx.ModelProto()
    result.CopyFrom(model)
    return result


def _state_output(graph: onnx.GraphProto, state: str, hidden: int) -> None:
    """Name the state ``STATE_OUTPUT`` (float32) and make it the graph's second output."""
    if state != STATE_OUTPUT:
        graph.node.append(helper.make_node("Cast", [state], [STATE_OUTPUT], to=TensorProto.FLOAT, name="state/cast"))
    if STATE_OUTPUT not in [o.name for o in graph.output]:
        graph.output.append(helper.make_tensor_value_info(STATE_OUTPUT, TensorProto.FLOAT, ["batch", hidden]))


def with_state(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` as it is, the state its head reads added as a second output (``STATE_OUTPUT``)."""
    state, head = read_head(model)
    if STATE_OUTPUT in [o.name for o in model.graph.output]:
        return model
    result = _copy(model)
    _state_output(result.graph, state, head.w1.shape[0])
    return result


def with_head(model: onnx.ModelProto, output: str, head: HeadWeights) -> onnx.ModelProto:
    """``model`` with its head replaced by ``head`` (fp32, named as the exporter names the trainer's, so that
    ``read_head`` reads it back) writing ``output`` [batch], and the state as its second output."""
    state, _ = read_head(model)
    result = _copy(model)
    graph = result.graph
    gone = _downstream(graph, state)
    kept = [node for k, node in enumerate(graph.node) if k not in gone]
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input}
    kept_values = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_values)
    _state_output(graph, state, head.w1.shape[0])
    graph.initializer.extend([
        numpy_helper.from_array(head.w1.T.astype(np.float32), f"{FIRST}.weight"),
        numpy_helper.from_array(head.b1.astype(np.float32), f"{FIRST}.bias"),
        numpy_helper.from_array(head.w2.astype(np.float32).reshape(1, -1), f"{SECOND}.weight"),
        numpy_helper.from_array(np.array([head.b2], np.float32), f"{SECOND}.bias"),
        numpy_helper.from_array(np.array([1], np.int64), "head/axis"),
    ])
    graph.node.extend([
        helper.make_node("Gemm", [STATE_OUTPUT, f"{FIRST}.weight", f"{FIRST}.bias"], ["head/inner"], transB=1,
                         name="head/linear1"),
        helper.make_node("Relu", ["head/inner"], ["head/relu"], name="head/relu"),
        helper.make_node("Gemm", ["head/relu", f"{SECOND}.weight", f"{SECOND}.bias"], ["head/logit"], transB=1,
                         name="head/linear2"),
        helper.make_node("Squeeze", ["head/logit", "head/axis"], [output], name="head/squeeze"),
    ])
    for o in graph.output:
        if o.name == output:
            o.type.tensor_type.elem_type = TensorProto.FLOAT
    del graph.value_info[:]
    return result
