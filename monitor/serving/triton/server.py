"""``crashwatch serve-triton``: Triton's own server binary, from the nvidia-pytriton wheel, serving a bundle.

The wheel carries ``tritonserver`` with the Python backend only, so the graphs run in crashwatch's Python model
with onnxruntime (``backend/model.py``), under the model names, inputs, outputs and batching of the repository
``export-triton`` writes. Three things the wheel needs, which PyTriton's own launcher arranges too: the backend's
stub for this Python version beside the backend library; the running interpreter's ``libpython`` first in
``LD_LIBRARY_PATH`` (the stub links ``libpython3.X.so.1.0`` by name and would otherwise find the system's, whose
standard library is another build's: the models then fail to load); and the interpreter's ``bin`` folder first in
``PATH``, from which the embedded interpreter finds its prefix, and so the venv's packages (numpy, onnxruntime).
"""

from __future__ import annotations

import collections
import ctypes
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from crashwatch.contract.bundle import Manifest
from crashwatch.monitor.engines.triton import TritonError, model_name
from crashwatch.monitor.serving.triton.repository import Backend, RepositoryOptions, write_repository

log = logging.getLogger(__name__)

EXIT_TIMEOUT_S = 5  # Triton's own wait for requests in flight when asked to stop
START_TIMEOUT_S = 120.0
SHM_PREFIX = "crashwatch_triton_"
# Lines of the server that say nothing wrong on a machine without a GPU: logged at debug level only.
HARMLESS = ("Failed to initialize NVML", "DCGM unable to start", "CudaDriverHelper has not been initialized",
            "Unable to allocate pinned system memory")


@dataclass(frozen=True)
class Ports:
    grpc: int
    http: int | None = None  # None: no HTTP endpoint
    metrics: int | None = None  # None: no metrics endpoint
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class Wheel:
    """Where the nvidia-pytriton wheel keeps Triton's server, its Python backend and their libraries."""

    server: Path
    backend: Path
    stub: Path
    libraries: Path

    @classmethod
    def find(cls) -> "Wheel":
        try:
            spec = importlib.util.find_spec("pytriton")
        except ImportError:
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise TritonError("serve-triton needs Triton's server binary from the nvidia-pytriton wheel, which is not "
                              "installed: pip install 'crashwatch[triton]' (Linux x86-64 with glibc 2.35 or newer), "
                              "or serve `crashwatch export-triton`'s repository with NVIDIA's Triton container")
        root = Path(list(spec.submodule_search_locations)[0])
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        wheel = cls(root / "tritonserver" / "bin" / "tritonserver", root / "tritonserver" / "backends" / "python",
                    root / "tritonserver" / "python_backend_stubs" / version / "triton_python_backend_stub",
                    root.parent / "nvidia_pytriton.libs")
        for path, what in ((wheel.server, "the tritonserver binary"), (wheel.backend, "the Python backend"),
                           (wheel.stub, f"a Python-backend stub for Python {version}")):
            if not path.exists():
                raise TritonError(f"{path}: the nvidia-pytriton wheel in {root} has no {what}")
        return wheel


def interpreter_library_dir() -> str | None:
    """The folder of this interpreter's shared ``libpython``, which the stub must load; None if it has none."""
    folder, name = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME") or ""
    if folder and ".so" in name and (Path(folder) / name).exists():
        return folder
    log.warning("this Python (%s) has no shared libpython: Triton's Python-backend stub will load the system's, "
                "which works only if it is the same Python build", sys.executable)
    return None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """A SIGKILLed serve-triton takes its server along instead of leaving it holding the port (Linux)."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class TritonServer:
    """Triton's server from the wheel on a Python-backend repository of ``bundle``, in a working folder of its
    own; ``start`` returns once every model is ready, ``stop`` ends it (SIGINT, then SIGKILL if it lingers)."""

    def __init__(self, bundle: Path, options: RepositoryOptions, ports: Ports,
                 start_timeout: float = START_TIMEOUT_S) -> None:
        self.bundle = bundle
        self.options = options
        self.ports = ports
        self.start_timeout = start_timeout
        self.wheel = Wheel.find()
        self.url = f"triton://{ports.host}:{ports.grpc}/{options.name}"
        self.manifest: Manifest | None = None  # the bundle's, once started
        self._workdir: Path | None = None
        self._process: subprocess.Popen | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=30)  # for the error if it fails
        self._reader: threading.Thread | None = None

    def start(self) -> "TritonServer":
        _remove_orphaned_shared_memory()
        self._workdir = Path(tempfile.mkdtemp(prefix="crashwatch-triton-"))
        try:
            self.manifest = write_repository(self.bundle, self._workdir / "repository", self.options, Backend.PYTHON,
                                             link=True)
            backends = self._workdir / "backends"
            shutil.copytree(self.wheel.backend, backends / "python", ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copy2(self.wheel.stub, backends / "python" / "triton_python_backend_stub")
            self._process = process = subprocess.Popen(
                self._command(self._workdir, backends), env=self._environment(), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
            self._reader = reader = threading.Thread(target=self._read_log, name="tritonserver-log", daemon=True)
            reader.start()
            self._wait_ready(process, reader)
        except BaseException:
            self.stop()
            raise
        return self

    def _command(self, workdir: Path, backends: Path) -> list[str]:
        p = self.ports
        command = [str(self.wheel.server), "--model-repository", str(workdir / "repository"),
                   "--backend-directory", str(backends),
                   "--backend-config", f"python,shm-region-prefix-name={SHM_PREFIX}{os.getpid()}_",
                   "--grpc-address", p.host, "--grpc-port", str(p.grpc),
                   "--allow-http", str(p.http is not None).lower(),
                   "--allow-metrics", str(p.metrics is not None).lower(),
                   "--exit-timeout-secs", str(EXIT_TIMEOUT_S), "--strict-readiness", "true", "--log-info", "false"]
        if p.http is not None:
            command += ["--http-address", p.host, "--http-port", str(p.http)]
        if p.metrics is not None:
            command += ["--metrics-address", p.host, "--metrics-port", str(p.metrics)]
        return command

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        libraries = [interpreter_library_dir(), str(self.wheel.libraries), env.get("LD_LIBRARY_PATH")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(folder for folder in libraries if folder)
        return env

    def _read_log(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for raw in self._process.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip()
            if not line:
                continue
            self._tail.append(line)
            if any(harmless in line for harmless in HARMLESS):
                log.debug("tritonserver: %s", line)
            elif line[:1] == "E":
                log.error("tritonserver: %s", line)
            elif line[:1] == "W":
                log.warning("tritonserver: %s", line)
            else:
                log.info("tritonserver: %s", line)

    def _wait_ready(self, process: subprocess.Popen, reader: threading.Thread) -> None:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        client = grpcclient.InferenceServerClient(f"{self.ports.host}:{self.ports.grpc}")
        deadline = time.monotonic() + self.start_timeout
        try:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    reader.join(timeout=2)
                    raise TritonError(f"{self.bundle}: tritonserver exited with code {process.returncode} "
                                      f"before it was ready; its last lines:\n" + "\n".join(self._tail))
                try:
                    if client.is_server_ready(client_timeout=1.0):
                        return
                except InferenceServerException:
                    pass
                time.sleep(0.25)
        finally:
            client.close()
        raise TritonError(f"{self.url}: tritonserver not ready after {self.start_timeout:.0f} s; its last lines:\n"
                          + "\n".join(self._tail))

    def models(self) -> list[str]:
        return [model_name(self.options.name, part) for part in ("vision", "head", "bundle")]

    @property
    def exit_code(self) -> int | None:
        """The server's exit status once it has ended (by itself or by ``stop``), else None."""
        return None if self._process is None else self._process.poll()

    def stop(self) -> None:
        """Ask the server to stop as Ctrl-C does (it finishes requests in flight), kill it if it lingers, and
        remove the working folder and the backend's shared memory."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=EXIT_TIMEOUT_S + 5)
            except subprocess.TimeoutExpired:
                log.warning("tritonserver did not stop within %d s; killing it", EXIT_TIMEOUT_S + 5)
                self._process.kill()
                self._process.wait()
        if self._reader is not None:
            self._reader.join(timeout=2)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        for region in Path("/dev/shm").glob(f"{SHM_PREFIX}{os.getpid()}_*"):
            region.unlink(missing_ok=True)

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *_) -> None:
        self.stop()


def _remove_orphaned_shared_memory() -> None:
    """Shared memory the Python backend of a serve-triton that was killed left behind (its process is gone)."""
    for region in Path("/dev/shm").glob(f"{SHM_PREFIX}*_*"):
        pid = region.name[len(SHM_PREFIX):].split("_", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            region.unlink(missing_ok=True)


def serve(bundle: Path, options: RepositoryOptions, ports: Ports, stop: threading.Event) -> int:
    """Serve ``bundle`` until ``stop`` is set (Ctrl-C, SIGTERM) or the server ends by itself; returns its exit
    status (0 after a requested stop)."""
    if ports.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: beyond loopback, anyone who reaches the port can run the model (Triton has "
                    "no authentication here)", ports.host)
    with TritonServer(bundle, options, ports) as server:
        manifest = server.manifest
        assert manifest is not None  # read by start()
        batching = ("int8: each request alone" if manifest.precision == "int8" else
                    f"{manifest.precision}: dynamic batching up to {options.max_batch}")
        log.info("serving %s (%s) as %s on grpc://%s:%d; monitors take --model %s (Ctrl-C stops)", bundle, batching,
                 ", ".join(server.models()), ports.host, ports.grpc, server.url)
        while not stop.wait(0.5):
            if server.exit_code is not None:
                log.error("tritonserver exited by itself with code %d", server.exit_code)
                return server.exit_code or 1
    return 0
