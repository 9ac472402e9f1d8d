"""The floor: multiply-accumulates per stride over the fastest matmul this CPU offers through either runtime
(onnxruntime fp32 and int8, OpenVINO f32 and bf16), each measured on a 1024^3 product with constant weights."""

from __future__ import annotations

from typing import Any

import numpy as np

from crashwatch.bench.report import median_time
from crashwatch.contract.bundle import Manifest


def text_work(manifest: Manifest, prompt_tokens: int) -> dict[str, int]:
    """Tokens the text model runs per stride (``prompt_tokens``) and the query-key pairs their attention scores
    (``attended``): the whole prompt, causally, in the smolvlm layout; one frame's block (causally) and the
    readout over the whole window in the streaming layout."""
    s = manifest.segments
    if s is None:
        return {"prompt_tokens": prompt_tokens, "attended": prompt_tokens * prompt_tokens // 2}
    context = s.prefix + manifest.window.num_frames * s.block
    return {"prompt_tokens": s.block + s.readout, "attended": s.block * s.block // 2 + s.readout * context}


def macs_per_stride(manifest: dict[str, Any], config: dict[str, Any]) -> dict[str, float]:
    """Multiply-accumulates of one stride: the vision tower and connector for one frame of the bundle's
    ``image_size`` (the frame, which may be smaller than the tower's own size), the text model over
    ``prompt_tokens`` tokens whose attention scores ``attended`` query-key pairs (default: the whole prompt,
    causally) (matmuls only; norms and softmax are a few percent). Weight matmuls (``vision``, ``text``) are kept
    apart from the activation-by-activation ones of attention (``attention``): int8 quantisation reaches the
    former only, so the latter run at the fp32 rate whatever the bundle's precision."""
    vision, text = config["vision_config"], config["text_config"]
    patches = (manifest["image_size"] // vision["patch_size"]) ** 2
    d, ff = vision["hidden_size"], vision["intermediate_size"]
    vision_macs = patches * 3 * vision["patch_size"] ** 2 * d  # patch embedding
    vision_macs += vision["num_hidden_layers"] * patches * (4 * d * d + 2 * d * ff)
    attention = vision["num_hidden_layers"] * 2 * patches * patches * d
    tokens = patches // config["scale_factor"] ** 2
    vision_macs += tokens * d * config["scale_factor"] ** 2 * text["hidden_size"]  # connector
    length = manifest["prompt_tokens"]
    attended = manifest.get("attended", length * length // 2)
    h, f = text["hidden_size"], text["intermediate_size"]
    kv = h // text["num_attention_heads"] * text["num_key_value_heads"]
    text_macs = text["num_hidden_layers"] * length * (2 * h * h + 2 * h * kv + 3 * h * f)
    attention += text["num_hidden_layers"] * 2 * attended * h  # QK^T and AV over the attended pairs
    return {"vision": float(vision_macs), "text": float(text_macs), "attention": float(attention)}


def peak_macs_per_s(precision: str, seconds: float = 1.0) -> float:
    """A matmul probe in onnxruntime (the monitor's engine): fp32 MatMul or int8 MatMulInteger, 1024^3."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    n = 1024
    if precision == "int8":
        node = helper.make_node("MatMulInteger", ["a", "b"], ["c"])
        inputs = [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n]),
                  helper.make_tensor_value_info("b", TensorProto.INT8, [n, n])]
        out = helper.make_tensor_value_info("c", TensorProto.INT32, [n, n])
        feed = {"a": np.random.randint(0, 255, (n, n), dtype=np.uint8), "b": np.random.randint(-127, 127, (n, n), dtype=np.int8)}
    else:
        node = helper.make_node("MatMul", ["a", "b"], ["c"])
        inputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in ("a", "b")]
        out = helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])
        feed = {"a": np.random.rand(n, n).astype(np.float32), "b": np.random.rand(n, n).astype(np.float32)}
    graph = helper.make_graph([node], "probe", inputs, [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    repeats = max(3, int(seconds / 0.05))
    return n ** 3 / median_time(lambda: session.run(None, feed), repeats)


def openvino_peak_macs_per_s(precision: str, seconds: float = 1.0) -> float:
    """The same probe in OpenVINO at inference precision ``bf16`` or ``f32`` (weights a constant, as in a graph)."""
    import openvino as ov
    import openvino.opset13 as ops

    n = 1024
    a = ops.parameter([n, n], ov.Type.f32, name="a")
    model = ov.Model([ops.matmul(a, ops.constant(np.random.rand(n, n).astype(np.float32)), False, False)], [a])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                      "PERFORMANCE_HINT": "LATENCY"})
    request, feed = compiled.create_infer_request(), {0: np.random.rand(n, n).astype(np.float32)}
    repeats = max(3, int(seconds / 0.05))
    return n ** 3 / median_time(lambda: request.infer(feed), repeats)
