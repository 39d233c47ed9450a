"""Typed configs from YAML: nested dataclasses, strict keys, ``--set a.b=value`` overrides.

A config file is a YAML mapping whose keys are the dataclass's fields; nested sections
are nested dataclasses. Unknown keys and values of the wrong type are errors that name
the file and the key (``configs/stage1_default.yaml: train.lr: expected float, got 'fast'``).
Overrides are ``KEY=VALUE`` strings, the value parsed as YAML (``train.steps=200``,
``run.device=cpu``, ``autoencoder.encoder.video=true``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit its dataclass."""


def _parse_number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """``value`` checked (and widened: int -> float, "1e-3" -> 1e-3) against the annotation ``kind``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {kind.__name__} fields, got {value!r}")
        return from_dict(kind, value, where)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {kind}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        items = args[:1] * len(value) if origin is list or (len(args) == 2 and args[1] is Ellipsis) else args
        if len(items) != len(value):
            raise ConfigError(f"{where}: expected {len(items)} values, got {len(value)}")
        return origin(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, items)))
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if kind is float:
        number = _parse_number(value) if isinstance(value, str) else value
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(number)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if kind is Any:
        return value
    raise ConfigError(f"{where}: unsupported field type {kind!r}")


def _key(where: str, key: str) -> str:
    """``file.yaml: train`` + ``lr`` -> ``file.yaml: train.lr``; a prefix ending in ":" is a file."""
    if not where:
        return key
    return f"{where} {key}" if where.endswith(":") else f"{where}.{key}"


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a plain mapping, recursively; unknown keys are errors.

    Args:
        cls: the dataclass. data: its fields (missing ones take their defaults).
        where: a prefix for error messages: ``"file.yaml:"`` at the top, then the section path.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(names))
    here = where.rstrip(":") or cls.__name__
    if unknown:
        raise ConfigError(f"{here}: unknown key(s) {unknown}; known: {names}")
    values = {k: _coerce(v, hints[k], _key(where, k)) for k, v in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:  # a dataclass's own __post_init__ check
        raise ConfigError(f"{here}: {err}") from err


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a dataclass config (tuples become lists, for YAML and checkpoints)."""
    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return plain(dataclasses.asdict(config))


def apply_overrides(data: dict[str, Any], overrides: list[str], where: str) -> dict[str, Any]:
    """Set ``a.b.c=value`` entries (value parsed as YAML) in a nested plain dict, in place.

    Args:
        data: the config as a plain dict. overrides: ``KEY=VALUE`` strings.
        where: the config file's name, for error messages.
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{where}: override {item!r} is not KEY=VALUE (e.g. train.steps=100)")
        node, parts = data, key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{where}: override {item!r}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    return data


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
    return data
