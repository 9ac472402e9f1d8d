"""From the fp32 graphs to the other precisions, with onnxruntime's own tools.

- int8: dynamic quantization (weights int8, activations quantized on the fly), for CPUs: it needs no
  calibration data.
- fp16: float16 weights and compute, inputs and outputs kept float32 so callers need not care; for CUDA and
  TensorRT (on a CPU it runs but is no faster, docs/benchmarks.md).
- OpenVINO IR (``--openvino``, beside any of them): the fp32 graphs converted by OpenVINO with fp16 weights
  (half the size; OpenVINO runs them at the CPU's inference precision, bf16 where it has bf16 units), as it
  runs onnxruntime's int8 graphs slower than its own bf16. In an int8 bundle the vision graph's IR is int8
  end to end instead, weights and activations, by NNCF's post-training quantization calibrated on real
  frames: 1.2 to 1.3x faster than onnxruntime's dynamic int8 on an AVX-512 VNNI Xeon (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx

from crashwatch.export.graphs import EXTERNAL_DATA_BYTES

log = logging.getLogger(__name__)


def _needs_external(path: Path) -> bool:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) > EXTERNAL_DATA_BYTES


def to_int8(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The default type names what the quantizer's shape inference cannot type (the outputs of the fused vision
    # graph's contrib ops, ``crashwatch.export.fusion``): every graph of a bundle is float32.
    with _root_logger_above_info():
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8,
                         use_external_data_format=_needs_external(source),
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


@contextlib.contextmanager
def _root_logger_above_info() -> Iterator[None]:
    """The quantizer logs a line per tensor on the root logger (1,700 for a streaming bundle), which the command
    line shows at its default level, INFO; they are shown from -vv (DEBUG) on."""
    root = logging.getLogger()
    level = root.level
    if level == logging.INFO:
        root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.setLevel(level)


def to_fp16(source: Path, target: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(source))
    converted = convert_float_to_float16(model, keep_io_types=True)
    external = _needs_external(source)
    onnx.save_model(converted, str(target), save_as_external_data=external,
                    location=target.name + ".data" if external else None)


def to_openvino(source: Path, target: Path) -> None:
    """``source`` ONNX -> ``target`` OpenVINO IR (``.xml`` and the ``.bin`` beside it)."""
    import openvino as ov

    ov.save_model(ov.convert_model(str(source)), str(target), compress_to_fp16=True)


def to_openvino_int8(source: Path, target: Path, frames: np.ndarray) -> None:
    """``source``, a vision graph, -> ``target`` OpenVINO IR quantized to int8 (weights and activations) by NNCF,
    its activation ranges calibrated on ``frames`` (preprocessed, ``[N, 3, S, S]``), one frame a call as the
    monitor encodes them."""
    import nncf
    import openvino as ov

    model = ov.convert_model(str(source))
    calibration = nncf.Dataset([frames[k:k + 1] for k in range(len(frames))])
    with _root_logger_above_info():
        quantized = nncf.quantize(model, calibration, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(frames))
    ov.save_model(quantized, str(target), compress_to_fp16=False)


CONVERTERS = {"int8": to_int8, "fp16": to_fp16}
