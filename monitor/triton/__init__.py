"""A bundle on NVIDIA Triton: the model repository (``repository``), Triton's own server from the nvidia-pytriton
wheel (``server``), and the monitor's gRPC client (``client``), whose graphs the monitor runs like a local
bundle's (README, "Triton")."""

from __future__ import annotations

from contract.errors import CrashwatchError


class TritonError(CrashwatchError):
    """Triton cannot be used as asked: a bad model name or URL, a server that is not there at the start, or the
    packages missing; the message names the option, URL or file."""
