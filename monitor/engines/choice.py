"""``--runtime auto``: which runtime serves each of a bundle's graphs, chosen by timing them on this CPU.

A rule on CPU flags (AMX: OpenVINO) picked wrong where OpenVINO's bf16 lost to onnxruntime's int8 (docs/
benchmarks.md), and a graph may be faster on one runtime while the next is faster on the other. So where more
than one runtime can run a bundle (its OpenVINO graphs and the openvino package present, no GPU), each graph is
timed on each runtime at first use, on the inputs a real window gives it, and the faster serves it. The choice
and its figures are cached per CPU model, thread count, bundle content hash and runtime versions, so later
starts open only what they use; ``--runtime`` still forces one runtime.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from crashwatch.contract.bundle import Manifest
from crashwatch.monitor.engines.local import GPU_PROVIDERS, Runtime, RuntimeChoice, cpu_model, openvino_installed

log = logging.getLogger(__name__)

CACHE_ENV = "CRASHWATCH_CACHE_DIR"
CACHE_FILE = "runtimes.json"


def candidates(manifest: Manifest, providers: Sequence[str] | None = None) -> tuple[list[Runtime], str]:
    """The runtimes that may serve this bundle here, and why only one where there is one."""
    import onnxruntime as ort

    if any(p in GPU_PROVIDERS for p in providers or ort.get_available_providers()):
        return [Runtime.ONNXRUNTIME], "a GPU provider is available to onnxruntime"
    if manifest.openvino is None:
        return [Runtime.ONNXRUNTIME], "the bundle has no OpenVINO graphs (export with --openvino)"
    if not openvino_installed():
        return [Runtime.ONNXRUNTIME], "the openvino package is not installed"
    return [Runtime.ONNXRUNTIME, Runtime.OPENVINO], "each graph timed on both runtimes"


def cache_path() -> Path:
    """``$CRASHWATCH_CACHE_DIR/runtimes.json``, else in the user's cache folder (``$XDG_CACHE_HOME`` or
    ``~/.cache`` on Linux and macOS, ``%LOCALAPPDATA%`` on Windows)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / CACHE_FILE
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "crashwatch" / CACHE_FILE


def cache_key(manifest: Manifest, threads: int | None) -> str:
    """What a measurement holds for: this CPU, this many threads, this model, these runtime versions."""
    import onnxruntime as ort
    import openvino as ov

    return (f"{cpu_model()} | threads {threads or os.cpu_count()} | bundle {manifest.content_hash} | "
            f"onnxruntime {ort.__version__} | openvino {ov.get_version()}")


def cached(key: str) -> RuntimeChoice | None:
    """The choice measured before for ``key`` (None: none, or a cache that cannot be read)."""
    try:
        entry = json.loads(cache_path().read_text(encoding="utf-8")).get(key)
        return None if entry is None else RuntimeChoice.from_json(entry)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        log.warning("%s: cannot read the runtime choices cached there (%s): measuring again", cache_path(), err)
        return None


def remember(key: str, choice: RuntimeChoice) -> None:
    """Keep ``choice`` for ``key``; a cache that cannot be written costs a measurement at the next start."""
    path = cache_path()
    try:
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            entries = {}
        entries[key] = choice.to_json()
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.tmp")
        temp.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
        os.replace(temp, path)
    except OSError as err:
        log.warning("%s: cannot keep the runtime choice there (%s): the next start measures again", path, err)


def pick(timings_ms: dict[str, dict[str, float]]) -> RuntimeChoice:
    """Each graph on its faster runtime."""
    graphs = {name: Runtime(min(times, key=times.__getitem__)) for name, times in timings_ms.items()}
    why = "; ".join(f"{name} on {graphs[name].value} ("
                    + ", ".join(f"{r} {ms:.1f} ms" for r, ms in sorted(times.items(), key=lambda item: item[1])) + ")"
                    for name, times in timings_ms.items())
    return RuntimeChoice(graphs, f"timed here: {why}", timings_ms)
