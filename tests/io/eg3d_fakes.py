"""Fake EG3D network pickles, pickled the way NVIDIA's ``torch_utils.persistence`` pickles real ones.

Persistent network objects reduce to ``torch_utils.persistence._reconstruct_persistent_obj(meta)``; EG3D's
plain module classes (``training.triplane.OSGDecoder``, the renderer, ``torch.nn.Sequential``) pickle by
reference; kwargs are ``dnnlib.util.EasyDict``; gains are numpy scalars. The fake ``torch_utils``,
``training`` and ``dnnlib`` modules exist in ``sys.modules`` only while a pickle is written.
"""

from __future__ import annotations

import contextlib
import copyreg
import math
import pickle
import re
import sys
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

FAKE_MODULES = ("torch_utils", "training", "dnnlib")
BUFFER_NAMES = ("w_avg", "resample_filter", "noise_const")


def _reconstruct_persistent_obj(meta: dict) -> Any:
    raise AssertionError("EG3D's reconstruct hook must never run when reading: the reader substitutes its own")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


class EasyDict(dict):
    """``dnnlib.util.EasyDict``: a dict with attribute access."""

    __getattr__ = dict.__getitem__


EasyDict.__module__ = "dnnlib.util"


class Persistent(nn.Module):
    """A network object that pickles like an instance of an EG3D ``@persistence.persistent_class``."""

    def __init__(self, class_name: str, module_src: str = "", init_args: tuple = (), **init_kwargs: Any) -> None:
        super().__init__()
        self._eg3d_class_name, self._eg3d_module_src = class_name, module_src
        self._init_args, self._init_kwargs = init_args, init_kwargs

    def __reduce__(self) -> tuple:
        state = dict(self.__dict__)
        class_name, module_src = state.pop("_eg3d_class_name"), state.pop("_eg3d_module_src")
        meta = {"type": "class", "version": 6, "module_src": module_src, "class_name": class_name, "state": state}
        return _reconstruct_persistent_obj, (meta,)


def _plain_class(qualified_name: str) -> type[nn.Module]:
    module, name = qualified_name.rsplit(".", 1)
    return type(name, (nn.Module,), {"__module__": module, "__qualname__": name})


OSGDecoder = _plain_class("training.triplane.OSGDecoder")
ImportanceRenderer = _plain_class("training.volumetric_rendering.renderer.ImportanceRenderer")
MipRayMarcher2 = _plain_class("training.volumetric_rendering.ray_marcher.MipRayMarcher2")
RaySampler = _plain_class("training.volumetric_rendering.ray_sampler.RaySampler")


@contextlib.contextmanager
def eg3d_modules() -> Iterator[None]:
    """Register the fake EG3D modules (so pickle can name their globals); remove them afterwards."""
    members = {
        "torch_utils.persistence": [_reconstruct_persistent_obj],
        "dnnlib.util": [EasyDict],
        "training.triplane": [OSGDecoder],
        "training.volumetric_rendering.renderer": [ImportanceRenderer],
        "training.volumetric_rendering.ray_marcher": [MipRayMarcher2],
        "training.volumetric_rendering.ray_sampler": [RaySampler],
    }
    names = {".".join(full.split(".")[: i + 1]) for full in members for i in range(full.count(".") + 1)}
    for name in sorted(names):
        module = sys.modules[name] = types.ModuleType(name)
        for member in members.get(name, []):
            setattr(module, member.__qualname__, member)
    try:
        yield
    finally:
        for name in names:
            del sys.modules[name]


def write_pickle(path: Path, content: Any) -> Path:
    """Pickle ``content`` (built from this module's classes) as EG3D's ``pickle.dump`` does."""
    with eg3d_modules(), path.open("wb") as file:
        pickle.dump(content, file)
    return path


def eg3d_modules_loaded() -> bool:
    """Whether any (fake or real) EG3D module is imported."""
    return any(name.split(".")[0] in FAKE_MODULES for name in sys.modules)


def call_global(module: str, name: str, argument: str) -> bytes:
    """A protocol-0 pickle that calls ``module.name(argument)`` when loaded by ``pickle.load``."""
    return f"c{module}\n{name}\n(V{argument}\ntR.".encode()


def with_raw_state(module: nn.Module, state: Any) -> nn.Module:
    """``module`` (of a plain EG3D module class), pickled with ``state`` as its ``__dict__``, whatever that is."""
    object.__setattr__(module, "__reduce_ex__", lambda protocol: (copyreg.__newobj__, (type(module),), state))
    return module


class CallOnLoad:
    """Pickles as a call ``function(*args)`` made by whoever unpickles it."""

    def __init__(self, function: Any, *args: Any) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple:
        return self.function, self.args


# -- an EG3D TriPlaneGenerator from a state dict -------------------------------------------------------------------

_CLASS_RULES = (
    (r"backbone", "Generator"),
    (r"mapping", "MappingNetwork"),
    (r"synthesis", "SynthesisNetwork"),
    (r"b\d+|block1", "SynthesisBlock"),
    (r"block0", "SynthesisBlockNoUp"),
    (r"conv\d", "SynthesisLayer"),
    (r"torgb", "ToRGBLayer"),
    (r"fc\d+|embed|affine|\d", "FullyConnectedLayer"),
)


def _persistent_child(name: str, superresolution: str) -> Persistent:
    if name == "superresolution":
        return Persistent(superresolution.rsplit(".", 1)[1], channels=32)
    class_name = next(cls for pattern, cls in _CLASS_RULES if re.fullmatch(pattern, name))
    child = Persistent(class_name)
    if class_name == "FullyConnectedLayer":
        child.weight_gain = np.float64(1 / math.sqrt(32))  # EG3D stores its gains as numpy scalars
    return child


def _child(parent: nn.Module, name: str, superresolution: str) -> nn.Module:
    if name in parent._modules:
        return parent._modules[name]
    if name == "decoder":
        child = OSGDecoder()
    elif name == "net":
        child = nn.Sequential(Persistent("FullyConnectedLayer"), nn.Softplus(), Persistent("FullyConnectedLayer"))
    else:
        child = _persistent_child(name, superresolution)
    parent.add_module(name, child)
    return child


def triplane_generator(state: Mapping[str, Tensor], init_kwargs: Mapping[str, Any]) -> Persistent:
    """An EG3D ``TriPlaneGenerator`` object tree holding ``state`` (EG3D key names) and its constructor kwargs."""
    kwargs = dict(init_kwargs)
    kwargs["mapping_kwargs"] = EasyDict(kwargs.get("mapping_kwargs", {}))
    rendering = dict(kwargs["rendering_kwargs"])
    generator = Persistent("TriPlaneGenerator", "# training/triplane.py source\n", **kwargs)
    generator.rendering_kwargs = rendering
    generator.neural_rendering_resolution = 64
    generator.renderer = ImportanceRenderer()
    generator.renderer.ray_marcher = MipRayMarcher2()
    generator.renderer.plane_axes = torch.eye(3).expand(3, 3, 3).clone()  # a plain tensor attribute, no buffer
    generator.ray_sampler = RaySampler()
    for key, value in state.items():
        *path, leaf = key.split(".")
        module = generator
        for name in path:
            module = _child(module, name, rendering["superresolution_module"])
        if leaf in BUFFER_NAMES:
            module.register_buffer(leaf, value.clone())
        else:
            module.register_parameter(leaf, nn.Parameter(value.clone(), requires_grad=False))
    return generator


def small_discriminator() -> Persistent:
    """A small EG3D-like ``DualDiscriminator`` record."""
    discriminator = Persistent("DualDiscriminator", c_dim=25, img_resolution=128, img_channels=3)
    discriminator.add_module("b128", Persistent("DiscriminatorBlock"))
    discriminator.b128.register_parameter("weight", nn.Parameter(torch.randn(4, 6, 3, 3), requires_grad=False))
    discriminator.register_buffer("resample_filter", torch.ones(4, 4) / 16)
    return discriminator


def network_snapshot(state: Mapping[str, Tensor], init_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The dict EG3D's training loop pickles as ``network-snapshot-*.pkl``."""
    return {
        "training_set_kwargs": EasyDict(class_name="training.dataset.ImageFolderDataset", resolution=128),
        "G": triplane_generator(state, init_kwargs),
        "D": small_discriminator(),
        "G_ema": triplane_generator(state, init_kwargs),
        "augment_pipe": None,
    }
