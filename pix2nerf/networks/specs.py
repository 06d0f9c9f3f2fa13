"""Network specs: a network's class name and constructor arguments, so it can be rebuilt without pickles.

Checkpoints and inference bundles store specs (plain JSON) beside the weights. Rebuilding only ever
instantiates the classes that :func:`network_classes` lists, never a class named by the file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
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
    init_args = cast(Mapping[str, Any], network.init_args)  # nn.Module types unknown attributes as Tensor | Module
    return {"class": name, "init_args": dict(init_args)}


MAX_PARAMETERS = 250_000_000
"""Largest network a spec may describe (EG3D's 512^2 generator has about 31 M parameters, this package's default
generator 30 M): about 1 GB in float32. Checked on the meta device, before any memory is allocated."""
MAX_INTEGER_ARGUMENT = 4096
"""Bound of every integer constructor argument (layer counts, widths, resolutions) not listed in INTEGER_BOUNDS."""
INTEGER_BOUNDS = {"channel_base": 2**20, "num_coarse": 1024, "num_importance": 1024, "mapping_layers": 64}
"""Bounds of integer arguments that legitimately exceed, or must stay well below, ``MAX_INTEGER_ARGUMENT``."""


def check_arguments(name: str, init_args: Mapping[str, Any]) -> None:
    """Raise a ValueError unless every argument of a ``name`` network is in bounds (see ``INTEGER_BOUNDS``), and
    the network they describe has at most ``MAX_PARAMETERS`` parameters (counted without allocating them).

    Files describe networks by their arguments; without this, a crafted spec (200,000 mapping layers, 10^7
    samples per ray) would take all memory before any weight is read.
    """
    if not isinstance(init_args, Mapping):
        raise ValueError(f"the {name} spec's init_args must be a mapping, got {type(init_args).__name__}")
    for argument, value in init_args.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            if isinstance(item, bool) or item is None or isinstance(item, str):
                continue
            if not isinstance(item, (int, float)):
                raise ValueError(f"{name} argument {argument}={value!r:.80} is not a number, string or list of them")
            if not math.isfinite(item):
                raise ValueError(f"{name} argument {argument}={item} is not finite")
            bound = INTEGER_BOUNDS.get(argument, MAX_INTEGER_ARGUMENT)
            if isinstance(item, int) and not 0 <= item <= bound:
                raise ValueError(f"{name} argument {argument}={item} is outside the supported range [0, {bound}]")
    classes = network_classes()
    try:
        with torch.device("meta"):
            network = classes[name](**init_args)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"the spec's arguments do not fit {name}: {error}") from error
    count = sum(tensor.numel() for tensor in [*network.parameters(), *network.buffers()])
    if count > MAX_PARAMETERS:
        raise ValueError(
            f"the {name} spec describes {count:,} parameters, more than the {MAX_PARAMETERS:,} this package loads"
        )


def build_network(spec: Mapping[str, Any]) -> nn.Module:
    """Instantiate the network a spec describes (only classes :func:`network_classes` lists), after checking its
    arguments' bounds and size with :func:`check_arguments`."""
    if not isinstance(spec, Mapping) or set(spec) != set(SPEC_KEYS):
        raise ValueError(f"a network spec is a mapping with exactly the keys {SPEC_KEYS}, got {spec!r:.200}")
    name, classes = spec["class"], network_classes()
    if not isinstance(name, str) or name not in classes:
        raise ValueError(f"unknown network class {name!r:.80} in spec; known: {sorted(classes)}")
    check_arguments(name, spec["init_args"])
    return classes[name](**spec["init_args"])


def network_classes() -> dict[str, type[nn.Module]]:
    """The classes a spec may name (imported here, so the networks themselves can import this module)."""
    from pix2nerf.networks.discriminator import Discriminator
    from pix2nerf.networks.encoder import Encoder
    from pix2nerf.networks.generator import Generator
    from pix2nerf.networks.residual import PlaneResidual

    return {cls.__name__: cls for cls in (Generator, Encoder, Discriminator, PlaneResidual)}
