"""The cameras file of ``crashwatch monitor --config``: many cameras, one model, declared once.

Read with the same builder as the training configs (``contract.config``), so an unknown key or a bad value is
refused naming the file and the key (``cameras.yaml: cameras[1].alert.on: ...``). Relative paths are taken
from the directory the monitor runs in, as the command line's are.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract.config import ConfigError, Fail, build, read_yaml
from monitor.fleet import PROCESS_CAMERA
from monitor.monitor import MonitorOptions
from monitor.publisher import DEFAULT_ENDPOINT, PublisherError, check_endpoint
from monitor.recording import CODEC_CHOICES, KeepPolicy
from monitor.runtime import LOCAL_RUNTIMES, Runtime
from monitor.source import SourceError, parse_source

CAMERA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@dataclass
class AlertSettings:
    """``--alert-on``, ``--alert-off``, ``--alert-min-on`` and ``--alert-min-off`` of one camera."""

    on: float | None = None  # default: the bundle's calibrated threshold
    off: float | None = None
    min_on_seconds: float = 0.0
    min_off_seconds: float = 1.0


@dataclass
class MqttSettings:
    """The ``--mqtt*`` options, shared by every camera (each has its own topics, outbox and last will)."""

    url: str
    prefix: str = "crashwatch"
    ca: str | None = None
    password_file: str | None = None
    risk: bool = False
    outbox_dir: str | None = None  # default: the user's state folder, one outbox per camera


@dataclass
class CameraSettings:
    name: str
    source: str
    stride: float | None = None
    replay: str = "realtime"
    loop: bool = False
    alert: AlertSettings = field(default_factory=AlertSettings)
    record: str | None = None
    record_keep: str = "1GB,24h"
    record_codec: str = "auto"
    events: str | None = None
    preview: bool = False


@dataclass
class CamerasConfig:
    cameras: list[CameraSettings]
    bundle: str | None = None  # default: the demo bundle
    model: str | None = None  # instead of bundle: triton://HOST:PORT/NAME
    model_timeout: float | None = None  # seconds a call to that server may take
    pub: str = DEFAULT_ENDPOINT
    runtime: str = Runtime.AUTO.value
    threads: int | None = None
    mqtt: MqttSettings | None = None

    def options(self, demo_model: bool = False) -> list[MonitorOptions]:
        """Each camera's monitor options."""
        return [camera_options(camera, demo_model) for camera in self.cameras]


def camera_options(camera: CameraSettings, demo_model: bool) -> MonitorOptions:
    alert: dict[str, Any] = {"min_on_seconds": camera.alert.min_on_seconds, "min_off_seconds": camera.alert.min_off_seconds}
    if camera.alert.on is not None:
        alert["on"] = camera.alert.on
    if camera.alert.off is not None:
        alert["off"] = camera.alert.off
    return MonitorOptions(
        source=parse_source(camera.source), stride=camera.stride, replay=camera.replay, loop=camera.loop,
        camera=camera.name, events_dir=Path(camera.events) if camera.events else None,
        record_dir=Path(camera.record) if camera.record else None, record_keep=KeepPolicy.parse(camera.record_keep),
        record_codec=camera.record_codec, alert=alert, demo_model=demo_model, preview=camera.preview)


def load_cameras(path: Path) -> CamerasConfig:
    """Read and check a cameras file; ConfigError naming the file and the key on any problem."""
    data = read_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: the file is empty; it needs at least `cameras:` with one camera")
    return build(CamerasConfig, data, str(path), _check)


def _number(fail: Fail, key: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        fail(key, f"must be a number from {low:g} to {high:g}, got {value!r}")


def _check(obj: Any, fail: Fail) -> None:
    """The values each part of a cameras file may hold (``contract.config.build`` calls it, inner parts first)."""
    if isinstance(obj, AlertSettings):
        for key in ("on", "off"):
            if getattr(obj, key) is not None:
                _number(fail, key, getattr(obj, key), 0, 1)
        for key in ("min_on_seconds", "min_off_seconds"):
            _number(fail, key, getattr(obj, key), 0, 3600)
        if obj.on is not None and obj.off is not None and obj.off > obj.on:
            fail("off", f"{obj.off} is above on ({obj.on}): an alert would end before it starts")
    elif isinstance(obj, MqttSettings):
        if not isinstance(obj.url, str) or not obj.url.startswith(("mqtt://", "mqtts://")):
            fail("url", "must be mqtt://[USER[:PASS]@]HOST[:PORT] or mqtts://...")
    elif isinstance(obj, CameraSettings):
        if not isinstance(obj.name, str) or not CAMERA_NAME.fullmatch(obj.name) or obj.name == PROCESS_CAMERA:
            fail("name", f"{obj.name!r}: letters, digits, - and _ (up to 64, not {PROCESS_CAMERA!r}): it names "
                         "topics, folders and files")
        if not isinstance(obj.source, (str, int)):
            fail("source", f"must be a webcam index, a URL or a video file, got {obj.source!r}")
        obj.source = str(obj.source)
        try:
            spec = parse_source(obj.source)
        except SourceError as err:
            fail("source", str(err))
        if obj.stride is not None:
            _number(fail, "stride", obj.stride, 0.001, 60)
        if obj.replay not in ("realtime", "fast"):
            fail("replay", f"must be realtime or fast, got {obj.replay!r}")
        if obj.replay == "fast" and spec.live:
            fail("replay", "fast is for files; a live source runs in real time")
        try:
            KeepPolicy.parse(str(obj.record_keep))
        except ValueError as err:
            fail("record_keep", str(err))
        if not isinstance(obj.preview, bool):
            fail("preview", f"must be true or false, got {obj.preview!r}")
        if obj.record_codec not in CODEC_CHOICES:
            fail("record_codec", f"must be one of {', '.join(CODEC_CHOICES)}, got {obj.record_codec!r}")
    elif isinstance(obj, CamerasConfig):
        if not obj.cameras:
            fail("cameras", "list at least one camera")
        names = [c.name for c in obj.cameras]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            fail("cameras", f"camera name(s) {twice} used more than once: messages and files are told apart by name")
        try:
            check_endpoint(obj.pub)
        except PublisherError as err:
            fail("pub", str(err))
        if obj.model is not None and (obj.bundle is not None or not str(obj.model).startswith("triton://")):
            fail("model", "a Triton server's model, triton://HOST:PORT/NAME, instead of `bundle` (not both)")
        if obj.model_timeout is not None:
            _number(fail, "model_timeout", obj.model_timeout, 0.001, 600)
        if obj.runtime not in [r.value for r in LOCAL_RUNTIMES]:
            fail("runtime", f"must be one of {', '.join(r.value for r in LOCAL_RUNTIMES)}, got {obj.runtime!r}")
        if obj.threads is not None and (isinstance(obj.threads, bool) or not isinstance(obj.threads, int)
                                        or not 1 <= obj.threads <= 256):
            fail("threads", f"must be a whole number from 1 to 256, got {obj.threads!r}")
