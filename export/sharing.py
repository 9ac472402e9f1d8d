"""One copy of the weights two graphs of a bundle hold alike: the streaming layout's block and readout each
run the whole text model, so each carried its weights (the 256M int8's 103 MB twice, docs/benchmarks.md).

The tensors equal in content in both graphs go once into ``SHARED_WEIGHTS``; both graphs name them there as
ONNX external data (so every ONNX tool still reads each graph alone), and the manifest lists where each lies,
for the runtime, which imports no ``onnx``, to map the file once and hand the same memory to both sessions
(``crashwatch.monitor.engines.local``).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import onnx
from onnx import numpy_helper

from crashwatch.contract.bundle import GRAPH_FILES, SHARED_WEIGHTS

log = logging.getLogger(__name__)

ALIGN = 1 << 16  # each tensor on a 64 KiB boundary: a page, and Windows' mapping granularity
SMALLEST = 1 << 10  # scales and zero points stay inside their graphs: nothing to gain


Key = tuple[int, tuple[int, ...], str]  # a tensor's element type, shape and content hash


def _large(model: onnx.ModelProto) -> dict[Key, str]:
    """The graph's tensors of at least ``SMALLEST`` bytes, by content, and their names."""
    found = {}
    for tensor in model.graph.initializer:
        values = numpy_helper.to_array(tensor)
        if values.nbytes >= SMALLEST:
            found[(tensor.data_type, tuple(tensor.dims), hashlib.sha256(values.tobytes()).hexdigest())] = tensor.name
    return found


def share_weights(folder: Path, graphs: tuple[str, ...]) -> dict[str, Any] | None:
    """Move the tensors of at least ``SMALLEST`` bytes that every one of ``graphs`` (names of the bundle's
    graphs in ``folder``) holds alike into ``SHARED_WEIGHTS``, rewrite the graphs to name them there, and
    return the manifest's ``shared_weights`` entry; None (nothing written) where they share nothing."""
    models = {name: onnx.load(str(folder / GRAPH_FILES[name])) for name in graphs}
    held = [_large(model) for model in models.values()]
    common = [key for key in held[0] if all(key in other for other in held[1:])]
    if not common:
        return None
    entries: dict[Key, dict[str, Any]] = {}
    with (folder / SHARED_WEIGHTS).open("wb") as out:
        for key in common:
            first = held[0][key]
            values = numpy_helper.to_array(next(t for t in models[graphs[0]].graph.initializer if t.name == first))
            out.write(b"\0" * (-out.tell() % ALIGN))
            entries[key] = {"offset": out.tell(), "bytes": values.nbytes, "dtype": values.dtype.name,
                            "shape": list(values.shape), "names": {name: held[k][key] for k, name in enumerate(graphs)}}
            out.write(values.tobytes())
    for k, (name, model) in enumerate(models.items()):
        shared = {held[k][key]: entries[key] for key in common}
        for tensor in model.graph.initializer:
            entry = shared.get(tensor.name)
            if entry is not None:
                _refer(tensor, entry)
        path = folder / GRAPH_FILES[name]
        onnx.save_model(model, str(path), save_as_external_data=False)
        path.with_name(path.name + ".data").unlink(missing_ok=True)  # its own external weights: now inside, or shared
    tensors = list(entries.values())
    size = sum(t["bytes"] for t in tensors)
    log.info("%s: %d tensors, %.0f MB, held once for %s", SHARED_WEIGHTS, len(tensors), size / 1e6, " and ".join(graphs))
    return {"file": SHARED_WEIGHTS, "tensors": tensors}


def _refer(tensor: onnx.TensorProto, entry: dict[str, Any]) -> None:
    """Make ``tensor`` name its data in ``SHARED_WEIGHTS`` at ``entry``'s place instead of holding it."""
    for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
        tensor.ClearField(field)
    tensor.data_location = onnx.TensorProto.EXTERNAL
    del tensor.external_data[:]
    for key, value in (("location", SHARED_WEIGHTS), ("offset", entry["offset"]), ("length", entry["bytes"])):
        tensor.external_data.add(key=key, value=str(value))
