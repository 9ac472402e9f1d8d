"""YAML configuration files read into dataclasses, one builder for all of them (run configs, camera configs):
unknown keys and wrong shapes are refused naming the file and the key path (``cameras[1].alert.on``), so a
typo never silently falls back to a default."""

from __future__ import annotations

import dataclasses
import importlib.resources
import re
import types
import typing
from pathlib import Path
from typing import Any, Callable, NoReturn, Union

import yaml

from crashwatch.contract.errors import CrashwatchError


class ConfigError(CrashwatchError):
    """A configuration file that cannot be used; the message names the file and the key."""


Fail = Callable[[str, str], NoReturn]  # fail(key, why) raises ConfigError naming file, key path and why
Check = Callable[[Any, Fail], None]  # validates one built object


class _Loader(yaml.SafeLoader):
    """YAML 1.2's booleans: only true and false. YAML 1.1 (PyYAML's default) also reads on, off, yes and no as
    booleans, which would turn a key such as an alert's ``on:`` into ``True``."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


SHIPPED = "crashwatch.configs"  # the example configurations, shipped in the package


def shipped_configs() -> dict[str, Path]:
    """The configurations shipped with crashwatch, by name (``tiny``, ``cameras.example``)."""
    folder = Path(str(importlib.resources.files(SHIPPED)))
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def find_config(value: str | Path) -> Path:
    """A configuration given by its path, or by the name of one shipped with crashwatch (``--config tiny``); a
    path that exists wins. ConfigError naming what was asked and the shipped names otherwise."""
    path = Path(value)
    if path.is_file():
        return path
    shipped = shipped_configs()
    name = path.name.removesuffix(".yaml")
    if path.name == str(value) and name in shipped:
        return shipped[name]
    if path.exists():
        raise ConfigError(f"{path}: not a file")
    raise ConfigError(f"{value}: no such file, nor a configuration shipped with crashwatch "
                      f"({', '.join(shipped)})")


def read_yaml(path: Path) -> Any:
    """The YAML document in ``path`` (None for an empty file); ConfigError naming the file otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read it ({err.strerror or err})") from None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None


def build(cls: type, data: Any, source: str, check: Check | None = None, where: str = "") -> Any:
    """Instantiate the dataclass ``cls`` from plain data: fields typed as a dataclass (or an optional one) and
    lists of dataclasses are built in turn; ``check`` validates each object built, inner ones first."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {where.rstrip('.') or 'the file'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names), key=str)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(where + str(k) for k in unknown)}; "
                          f"known: {', '.join(names)}")
    values = {}
    for key, value in data.items():
        inner, many = _nested(hints[key])
        if inner is not None and value is not None:
            if many:
                if not isinstance(value, list):
                    raise ConfigError(f"{source}: {where}{key} must be a list, got {type(value).__name__}")
                value = [build(inner, item, source, check, f"{where}{key}[{i}].") for i, item in enumerate(value)]
            else:
                value = build(inner, value, source, check, f"{where}{key}.")
        values[key] = value
    try:
        obj = cls(**values)
    except TypeError as err:
        raise ConfigError(f"{source}: {where.rstrip('.') or 'top level'}: {err}") from None
    if check is not None:
        def fail(key: str, why: str) -> NoReturn:
            raise ConfigError(f"{source}: {where}{key}: {why}")
        check(obj, fail)
    return obj


def _nested(hint: Any) -> tuple[Any, bool]:
    """The dataclass a field holds (through ``X | None``), and whether it is a list of them."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else hint
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint) or (None,)
        return (item, True) if dataclasses.is_dataclass(item) else (None, False)
    return (hint, False) if dataclasses.is_dataclass(hint) else (None, False)
