"""The tools' Hydra configs as structured configs made from the option dataclasses.

A tool's YAML file lists its own keys (with their values and comments) and only those option values that differ
from the dataclass defaults: the defaults come from the dataclass through a schema stored in Hydra's
``ConfigStore`` and named in the YAML's ``defaults`` list. The schema is a copy of the dataclass that OmegaConf
accepts (``Literal`` -> its values' type, ``tuple[X, ...]`` -> ``list[X]``, nested dataclasses -> their schemas),
so overrides are type-checked and unknown keys stay errors; :func:`options_from_config` turns the config back
into the dataclass (lists -> tuples).
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import types
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

T = TypeVar("T")


def _schema_type(hint: Any) -> Any:
    """An annotation OmegaConf accepts for ``hint``."""
    origin = get_origin(hint)
    if origin is Literal:
        (value_type,) = {type(value) for value in get_args(hint)}
        return value_type
    if origin is tuple:
        return list[get_args(hint)[0]]  # type: ignore[misc]  # a generic alias built at run time
    if origin in (Union, types.UnionType):
        return functools.reduce(operator.or_, [_schema_type(arg) for arg in get_args(hint)])
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return schema(hint)
    return hint


def _schema_field(field: dataclasses.Field, hint: Any) -> tuple[str, Any, Any]:
    kind = _schema_type(hint)
    if field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
        if dataclasses.is_dataclass(default):
            return field.name, kind, dataclasses.field(default_factory=kind)
        return field.name, kind, dataclasses.field(default_factory=functools.partial(_copy, default))
    if isinstance(field.default, tuple):
        return field.name, kind, dataclasses.field(default_factory=functools.partial(list, field.default))
    return field.name, kind, dataclasses.field(default=field.default)


def _copy(value: Any) -> Any:
    """A fresh copy of a default made by a default_factory (tuples become lists, as OmegaConf has no tuples)."""
    return list(value) if isinstance(value, tuple) else type(value)(value)


@functools.cache
def schema(options_type: type) -> type:
    """The OmegaConf-compatible copy of the dataclass ``options_type``: same fields, order and defaults."""
    fields = [_schema_field(field, hint) for field, hint in _fields_and_hints(options_type)]
    return dataclasses.make_dataclass(f"{options_type.__name__}Schema", fields)


def tool_schema(
    name: str, keys: Sequence[str], options: type | None = None, nested: Mapping[str, type] | None = None
) -> type:
    """A tool's schema: its own ``keys`` in order (any type; their values are in its YAML file; a key named in
    ``nested`` holds that dataclass's schema instead), then the fields of the dataclass ``options``, if any."""
    nested = nested or {}
    fields: list[tuple[str, Any, Any]] = [
        (key, schema(nested[key]), dataclasses.field(default_factory=schema(nested[key])))
        if key in nested
        else (key, Any, dataclasses.field(default=MISSING))
        for key in keys
    ]
    if options is not None:
        fields += [_schema_field(field, hint) for field, hint in _fields_and_hints(options)]
    return dataclasses.make_dataclass(name, fields)


def _fields_and_hints(options_type: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = get_type_hints(options_type)
    return [(field, hints[field.name]) for field in dataclasses.fields(options_type)]


def store(name: str, node: type) -> None:
    """Register a schema in Hydra's ConfigStore; the tool's YAML names it first in its ``defaults`` list."""
    ConfigStore.instance().store(name=name, node=node)


def options_from_config(options_type: type[T], cfg: DictConfig) -> T:
    """The dataclass ``options_type`` from the config's keys of the same names (others are ignored)."""
    return _build(options_type, OmegaConf.to_container(cfg, resolve=True))


def _build(options_type: type[T], values: Any) -> T:
    kwargs = {}
    for field, hint in _fields_and_hints(options_type):
        value = values[field.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            value = _build(hint, value)
        elif get_origin(hint) is tuple:
            value = tuple(value)
        kwargs[field.name] = value
    return options_type(**kwargs)
