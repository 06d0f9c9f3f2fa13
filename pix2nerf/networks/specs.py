"""Network specs: a network's class name and constructor arguments, so it can be rebuilt without pickles.

Checkpoints and inference bundles store specs (plain JSON) beside the weights. Rebuilding only ever
instantiates the classes that :func:`network_classes` lists, never a class named by the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

SPEC_KEYS = ("class", "init_args")


def init_arguments(frame_locals: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments in ``locals()`` taken on the first line of an ``__init__``, as plain JSON values."""
    return {name: _plain(value) for name, value in frame_locals.items() if name not in ("self", "__class__")}


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Sequence):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    raise TypeError(f"constructor argument {value!r} ({type(value).__name__}) is not a plain JSON value")


def network_spec(network: nn.Module) -> dict[str, Any]:
    """``{"class": name, "init_args": {...}}`` for a network that recorded ``init_args`` in its constructor."""
    name = type(network).__name__
    if name not in network_classes() or not hasattr(network, "init_args"):
        raise TypeError(f"{name} cannot be described by a spec; use one of {sorted(network_classes())}")
    return {"class": name, "init_args": dict(network.init_args)}


def build_network(spec: Mapping[str, Any]) -> nn.Module:
    """Instantiate the network a spec describes (only classes :func:`network_classes` lists)."""
    if not isinstance(spec, Mapping) or set(spec) != set(SPEC_KEYS):
        raise ValueError(f"a network spec is a mapping with exactly the keys {SPEC_KEYS}, got {spec!r:.200}")
    name, classes = spec["class"], network_classes()
    if name not in classes:
        raise ValueError(f"unknown network class {name!r} in spec; known: {sorted(classes)}")
    try:
        return classes[name](**spec["init_args"])
    except TypeError as error:
        raise ValueError(f"the spec's arguments do not fit {name}: {error}") from error


def network_classes() -> dict[str, type[nn.Module]]:
    """The classes a spec may name (imported here, so the networks themselves can import this module)."""
    from pix2nerf.networks.discriminator import Discriminator
    from pix2nerf.networks.encoder import Encoder
    from pix2nerf.networks.generator import Generator
    from pix2nerf.networks.residual import PlaneResidual

    return {cls.__name__: cls for cls in (Generator, Encoder, Discriminator, PlaneResidual)}
