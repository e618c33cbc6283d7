"""Load experiment YAML files: ``_base_`` inheritance, dotted overrides and strict validation.

Merge rules:
- ``_base_`` (a path or a list of paths, relative to the file naming them) are loaded first, in order,
  and the file itself is merged last;
- mappings merge key by key; any other value (lists included) replaces the previous one;
- in a section whose variants have different keys (a tagged union such as ``loss.heatmap``), changing
  ``type`` starts the section afresh: keys of the previous type are dropped, so ``loss.heatmap.type=ghm_c``
  gives GHM-C with its own defaults rather than focal-loss leftovers (other sections merge as usual);
- ``KEY=VALUE`` overrides use dotted keys and ``yaml.safe_load`` values, applied after all files.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from centernet.config.schema import Config, cross_key_error

BASE_KEY = "_base_"


class ConfigError(ValueError):
    """A configuration file, key or value that is not valid."""


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """Load, merge and validate an experiment config.

    Args:
        path: the experiment YAML file.
        overrides: ``"dotted.key=value"`` strings applied after the files.

    Returns:
        The validated :class:`Config`.

    Raises:
        ConfigError: unknown key, wrong type, bad override, unreadable YAML (the message names the
            file or the dotted key). FileNotFoundError for a missing file.
    """
    from_files = merge_dicts(
        dataclasses.asdict(Config()), _load_with_bases(Path(path), chain=()), reset_on_type_change=TAGGED_UNIONS
    )
    return apply_overrides(from_files, overrides, source=str(path))


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str], *, source: str) -> Config:
    """Validate ``data`` (a nested config dict read from ``source``) with ``overrides`` applied.

    An error caused by the overrides is blamed on the command line (naming the override), one caused
    by ``data`` on ``source``.
    """
    overrides = list(overrides)
    if not overrides:
        return config_from_dict(data, source=source)
    try:
        parsed = parse_overrides(overrides)
    except ConfigError as error:
        raise ConfigError(f"command line: {error}") from None
    try:
        return config_from_dict(merge_dicts(dict(data), parsed, reset_on_type_change=TAGGED_UNIONS), source="")
    except ConfigError as error:
        config_from_dict(data, source=source)  # raises when the error is the file's own
        raise ConfigError(f"{_blamed_overrides(str(error), overrides)} (on top of {source}): {error}") from None


def _blamed_overrides(message: str, overrides: list[str]) -> str:
    """``command-line override 'k=v'`` for the overrides whose key the error message names."""
    named = [item for item in overrides if item.partition("=")[0].strip() in message]
    if not named:
        return f"command-line overrides {' '.join(overrides)!r}"
    return f"command-line override{'s' if len(named) > 1 else ''} {', '.join(repr(item) for item in named)}"


def config_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Config:
    """Validate a plain nested dict (e.g. a config stored in a checkpoint) into a :class:`Config`."""
    complete = merge_dicts(dataclasses.asdict(Config()), dict(data), reset_on_type_change=TAGGED_UNIONS)
    try:
        config = _convert(Config, complete, key="")
        _check_albumentations(config)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}" if source else str(error)) from None
    problem = cross_key_error(config)
    if problem is not None:
        raise ConfigError(f"{source}: {problem}" if source else problem)
    return config


def _check_albumentations(config: Config) -> None:
    """Build ``augment.albumentations`` once, so that a bad transform name or argument fails at load time."""
    if not config.augment.albumentations:
        return
    # imported here: albumentations is slow to import and only needed when the list is used
    from centernet.data.transforms.albumentations_chain import albumentations_from_config

    try:
        albumentations_from_config(config.augment)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def config_to_dict(config: Config) -> dict[str, Any]:
    """Return the config as plain nested dicts/lists (YAML- and JSON-serialisable)."""
    return dataclasses.asdict(config)


def save_config(config: Config, path: str | Path) -> None:
    """Write the fully resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))


def merge_dicts(
    base: dict[str, Any],
    update: Mapping[str, Any],
    *,
    reset_on_type_change: frozenset[str] = frozenset(),
    _path: str = "",
) -> dict[str, Any]:
    """Recursively merge ``update`` onto a copy of ``base``.

    Args:
        base: the earlier layer.
        update: the later layer; its values win.
        reset_on_type_change: dotted paths of sections that start afresh when ``update`` changes their
            ``type`` (see the module docstring).
    """
    result = dict(base)
    for key, value in update.items():
        path = _join(_path, str(key))
        previous = result.get(key)
        if isinstance(previous, dict) and isinstance(value, Mapping):
            type_changed = "type" in value and value["type"] != previous.get("type")
            start = {} if type_changed and path in reset_on_type_change else previous
            result[key] = merge_dicts(start, value, reset_on_type_change=reset_on_type_change, _path=path)
        elif isinstance(value, Mapping):
            result[key] = merge_dicts({}, value, reset_on_type_change=reset_on_type_change, _path=path)
        else:
            result[key] = value
    return result


def _tagged_union_paths(cls: Any, prefix: str = "") -> frozenset[str]:
    """Dotted paths of the schema fields annotated as a union of several dataclasses."""
    paths: set[str] = set()
    for name, annotation in get_type_hints(cls).items():
        path = _join(prefix, name)
        options = [a for a in get_args(annotation) if dataclasses.is_dataclass(a)]
        if get_origin(annotation) in (Union, types.UnionType) and len(options) > 1:
            paths.add(path)
        elif dataclasses.is_dataclass(annotation):
            paths |= _tagged_union_paths(annotation, path)
    return frozenset(paths)


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=[2, 3]"]`` into ``{"a": {"b": 1}, "c": [2, 3]}`` (values via ``yaml.safe_load``)."""
    result: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw_value = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} is not of the form dotted.key=value")
        try:
            value = yaml.safe_load(raw_value) if raw_value.strip() else ""
        except yaml.YAMLError as error:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({error})") from None
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override of {part!r}")
            node = child
        node[parts[-1]] = value
    return result


def _load_with_bases(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """Load one YAML file and everything it inherits through ``_base_``."""
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain, resolved))
        raise ConfigError(f"{path}: _base_ files include each other ({cycle})")
    data = read_yaml_mapping(path)
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a path or a list of paths, got {bases!r}")
    merged: dict[str, Any] = {}
    for base in bases:
        merged = merge_dicts(
            merged, _load_with_bases(path.parent / base, (*chain, resolved)), reset_on_type_change=TAGGED_UNIONS
        )
    return merge_dicts(merged, data, reset_on_type_change=TAGGED_UNIONS)


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file (``{}`` for an empty file).

    Raises:
        FileNotFoundError: no such file.
        ConfigError: not valid YAML, or the top level is not a mapping (the message names the file).
    """
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def _suggest(name: str, candidates: Iterable[str]) -> str:
    matches = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(m) for m in matches)}?)" if matches else ""


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _convert(annotation: Any, value: Any, key: str) -> Any:
    """Check ``value`` against a type annotation of the schema and return the typed value."""
    if annotation is Any:  # free-form values (arguments of albumentations transforms), checked later
        return value
    origin = get_origin(annotation)
    if origin is dict:
        return _convert_mapping(annotation, value, key)
    if origin in (Union, types.UnionType):
        return _convert_union(get_args(annotation), value, key)
    if origin is Literal:
        choices = get_args(annotation)
        if value is False and "off" in choices:  # YAML 1.1 reads a bare `off` as false
            value = "off"
        if value not in choices:
            hint = _suggest(str(value), [str(c) for c in choices])
            raise ConfigError(f"{key}: {value!r} is not one of {list(choices)}{hint}")
        return value
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (item_type,) = get_args(annotation)
        return [_convert(item_type, item, f"{key}[{i}]") for i, item in enumerate(value)]
    if dataclasses.is_dataclass(annotation):
        return _convert_dataclass(annotation, value, key)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {type(value).__name__} {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if annotation is float:
        value = _yaml11_float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"schema annotation {annotation!r} of {key} is not supported")


def _convert_mapping(annotation: Any, value: Any, key: str) -> dict[str, Any]:
    """A ``dict[str, X]`` field: a mapping with string keys whose values are checked against ``X``."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
    _, value_type = get_args(annotation)
    for name in value:
        if not isinstance(name, str):
            raise ConfigError(f"{key}: keys must be strings, got {type(name).__name__} {name!r}")
    return {name: _convert(value_type, item, _join(key, name)) for name, item in value.items()}


def _yaml11_float(value: Any) -> Any:
    """PyYAML (YAML 1.1) reads ``2e-3`` (no dot) as a string; accept such plain numbers as floats."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _convert_union(options: tuple[Any, ...], value: Any, key: str) -> Any:
    if value is None and type(None) in options:
        return None
    options = tuple(o for o in options if o is not type(None))
    lists = [o for o in options if get_origin(o) is list]
    if lists and isinstance(value, list | tuple):  # e.g. data.val: one set or a list of named sets
        return _convert(lists[0], value, key)
    options = tuple(o for o in options if get_origin(o) is not list)
    if len(options) == 1:
        return _convert(options[0], value, key)
    # A tagged union of dataclasses: the ``type`` value picks the variant.
    by_type = {get_args(get_type_hints(o)["type"])[0]: o for o in options}
    if not isinstance(value, Mapping) or "type" not in value:
        raise ConfigError(f"{key}: expected a mapping with a 'type' in {sorted(by_type)}, got {value!r}")
    variant = by_type.get(value["type"])
    if variant is None:
        hint = _suggest(str(value["type"]), by_type)
        raise ConfigError(f"{key}.type: {value['type']!r} is not one of {sorted(by_type)}{hint}")
    return _convert_dataclass(variant, value, key)


def _convert_dataclass(cls: Any, value: Any, key: str) -> Any:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key or 'config'}: expected a mapping, got {type(value).__name__} {value!r}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for name in value:
        if name not in hints:
            where = f"for type {value['type']!r} " if "type" in value and "type" in hints else ""
            raise ConfigError(
                f"unknown config key {_join(key, str(name))!r} {where}"
                f"(valid keys: {', '.join(names)})"
                f"{_suggest(_join(key, str(name)), [_join(key, n) for n in names])}"
            )
    kwargs = {name: _convert(hints[name], value[name], _join(key, name)) for name in names if name in value}
    return cls(**kwargs)


TAGGED_UNIONS = _tagged_union_paths(Config)
