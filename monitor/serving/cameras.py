"""The cameras file of ``crashwatch monitor --config``: many cameras, one model, declared once.

Its top level holds ``ServeOptions``' settings and each camera's entry ``MonitorOptions``', by their file keys
(a dotted key is a nested mapping: ``alert: {on: 0.6}``, ``mqtt: {url: ...}``); every value is checked by the
setting's own parser, as on the command line. An unknown key or a bad value is refused naming the file and
the key (``cameras.yaml: cameras[1].alert.on: ...``). Relative paths are taken from the directory the monitor
runs in, as the command line's are.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from crashwatch.contract.config import ConfigError, find_config, read_yaml
from crashwatch.monitor.pipeline.options import SETTINGS, MonitorOptions, OptionsError, Setting
from crashwatch.monitor.pipeline.source import SourceError
from crashwatch.monitor.serving.options import SERVE_SETTINGS, ServeOptions


@dataclass
class CamerasConfig:
    """A cameras file: what the process serves its cameras with, and each camera's options."""

    serve: ServeOptions
    cameras: list[MonitorOptions]

    def options(self, demo_model: bool = False) -> list[MonitorOptions]:
        """Each camera's monitor options."""
        return [dataclasses.replace(camera, demo_model=demo_model) for camera in self.cameras]


def load_cameras(path: Path) -> CamerasConfig:
    """Read and check a cameras file; ConfigError naming the file and the key on any problem."""
    path = find_config(path)
    data = read_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: the file is empty; it needs at least `cameras:` with one camera")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the file must be a mapping, got {type(data).__name__}")
    top = {key: value for key, value in data.items() if key != "cameras"}
    values = read_settings(top, SERVE_SETTINGS, path, "")
    serve = ServeOptions(**values)
    if serve.model is not None and serve.bundle is not None:
        raise ConfigError(f"{path}: model: a Triton server's model, triton://HOST:PORT/NAME, instead of `bundle` "
                          "(not both)")
    if serve.mqtt_url is None and any(name.startswith("mqtt_") for name in values):
        raise ConfigError(f"{path}: mqtt: needs url, mqtt://[USER[:PASS]@]HOST[:PORT] or mqtts://...")
    entries = data.get("cameras")
    if not entries:
        raise ConfigError(f"{path}: cameras: list at least one camera")
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: cameras: must be a list, got {type(entries).__name__}")
    cameras = [camera_from_file(entry, path, f"cameras[{i}]") for i, entry in enumerate(entries)]
    names = [camera.camera for camera in cameras]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"{path}: cameras: camera name(s) {twice} used more than once: messages and files are told "
                          "apart by name")
    return CamerasConfig(serve, cameras)


def camera_from_file(entry: Any, path: Path, where: str) -> MonitorOptions:
    """One camera of a cameras file (at ``where``, e.g. ``cameras[1]``) as monitor options."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: {where} must be a mapping, got {type(entry).__name__}")
    values = read_settings(entry, SETTINGS, path, f"{where}.")
    missing = [s.key for s in SETTINGS if s.key in ("name", "source") and s.name not in values]
    if missing:
        raise ConfigError(f"{path}: {where}: missing key(s) {', '.join(missing)}")
    options = MonitorOptions(**values)
    try:
        options.check()
    except OptionsError as err:
        key = err.setting.key if err.setting is not None else ""
        raise ConfigError(f"{path}: {where}.{key}: {err.why}") from None
    return options


def read_settings(entry: dict[Any, Any], settings: Sequence[Setting], path: Path, where: str) -> dict[str, Any]:
    """The values of ``settings`` a file's mapping gives, each checked by its setting, by field name. ``where``
    prefixes the key path in errors."""
    by_key = {s.key: s for s in settings if s.key}
    values = _flat(entry, path, where)
    unknown = sorted(set(values) - set(by_key))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(where + key for key in unknown)}; "
                          f"known: {', '.join(by_key)}")
    parsed = {}
    for key, value in values.items():
        try:
            parsed[by_key[key].name] = by_key[key].parse(value)
        except (ValueError, SourceError) as err:
            raise ConfigError(f"{path}: {where}{key}: {err}") from None
    return parsed


NESTED = {s.key.split(".")[0] for s in (*SETTINGS, *SERVE_SETTINGS) if "." in s.key}  # alert, mqtt


def _flat(entry: dict[Any, Any], path: Path, where: str) -> dict[str, Any]:
    """A mapping with its nested parts' keys dotted: ``alert: {on: 0.6}`` is ``alert.on``."""
    values: dict[str, Any] = {}
    for key, value in entry.items():
        if key in NESTED:
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: {where}{key} must be a mapping, got {type(value).__name__}")
            values.update({f"{key}.{inner}": v for inner, v in value.items()})
        else:
            values[str(key)] = value
    return values
