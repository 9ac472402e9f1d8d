"""The monitor's side of a Triton server: ``--model triton://HOST:PORT/NAME`` over gRPC (``tritonclient.grpc``).

``TritonClient`` checks at the start that the server answers and serves NAME's three models, fetches the bundle's
manifest and prompt arrays from ``NAME_bundle`` (checked against the manifest's checksums, so a client needs no
copy of the bundle), and makes the ``Engine`` whose two graphs call ``NAME_vision`` and ``NAME_head``: the
runtime ``triton``. Every call has a deadline. At the start a server that is away is a ``TritonError`` naming the
URL; later a failed call is an ``EngineError``, which the monitor reports in ``status`` and survives. gRPC's
reconnection backoff is capped at a second: its default lets the wait between attempts grow to 2 minutes in a long
outage, which would keep the monitor blind that long after the server is back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from crashwatch.contract.bundle import MANIFEST, PROMPT_IDS, TOKEN_EMBEDDINGS, TOKEN_IDS, Manifest, read_array
from crashwatch.contract.errors import CrashwatchError
from crashwatch.contract.prompt import PromptLayout
from crashwatch.monitor.engines.local import Engine, EngineError, Runtime

log = logging.getLogger(__name__)

SCHEME = "triton"
DEFAULT_TIMEOUT_S = 10.0
CHANNEL_ARGS = [
    ("grpc.max_send_message_length", 2**31 - 1),  # tritonclient's own defaults, which channel_args replace
    ("grpc.max_receive_message_length", 2**31 - 1),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
# The bundle model's outputs: each the bytes of one file, named by the file's stem.
BUNDLE_FILES = {Path(name).stem: name for name in (MANIFEST, PROMPT_IDS, TOKEN_IDS,
                                                   TOKEN_EMBEDDINGS)}


class TritonError(CrashwatchError):
    """Triton cannot be used as asked: a bad model name or URL, a server that is not there at the start, or the
    packages missing; the message names the option, URL or file."""


def check_servable(manifest: Manifest, where: str) -> None:
    """Only the smolvlm layout's graphs are served: a streaming bundle's scorer keeps every frame's keys and values
    between strides in the monitor's own memory, which a stateless Triton model would have to be sent each time."""
    if manifest.layout is not PromptLayout.SMOLVLM:
        raise TritonError(f"{where}: a {manifest.layout.value!r}-layout bundle is not served on Triton (its frames' "
                          "keys and values are kept by the monitor between strides); run it locally with --bundle")


def model_name(name: str, part: str) -> str:
    """The Triton model of one part (``vision``, ``head``, ``bundle``) of the bundle served as ``name``."""
    return f"{name}_{part}"


@dataclass(frozen=True)
class TritonTarget:
    host: str
    port: int
    name: str

    @classmethod
    def parse(cls, url: str) -> "TritonTarget":
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        name = parts.path.strip("/")
        if parts.scheme != SCHEME or not parts.hostname or port is None or not name or "/" in name:
            raise TritonError(f"--model {url!r}: expected {SCHEME}://HOST:PORT/NAME (the gRPC port, and the name "
                              "the repository was exported or served as)")
        return cls(parts.hostname, port, name)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{SCHEME}://{self.address}/{self.name}"


def _tritonclient():
    try:
        import tritonclient.grpc as grpcclient
    except ImportError:
        raise TritonError("--model triton://...: the tritonclient package is not installed "
                          "(pip install 'crashwatch[triton]')") from None
    return grpcclient


class TritonClient:
    """One gRPC channel to a server that serves a crashwatch repository as ``target.name``."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        grpcclient = _tritonclient()
        from tritonclient.utils import InferenceServerException

        self._exception = InferenceServerException
        self.target = TritonTarget.parse(url)
        self.timeout = timeout
        self._grpc = grpcclient
        self._client = grpcclient.InferenceServerClient(self.target.address, channel_args=CHANNEL_ARGS)
        self.configs: dict[str, dict[str, Any]] = {}
        try:
            if not self._client.is_server_ready(client_timeout=timeout):
                raise TritonError(f"{self.target.url}: the server at {self.target.address} answers but is not ready")
            for part in ("vision", "head", "bundle"):
                model = model_name(self.target.name, part)
                if not self._client.is_model_ready(model, client_timeout=timeout):
                    served = [m["name"] for m in self._client.get_model_repository_index(
                        as_json=True, client_timeout=timeout).get("models", [])]
                    raise TritonError(f"{self.target.url}: the server has no ready model {model!r} (it has "
                                      f"{', '.join(served) or 'none'}); is {self.target.name!r} the --name it was "
                                      "exported or served with?")
                self.configs[part] = self._client.get_model_config(model, as_json=True,
                                                                   client_timeout=timeout)["config"]
        except InferenceServerException as err:
            raise TritonError(f"{self.target.url}: no answer from a Triton server at {self.target.address} within "
                              f"{timeout:g} s ({err})") from None

    def fetch_bundle(self) -> tuple[Manifest, dict[str, np.ndarray]]:
        """The manifest and the prompt arrays the bundle model serves, the arrays checked against the manifest."""
        model = model_name(self.target.name, "bundle")
        where = f"{self.target.url} ({model})"
        outputs = [self._grpc.InferRequestedOutput(name) for name in BUNDLE_FILES]
        try:
            result = self._client.infer(model, [], outputs=outputs, client_timeout=self.timeout)
        except self._exception as err:
            raise TritonError(f"{where}: the bundle's files could not be fetched ({err})") from None
        files = {BUNDLE_FILES[name]: result.as_numpy(name).tobytes() for name in BUNDLE_FILES}
        manifest = Manifest.from_json(files.pop(MANIFEST), f"{where}/{MANIFEST}")
        check_servable(manifest, where)
        for name, data in files.items():
            manifest.verify_received(name, data, where)
        return manifest, {name: read_array(data, f"{where}/{name}") for name, data in files.items()}

    def engine(self, manifest: Manifest) -> Engine:
        kind = self.configs["vision"].get("instance_group", [{}])[0].get("kind", "KIND_CPU")
        return Engine(Runtime.TRITON, f"{kind} at {self.target.address}", manifest.precision,
                      {part: TritonGraph(self, part) for part in ("vision", "head")})

    def infer(self, part: str, feed: dict[str, np.ndarray], output: str) -> np.ndarray:
        """One call of a graph model within the deadline, as Triton shapes its output; a failure (server away,
        slow, refusing) is an ``EngineError`` naming the model's URL."""
        model = model_name(self.target.name, part)
        inputs = []
        for spec in self.configs[part]["input"]:
            array = np.ascontiguousarray(feed[spec["name"]])
            tensor = self._grpc.InferInput(spec["name"], list(array.shape), spec["data_type"].removeprefix("TYPE_"))
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        try:
            result = self._client.infer(model, inputs, outputs=[self._grpc.InferRequestedOutput(output)],
                                        client_timeout=self.timeout)
        except self._exception as err:
            raise EngineError(f"{SCHEME}://{self.target.address}/{model}", str(err)) from None
        return result.as_numpy(output)


class TritonGraph:
    """A graph model called like a local graph: the named arrays in, its output out in the graph's own shape (the
    head's logits [batch], not Triton's [batch, 1]); more frames than the model batches go in several calls."""

    def __init__(self, client: TritonClient, part: str) -> None:
        config = client.configs[part]
        self.client = client
        self.part = part
        self.batch_input = config["input"][0]["name"]
        output = config["output"][0]
        self.output = output["name"]
        self.output_dims = [int(d) for d in (output["reshape"].get("shape", []) if "reshape" in output
                                             else output["dims"])]
        self.max_batch = int(config.get("max_batch_size", 0))

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        count = len(feed[self.batch_input])
        step = self.max_batch or count
        parts = [self.client.infer(self.part, {name: array[start:start + step] for name, array in feed.items()},
                                   self.output).reshape(-1, *self.output_dims)
                 for start in range(0, count, step)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
