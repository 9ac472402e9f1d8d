"""The cameras file of ``crashwatch monitor --config``: many cameras, one model, declared once.

Its process-level part is read with the same builder as the training configs (``crashwatch.contract.config``);
each camera's entry holds ``MonitorOptions``' settings by their file keys, each value checked by the setting's
own parser, as on the command line. An unknown key or a bad value is refused naming the file and the key
(``cameras.yaml: cameras[1].alert.on: ...``). Relative paths are taken from the directory the monitor runs in,
as the command line's are.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from crashwatch.contract.config import ConfigError, Fail, build, read_yaml
from crashwatch.monitor.engines.local import LOCAL_RUNTIMES, Runtime
from crashwatch.monitor.pipeline.options import SETTINGS, MonitorOptions, OptionsError, number
from crashwatch.monitor.pipeline.source import SourceError
from crashwatch.monitor.transports.zeromq import DEFAULT_ENDPOINT, PublisherError, check_endpoint


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
class CamerasConfig:
    """A cameras file: what the process serves them with, and each camera as ``MonitorOptions`` (its entries are
    ``MonitorOptions``' settings, by their file keys)."""

    cameras: list[Any]
    bundle: str | None = None  # default: the demo bundle
    model: str | None = None  # instead of bundle: triton://HOST:PORT/NAME
    model_timeout: float | None = None  # seconds a call to that server may take
    pub: str = DEFAULT_ENDPOINT
    runtime: str = Runtime.AUTO.value
    threads: int | None = None
    mqtt: MqttSettings | None = None

    def options(self, demo_model: bool = False) -> list[MonitorOptions]:
        """Each camera's monitor options."""
        return [dataclasses.replace(camera, demo_model=demo_model) for camera in self.cameras]


def camera_from_file(entry: Any, path: str, where: str) -> MonitorOptions:
    """One camera of a cameras file (at ``where``, e.g. ``cameras[1]``) as monitor options, every value checked by
    its setting; ``ConfigError`` naming the file and the key."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: {where} must be a mapping, got {type(entry).__name__}")
    values = _flat(entry, path, where)
    unknown = sorted(set(values) - set(FILE_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(f'{where}.{key}' for key in unknown)}; "
                          f"known: {', '.join(FILE_KEYS)}")
    missing = [key for key in ("name", "source") if key not in values]
    if missing:
        raise ConfigError(f"{path}: {where}: missing key(s) {', '.join(missing)}")
    parsed = {}
    for key, value in values.items():
        setting = FILE_KEYS[key]
        try:
            parsed[setting.name] = setting.parse(value)
        except (ValueError, SourceError) as err:
            raise ConfigError(f"{path}: {where}.{key}: {err}") from None
    options = MonitorOptions(**parsed)
    try:
        options.check()
    except OptionsError as err:
        key = err.setting.key if err.setting is not None else ""
        raise ConfigError(f"{path}: {where}.{key}: {err.why}") from None
    return options


FILE_KEYS = {setting.key: setting for setting in SETTINGS}
NESTED = {key.split(".")[0] for key in FILE_KEYS if "." in key}  # keys that hold a mapping (``alert``)


def _flat(entry: dict[Any, Any], path: str, where: str) -> dict[str, Any]:
    """A camera's entry with nested keys dotted: ``alert: {on: 0.6}`` is ``alert.on``."""
    values: dict[str, Any] = {}
    for key, value in entry.items():
        if key in NESTED:
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: {where}.{key} must be a mapping, got {type(value).__name__}")
            values.update({f"{key}.{inner}": v for inner, v in value.items()})
        else:
            values[str(key)] = value
    return values


def load_cameras(path: Path) -> CamerasConfig:
    """Read and check a cameras file; ConfigError naming the file and the key on any problem."""
    data = read_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: the file is empty; it needs at least `cameras:` with one camera")
    config = build(CamerasConfig, data, str(path), _check)
    config.cameras = [camera_from_file(entry, str(path), f"cameras[{i}]") for i, entry in enumerate(config.cameras)]
    names = [camera.camera for camera in config.cameras]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"{path}: cameras: camera name(s) {twice} used more than once: messages and files are told "
                          "apart by name")
    return config


def _check(obj: Any, fail: Fail) -> None:
    """The values of a cameras file's process-level parts (``crashwatch.contract.config.build`` calls it, inner
    parts first); each camera is checked by its settings (``camera_from_file``)."""
    if isinstance(obj, MqttSettings):
        if not isinstance(obj.url, str) or not obj.url.startswith(("mqtt://", "mqtts://")):
            fail("url", "must be mqtt://[USER[:PASS]@]HOST[:PORT] or mqtts://...")
        if not isinstance(obj.risk, bool):
            fail("risk", f"must be true or false, got {obj.risk!r}")
    elif isinstance(obj, CamerasConfig):
        if not isinstance(obj.cameras, list):
            fail("cameras", f"must be a list, got {type(obj.cameras).__name__}")
        if not obj.cameras:
            fail("cameras", "list at least one camera")
        try:
            check_endpoint(obj.pub)
        except PublisherError as err:
            fail("pub", str(err))
        if obj.model is not None and (obj.bundle is not None or not str(obj.model).startswith("triton://")):
            fail("model", "a Triton server's model, triton://HOST:PORT/NAME, instead of `bundle` (not both)")
        if obj.model_timeout is not None:
            _within(fail, "model_timeout", obj.model_timeout, number(0, 600, low_open=True))
        if obj.runtime not in [r.value for r in LOCAL_RUNTIMES]:
            fail("runtime", f"must be one of {', '.join(r.value for r in LOCAL_RUNTIMES)}, got {obj.runtime!r}")
        if obj.threads is not None and (isinstance(obj.threads, bool) or not isinstance(obj.threads, int)
                                        or not 1 <= obj.threads <= 256):
            fail("threads", f"must be a whole number from 1 to 256, got {obj.threads!r}")


def _within(fail: Fail, key: str, value: Any, parse: Callable[[Any], Any]) -> None:
    try:
        parse(value)
    except ValueError as err:
        fail(key, str(err))
