"""The engines that run a bundle's graphs: onnxruntime everywhere, OpenVINO on CPUs where it is faster.

One interface, ``Graph`` (a feed of named arrays in, the graph's first output out), so the model above it
never knows which engine runs. OpenVINO runs the fp32 graphs at the CPU's own inference precision (bf16 on
CPUs with AVX-512 BF16 or AMX) and the onnxruntime-quantized int8 graphs slowly, so a bundle exported with
``--openvino`` carries OpenVINO graphs of its own (``vision.openvino.xml`` and so on), checked by
the export's parity step; ``auto`` times those against onnxruntime's, graph by graph
(``crashwatch.monitor.engines.choice``). A Triton server's graphs
(``crashwatch.monitor.serving.triton``) come through the same interface.
"""

from __future__ import annotations

import enum
import importlib.util
import logging
import platform
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from crashwatch.contract.bundle import GRAPH_FILES, GRAPH_OUTPUTS, SHARED_WEIGHTS, BundleError, Manifest
from crashwatch.contract.errors import CrashwatchError

log = logging.getLogger(__name__)

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


class Runtime(str, enum.Enum):
    ONNXRUNTIME = "onnxruntime"
    OPENVINO = "openvino"
    AUTO = "auto"
    TRITON = "triton"  # a Triton server's graphs (``monitor --model triton://...``), not a way to run a local bundle


LOCAL_RUNTIMES = (Runtime.ONNXRUNTIME, Runtime.OPENVINO, Runtime.AUTO)  # what ``--runtime`` offers for a bundle


class TextWeights(str, enum.Enum):
    """How onnxruntime holds a streaming bundle's text weights, which its block and readout graphs share
    (``--text-weights``): ``once``, mapped from ``text.onnx.data`` for both, without prepacking; ``prepacked``,
    each graph its own prepacked copy: text passes some 20 % faster, the 500M's 300 MB more resident
    (docs/benchmarks.md, "Memory")."""

    ONCE = "once"
    PREPACKED = "prepacked"


class EngineError(CrashwatchError):
    """A graph call that failed for a reason that may pass (a Triton server down, restarting or too slow): the
    monitor reports it in ``status`` and goes on, skipping what it cannot score. ``source`` names the graph
    called (URL and model)."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source


class Graph(Protocol):
    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """Named inputs -> the graph's first output."""


@dataclass(frozen=True)
class RuntimeChoice:
    """What ``--runtime auto`` chose (``crashwatch.monitor.engines.choice``): the runtime of each graph;
    ``timings_ms`` (graph -> runtime -> median ms) where they were measured."""

    graphs: dict[str, Runtime]
    why: str
    timings_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"graphs": {name: runtime.value for name, runtime in self.graphs.items()}, "why": self.why,
                "timings_ms": self.timings_ms, "cached": self.cached}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RuntimeChoice":
        return cls({name: Runtime(value) for name, value in data["graphs"].items()}, str(data["why"]),
                   {g: {r: float(ms) for r, ms in t.items()} for g, t in data["timings_ms"].items()}, True)


@dataclass(frozen=True)
class Engine:
    """A bundle's graphs opened on one runtime, by name (``crashwatch.contract.bundle.GRAPHS``: vision and head, or vision,
    block and readout), and what names it in ``status`` and the bench."""

    runtime: Runtime  # AUTO where ``--runtime auto`` put graphs on different runtimes (``choice`` says which)
    device: str  # the onnxruntime execution provider, or OpenVINO's device name
    inference_precision: str  # what the matrix products run at: the bundle's precision, or OpenVINO's (bf16, f32)
    graphs: Mapping[str, Graph]
    choice: RuntimeChoice | None = None  # where ``--runtime auto`` timed the graphs: its figures, whether cached

    @property
    def runtimes(self) -> Mapping[str, Runtime] | None:
        """The runtime of each graph, where ``--runtime auto`` chose them by timing."""
        return None if self.choice is None else self.choice.graphs

    @classmethod
    def combine(cls, engines: Mapping[Runtime, "Engine"], choice: RuntimeChoice) -> "Engine":
        """Each graph from the engine ``choice`` names for it; named by the vision graph's engine, ``auto``
        where they differ."""
        chosen = choice.graphs
        vision = engines[chosen["vision"]]
        mixed = len(set(chosen.values())) > 1
        return cls(Runtime.AUTO if mixed else vision.runtime, vision.device, vision.inference_precision,
                   {name: engines[runtime].graphs[name] for name, runtime in chosen.items()}, choice)


def choose_providers(precision: str, requested: Sequence[str] | None = None) -> list[str]:
    """TensorRT, then CUDA, then CPU, as far as this onnxruntime offers them; a warning names any fallback."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise BundleError(f"execution provider(s) {missing} not available here; available: {available}")
        return list(requested)
    chosen = [p for p in GPU_PROVIDERS if p in available]
    chosen.append("CPUExecutionProvider")
    if len(chosen) == 1 and precision == "fp16":
        log.warning("fp16 bundle on CPUExecutionProvider: no CUDA or TensorRT provider here (onnxruntime offers %s); "
                    "it runs, but fp16 is meant for GPUs and is no faster than fp32 on a CPU", available)
    return chosen


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def _cpuinfo(field: str) -> str | None:
    """The first value of ``field`` in Linux's /proc/cpuinfo (None elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux reports them (empty elsewhere)."""
    return set((_cpuinfo("flags") or "").split())


def cpu_model() -> str:
    """The CPU's name (Linux's model name, else what the platform says)."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def open_engine(folder: Path, manifest: Manifest, runtime: Runtime, providers: Sequence[str] | None = None,
                threads: int | None = None, names: Sequence[str] | None = None,
                text_weights: TextWeights = TextWeights.ONCE) -> Engine:
    """Open the bundle's graphs (or only those ``names``) on ``runtime``, onnxruntime or OpenVINO (``auto`` is
    chosen by timing, in ``crashwatch.monitor.engines.choice``), onnxruntime's shared weights as ``text_weights``
    says."""
    if runtime is Runtime.TRITON:
        raise BundleError("a local bundle does not run on Triton: serve it (`crashwatch serve-triton`) and give the "
                          "monitor --model triton://HOST:PORT/NAME")
    if runtime is Runtime.OPENVINO:
        if not openvino_installed():
            raise BundleError("--runtime openvino: the openvino package is not installed "
                              "(pip install 'crashwatch[openvino]')")
        return _open_openvino(folder, manifest, threads, names or manifest.graphs)
    return _open_onnxruntime(folder, manifest, providers, threads, names or manifest.graphs, text_weights)


def _open_onnxruntime(folder: Path, manifest: Manifest, providers: Sequence[str] | None,
                      threads: int | None, names: Sequence[str], text_weights: TextWeights) -> Engine:
    import onnxruntime as ort

    chosen = choose_providers(manifest.precision, providers)
    shared = SharedWeights(folder, manifest if text_weights is TextWeights.ONCE else None)
    try:
        sessions = {name: ort.InferenceSession(str(folder / GRAPH_FILES[name]), shared.options(name, threads),
                                               providers=chosen)
                    for name in names}
    except Exception as err:  # onnxruntime raises its own exception types, not importable portably
        raise BundleError(f"{folder}: onnxruntime cannot load a graph ({err})") from None
    running = sessions[names[0]].get_providers()[0]
    if running != chosen[0]:
        log.warning("%s is installed but could not start (no usable GPU or driver?); running on %s", chosen[0], running)
    # ``keep``: the mapped shared weights live as long as a graph that reads them
    graphs = {name: (lambda feed, s=s, out=GRAPH_OUTPUTS[name], keep=shared: s.run([out], feed)[0])
              for name, s in sessions.items()}
    return Engine(Runtime.ONNXRUNTIME, running, manifest.precision, graphs)


def _session_options(threads: int | None):
    """Options whose thread pool stops spinning when a call returns. A session's pool otherwise spins its
    threads for a while after each call, and the next graph's call (the block or head after a vision pass,
    another camera's) ran beside them on the same cores: the 500M streaming stride took 568 and 579 ms so,
    and 512 and 511 ms with ``session.force_spinning_stop`` (docs/benchmarks.md). Within a call they still spin
    between ops: turning spinning off altogether was slower, the text graphs' small ops then waiting for their
    threads to wake."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.force_spinning_stop", "1")
    if threads:
        options.intra_op_num_threads = threads
    return options


class SharedWeights:
    """The bundle's ``text.onnx.data`` mapped once, its tensors handed to every session that names them, so the
    streaming layout's block and readout hold the text model's weights once (in the page cache, as read).
    Those sessions do not prepack their weights, as prepacking makes each session a private copy: the 500M's
    text passes ran some 20 % slower so, with 300 MB less resident (docs/benchmarks.md, "Memory";
    ``--text-weights prepacked`` takes the other side). Kept alive as long as the sessions run."""

    def __init__(self, folder: Path, manifest: Manifest | None) -> None:
        """``manifest`` None: nothing given, each session reads the shared file itself and prepacks."""
        self._values: dict[str, dict[str, Any]] = {}
        if manifest is None or not manifest.shared:
            return
        import onnxruntime as ort

        path = folder / SHARED_WEIGHTS
        try:
            self._mapped = np.memmap(path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as err:
            raise BundleError(f"{path}: cannot be mapped ({err})") from None
        for tensor in manifest.shared:
            values = np.frombuffer(self._mapped, np.dtype(tensor.dtype), tensor.bytes // np.dtype(tensor.dtype).itemsize,
                                   tensor.offset).reshape(tensor.shape)
            value = ort.OrtValue.ortvalue_from_numpy(values)
            for graph, name in tensor.names.items():
                self._values.setdefault(graph, {})[name] = value

    def options(self, graph: str, threads: int | None):
        """Session options for ``graph``: ``_session_options``, with its shared tensors given."""
        options = _session_options(threads)
        values = self._values.get(graph, {})
        if values:
            options.add_session_config_entry("session.disable_prepacking", "1")
        for name, value in values.items():
            options.add_initializer(name, value)
        return options


class _OpenVinoGraph:
    """One compiled OpenVINO model with its own infer request; a lock, as a request serves one call at a time."""

    def __init__(self, compiled) -> None:
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        with self._lock:
            self._request.infer(feed)
            return np.array(self._request.get_output_tensor(0).data)


def _open_openvino(folder: Path, manifest: Manifest, threads: int | None, names: Sequence[str]) -> Engine:
    import openvino as ov

    if manifest.openvino is not None:
        files = {name: manifest.openvino[name] for name in names}
    else:
        files = {name: GRAPH_FILES[name] for name in names}
        log.warning("%s has no OpenVINO graphs: OpenVINO runs its %s ONNX graphs, a path the export's parity check "
                    "did not cover%s; export with --openvino for graphs of its own", folder, manifest.precision,
                    " (and int8 ones slower than onnxruntime)" if manifest.precision == "int8" else "")
    core = ov.Core()
    config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    try:
        compiled = {name: core.compile_model(core.read_model(str(folder / file)), "CPU", config)
                    for name, file in files.items()}
    except RuntimeError as err:
        raise BundleError(f"{folder}: OpenVINO cannot load a graph ({err})") from None
    hint = compiled[names[0]].get_property("INFERENCE_PRECISION_HINT").get_type_name()
    precision = _PRECISION_NAMES.get(hint, hint)
    weights = (manifest.openvino or {}).get("weights")
    if isinstance(weights, dict) and "vision" in names and weights.get("vision") == "int8":
        # NNCF's int8 vision graph (``crashwatch.export.precision``), the other graphs at the CPU's precision
        precision = f"int8+{precision}"
    return Engine(Runtime.OPENVINO, "CPU", precision,
                  {name: _OpenVinoGraph(model) for name, model in compiled.items()})


_PRECISION_NAMES = {"bf16": "bf16", "f32": "fp32", "f16": "fp16"}  # OpenVINO's element type names -> ours
