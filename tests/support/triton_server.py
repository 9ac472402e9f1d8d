"""A real Triton server on loopback for the Triton tests: ``crashwatch serve-triton`` as a process, which runs
Triton's own ``tritonserver`` from the nvidia-pytriton wheel. A test may stall it (SIGSTOP), kill it and start it
again on the same port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.shared import REPO


def need_triton() -> None:
    """Skip, saying why, where the wheel's server or the gRPC client is not installed."""
    pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed (the triton extra)")
    from crashwatch.monitor.engines.triton import TritonError
    from crashwatch.monitor.serving.triton.server import Wheel

    try:
        Wheel.find()
    except TritonError as err:
        pytest.skip(f"no Triton server here: {err}")


def tritonserver_pids(port: int) -> list[int]:
    """The tritonserver processes listening for gRPC on ``port`` (read from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"tritonserver") and b"--grpc-port" in argv and str(port).encode() in argv:
            pids.append(int(entry.name))
    return pids


class ServedBundle:
    """``crashwatch serve-triton --bundle BUNDLE --port PORT --name NAME [options]``, its log in ``folder``, and
    its temporary files in ``folder/tmp`` (so a test can see it removed them)."""

    def __init__(self, bundle: Path, port: int, folder: Path, name: str = "cw", options: tuple[str, ...] = ()) -> None:
        self.bundle, self.port, self.name, self.options = bundle, port, name, options
        self.folder = folder
        self.tmp = folder / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.log = folder / "serve-triton.log"
        self.url = f"triton://127.0.0.1:{port}/{name}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> "ServedBundle":
        import tritonclient.grpc as grpcclient

        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "crashwatch", "serve-triton", "--bundle", str(self.bundle), "--port",
                 str(self.port), "--name", self.name, *self.options], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "TMPDIR": str(self.tmp)})
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{self.port}")
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                exited = self.process.poll()
                assert exited is None, f"serve-triton exited ({exited}):\n{self.log_text()}"
                try:
                    if client.is_server_ready(client_timeout=1):
                        return self
                except Exception:  # not listening yet
                    pass
                time.sleep(0.25)
        finally:
            client.close()
        raise AssertionError(f"serve-triton not ready within {timeout} s:\n{self.log_text()}")

    def server_pids(self) -> list[int]:
        return tritonserver_pids(self.port)

    def kill(self) -> None:
        """SIGKILL serve-triton; its tritonserver dies with it (parent-death signal): waited for."""
        self.process.kill()
        self.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while self.server_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not self.server_pids(), "tritonserver outlived the serve-triton that was killed"

    def interrupt(self, timeout: float = 20) -> int:
        """Ctrl-C: SIGINT to serve-triton; its exit status."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=timeout)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            for pid in self.server_pids():
                os.kill(pid, signal.SIGCONT)  # a stalled server would not see the SIGINT
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
