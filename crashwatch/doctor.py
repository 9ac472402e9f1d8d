"""``crashwatch doctor``: what a new box needs to run the monitor, checked one line at a time: Python and the
packages, the CPU and the runtime ``auto`` picks, the bundle, whether its model holds real time here, the video
codecs, audio outputs, free space where evidence goes, the broker, the ZeroMQ endpoint and the clock. Each check
says ``ok``, ``warn`` (works, but see the line) or ``fail`` (with what to do); the command exits 1 on a fail."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from crashwatch.contract.bundle import Manifest
from crashwatch.contract.errors import CrashwatchError

OK, WARN, FAIL = "ok", "warn", "fail"
MIN_PYTHON = (3, 10)
LOW_SPACE_BYTES = 2 * 10**9  # under an hour of 720p at the recording's bitrate: warn
RUNTIME_PACKAGES = ("numpy", "opencv-python-headless", "pyzmq", "paho-mqtt", "prometheus-client", "cryptography",
                    "sounddevice", "click", "pyyaml")


@dataclass(frozen=True)
class Finding:
    check: str
    level: str  # ok, warn, fail
    text: str  # what was found, and for warn or fail what to do


@dataclass(frozen=True)
class Setup:
    """What the checks look at: a bundle, the folders evidence goes to, a broker and the ZeroMQ endpoint (from
    the options, or from a cameras file)."""

    bundle: Path | None = None
    folders: Sequence[Path] = ()
    mqtt: str | None = None
    mqtt_password_file: Path | None = None
    mqtt_ca: Path | None = None
    pub: str = "tcp://127.0.0.1:5555"


def run_checks(setup: Setup) -> Iterator[Finding]:
    """Every check in order; one that raises is a ``fail`` with its message, and the others still run."""
    checks: list[tuple[str, Callable[[], Finding | list[Finding]]]] = [
        ("python", _python), ("packages", _packages), ("cpu", _cpu), ("bundle", lambda: _bundle(setup)),
        ("video", _video), ("audio", _audio), ("disk", lambda: _disk(setup)), ("broker", lambda: _broker(setup)),
        ("zeromq", lambda: _zeromq(setup)), ("clock", lambda: _clock(setup)),
    ]
    for name, check in checks:
        try:
            found = check()
        except CrashwatchError as err:
            found = Finding(name, FAIL, str(err))
        yield from (found if isinstance(found, list) else [found])


def _python() -> Finding:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info < MIN_PYTHON:
        return Finding("python", FAIL, f"{version} at {sys.executable}: crashwatch needs Python "
                                       f"{'.'.join(map(str, MIN_PYTHON))} or later")
    return Finding("python", OK, f"{version} at {sys.executable}")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _packages() -> list[Finding]:
    found = {package: _version(package) for package in RUNTIME_PACKAGES}
    missing = [package for package, version in found.items() if version is None]
    findings = [Finding("packages", FAIL, f"missing: {', '.join(missing)}: pip install crashwatch again") if missing
                else Finding("packages", OK, f"crashwatch {_version('crashwatch')}, " +
                             ", ".join(f"{p} {v}" for p, v in found.items()))]
    runtimes = {p: _version(p) for p in ("onnxruntime", "onnxruntime-gpu", "openvino")}
    installed = [f"{p} {v}" for p, v in runtimes.items() if v]
    findings.append(Finding("runtimes", OK, ", ".join(installed)) if installed else Finding(
        "runtimes", FAIL, "no inference runtime: pip install 'crashwatch[cpu]' (onnxruntime) or 'crashwatch[openvino]'"))
    training = [p for p in ("torch", "transformers") if _version(p)]
    findings.append(Finding("training", OK, "the training extra is installed (train, export)" if len(training) == 2
                            else "the training extra is not installed: the monitor needs none of it; train and export "
                                 "do (pip install 'crashwatch[train]')"))
    return findings


def _cpu() -> Finding:
    from crashwatch.monitor.engines.local import cpu_flags, cpu_model

    name = cpu_model()
    flags = cpu_flags()
    shown = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
             if f in flags]
    return Finding("cpu", OK, f"{name}, {os.cpu_count()} cores; {' '.join(shown) or 'no AVX2 or AVX-512'}")


def _bundle(setup: Setup) -> list[Finding]:
    from crashwatch.demo import DEMO_BUNDLE, is_demo_model
    from crashwatch.monitor.engines import choice
    from crashwatch.monitor.engines.local import Runtime
    from crashwatch.monitor.engines.model import RiskModel

    folder = setup.bundle or DEMO_BUNDLE
    manifest = Manifest.read(folder)
    manifest.verify_files(folder)
    demo = " (the demo model: generated scenes only)" if is_demo_model(manifest) else ""
    findings = [Finding("bundle", OK, f"{folder}: {manifest.precision}, {manifest.layout.value} layout, "
                                      f"#{manifest.content_hash}, threshold {manifest.threshold:.3f}, every file's "
                                      f"checksum verified{demo}")]
    model = RiskModel.open(folder, runtime=Runtime.AUTO)  # times each graph on each runtime where there is a choice
    engine = model.engine
    if engine.choice is None:
        findings.append(Finding("runtime", OK, f"auto runs {engine.runtime.value}: {choice.candidates(manifest)[1]}"))
    else:
        measured = "cached from an earlier start" if engine.choice.cached else "measured now, and cached"
        findings.append(Finding("runtime", OK, f"auto, {measured} ({choice.cache_path()}): {engine.choice.why}"))
    timing = model.timing()
    spacing = manifest.window.spacing
    figures = (f"vision {timing.encode_ms:.0f} ms a frame, score {timing.score_ms:.0f} ms a window; the window's "
               f"frames are {spacing:.2f} s apart")
    if timing.encode_ms + timing.score_ms > spacing * 1000:
        findings.append(Finding("real time", WARN, f"{figures}: this machine cannot hold real time with this bundle "
                                                   "(smaller frames, another runtime or fewer cameras help)"))
    else:
        findings.append(Finding("real time", OK, f"{figures}: holds real time"))
    return findings


def _video() -> Finding:
    import av

    from crashwatch.monitor.evidence.codecs import CODECS, probe_codec
    from crashwatch.monitor.evidence.segments import RecordingError

    writable = []
    for codec in CODECS:
        try:
            writable.append(probe_codec(codec))
        except RecordingError:
            pass
    if "h264" not in writable:
        return Finding("video", FAIL, f"PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info}) has no H.264 encoder: "
                                      "evidence cannot be recorded as browsers play it; pip install av (its wheels "
                                      "carry libx264)")
    return Finding("video", OK, f"PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info}); records "
                                f"{', '.join(writable)}")


def _audio() -> Finding:
    """What `crashwatch alarm` would play through: PortAudio's output devices, and espeak-ng for --voice."""
    try:
        import sounddevice
    except OSError as err:  # the package is there, the PortAudio library is not
        return Finding("audio", WARN, f"no PortAudio ({err}): `crashwatch alarm` cannot play; install libportaudio2")
    outputs = [d["name"] for d in sounddevice.query_devices() if d["max_output_channels"] > 0]
    voice = "espeak-ng for --voice" if shutil.which("espeak-ng") else "no espeak-ng (tones only; apt install espeak-ng)"
    if not outputs:
        return Finding("audio", WARN, f"no audio output: an in-cab warning would have nowhere to play ({voice})")
    return Finding("audio", OK, f"outputs: {', '.join(outputs)}; {voice}")


def _disk(setup: Setup) -> list[Finding]:
    if not setup.folders:
        return [Finding("disk", OK, "no --record or --events folder given: not checked")]
    findings = []
    for folder in setup.folders:
        existing = next(p for p in (folder, *folder.resolve().parents) if p.exists())
        usage = shutil.disk_usage(existing)
        free = f"{usage.free / 1e9:.1f} GB free of {usage.total / 1e9:.1f} GB"
        if not os.access(existing, os.W_OK):
            findings.append(Finding("disk", FAIL, f"{folder}: cannot write at {existing}: give a folder this user "
                                                  "may write"))
        elif usage.free < LOW_SPACE_BYTES:
            findings.append(Finding("disk", WARN, f"{folder}: {free}: little room for recordings and evidence"))
        else:
            findings.append(Finding("disk", OK, f"{folder}: {free}"))
    return findings


def _broker(setup: Setup) -> Finding:
    if setup.mqtt is None:
        return Finding("broker", OK, "no --mqtt broker given: not checked")
    from crashwatch.monitor.transports.mqtt import probe_broker
    from crashwatch.monitor.transports.mqtt_target import MqttTarget

    target = MqttTarget.parse(setup.mqtt, setup.mqtt_password_file, setup.mqtt_ca)
    problem = probe_broker(target)
    if problem is not None:
        return Finding("broker", FAIL, f"{target.display}: {problem}")
    return Finding("broker", OK, f"{target.display}: connected")


def _zeromq(setup: Setup) -> Finding:
    import zmq

    from crashwatch.monitor.transports.zeromq import check_endpoint

    endpoint = check_endpoint(setup.pub)
    socket = zmq.Context.instance().socket(zmq.XPUB)
    try:
        socket.bind(endpoint)
    except zmq.ZMQError as err:
        return Finding("zeromq", WARN, f"{endpoint}: cannot bind ({err.strerror}): is a monitor running there? "
                                       "Give another --pub")
    finally:
        socket.close(0)
    return Finding("zeromq", OK, f"{endpoint}: free to publish on")


def _clock(setup: Setup) -> Finding:
    from crashwatch.demo import DEMO_BUNDLE

    now = time.time()
    created = Manifest.read(setup.bundle or DEMO_BUNDLE).raw.get("created_at")
    exported = datetime.datetime.fromisoformat(created).timestamp() if created else 0.0
    shown = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat(timespec="seconds")
    if now < exported:
        return Finding("clock", FAIL, f"{shown} is before the bundle was exported ({created}): set the clock; alerts "
                                      "and evidence are stamped with it")
    synced = _ntp_synchronized()
    if synced is False:
        return Finding("clock", WARN, f"{shown}: not synchronised (timedatectl): enable NTP so that evidence times "
                                      "are right")
    return Finding("clock", OK, shown + ("" if synced is None else ", synchronised"))


def _ntp_synchronized() -> bool | None:
    if shutil.which("timedatectl") is None:
        return None
    try:
        result = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], capture_output=True,
                                text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = result.stdout.strip()
    return None if result.returncode != 0 or value not in ("yes", "no") else value == "yes"
