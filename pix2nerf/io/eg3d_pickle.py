"""A safe reader of EG3D network pickles (``network-snapshot-*.pkl``): tensors and plain data, never code.

EG3D pickles its networks with NVIDIA's ``torch_utils.persistence``: each network object is saved as a call
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` whose ``meta`` holds the Python source of the
class's module (``module_src``), the class name and the object's ``__dict__`` (parameters, buffers,
submodules, constructor arguments). Loading such a file with ``pickle`` executes that source. This reader
instead unpickles with an explicit allow-list of globals and turns every persistent object into an inert
:class:`PersistentRecord` (``module_src`` is kept as text and never executed). Any other global
(``os.system``, ``builtins.eval``, ...) stops loading with :class:`UnsafePickleError` before it is called.
"""

from __future__ import annotations

import collections
import io
import pickle
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pix2nerf.errors import InputError


class UnsafePickleError(InputError):
    """The pickle asks for a global that is not on the allow-list (it could run code); nothing was run."""


MAX_MODULE_DEPTH = 32
"""Deepest submodule nesting a network may have (EG3D's is 6); a cyclic module tree is refused before it."""
MAX_MODULES = 100_000
"""Most modules a network may have, a module shared by several parents counted once per path (EG3D's generator
has a few hundred); bounds the walk over a crafted tree of shared submodules, which doubles per level."""
TENSOR_GROUPS = ("_parameters", "_buffers")
"""The parts of a module's state holding its parameters and buffers."""


class _StateNode:
    """A module of the pickle (persistent or not): its ``__dict__`` as ``state``, with tensors and submodules."""

    state: dict[str, Any]

    def state_dict(self) -> dict[str, Tensor]:
        """Parameters and persistent buffers of this module and its submodules, keyed like ``nn.Module``."""
        tensors: dict[str, Tensor] = {}
        for prefix, node in _module_tree(self):
            skipped = set(node.state.get("_non_persistent_buffers_set") or ())
            for group in TENSOR_GROUPS:
                for name, value in (node.state.get(group) or {}).items():
                    if value is not None and name not in skipped:
                        tensors[prefix + name] = value.detach()
        return tensors


def _module_tree(root: _StateNode) -> list[tuple[str, _StateNode]]:
    """``root`` and its submodules depth first, each with its key prefix (``"backbone.mapping."``).

    Raises :class:`InputError` for a cyclic, too deep or too large tree and for wrongly typed module state
    (tensor groups that are not mappings of names to tensors, submodules that are not modules).
    """
    tree: list[tuple[str, _StateNode]] = []
    stack: list[tuple[str, _StateNode, tuple[_StateNode, ...]]] = [("", root, ())]
    while stack:
        prefix, node, ancestors = stack.pop()
        if len(tree) == MAX_MODULES:
            raise InputError(
                f"a network has more than {MAX_MODULES:,} submodules (shared ones counted per path); "
                "the pickle is malformed or crafted, so it was refused"
            )
        _check_module_state(node.state, prefix)
        tree.append((prefix, node))
        lineage = (*ancestors, node)
        children = [(name, child) for name, child in (node.state.get("_modules") or {}).items() if child is not None]
        for name, child in reversed(children):
            if any(child is ancestor for ancestor in lineage):
                raise InputError(
                    f"module {prefix}{name} contains itself (a cyclic module tree); the pickle is malformed or crafted"
                )
            if len(lineage) == MAX_MODULE_DEPTH:
                raise InputError(
                    f"module {prefix}{name} is nested deeper than {MAX_MODULE_DEPTH} levels; the pickle is malformed"
                )
            stack.append((f"{prefix}{name}.", child, lineage))
    return tree


def _check_module_state(state: Mapping[str, Any], prefix: str) -> None:
    """Raise :class:`InputError` unless the tensor groups, submodules and non-persistent names are well typed."""
    where = f"module {prefix.removesuffix('.') or '(root)'}"
    expected = {group: (Tensor, "tensor") for group in TENSOR_GROUPS} | {"_modules": (_StateNode, "module")}
    for group, (kind, kind_name) in expected.items():
        entries = state.get(group) or {}
        if not isinstance(entries, Mapping):
            kind_of = type(entries).__name__
            raise InputError(f"{where}: {group} has type {kind_of}, not a mapping; the pickle is malformed")
        for name, value in entries.items():
            if not isinstance(name, str):
                raise InputError(f"{where}: {group} has a {type(name).__name__} name; the pickle is malformed")
            if not (value is None or isinstance(value, kind)):
                raise InputError(
                    f"{where}: {group}[{name!r:.60}] has type {type(value).__name__}, not a {kind_name}; "
                    "the pickle is malformed"
                )
    skipped = state.get("_non_persistent_buffers_set") or ()
    if not isinstance(skipped, (set, frozenset, list, tuple)) or not all(isinstance(name, str) for name in skipped):
        raise InputError(f"{where}: _non_persistent_buffers_set is not a set of names; the pickle is malformed")


@dataclass
class PersistentRecord(_StateNode):
    """An EG3D persistent network object, as data.

    Attributes:
        class_name: the class in ``module_src`` (``"TriPlaneGenerator"``, ``"DualDiscriminator"``, ...).
        init_args, init_kwargs: the constructor arguments EG3D recorded.
        state: the object's ``__dict__`` without them: ``_parameters``, ``_buffers``, ``_modules`` (records),
            plain attributes such as ``rendering_kwargs`` or ``neural_rendering_resolution``.
        module_src: the pickled source of the class's module, as text (never executed).
    """

    class_name: str
    init_args: tuple
    init_kwargs: dict[str, Any]
    state: dict[str, Any]
    module_src: str = field(default="", repr=False)


class ModuleRecord(_StateNode):
    """A pickled object of a plain (non-persistent) module class EG3D uses, e.g. ``torch.nn.Sequential``.

    Unpickling creates it with ``__new__`` and fills it with ``__setstate__``; ``class_name`` is the
    qualified name the pickle gave (set per stand-in subclass).
    """

    class_name = ""

    def __new__(cls, *args: Any) -> ModuleRecord:
        record = super().__new__(cls)
        record.state = {}
        return record

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping):
            raise InputError(
                f"a {self.class_name} module's state has type {type(state).__name__}, not a mapping; "
                "the pickle is malformed"
            )
        self.state = dict(state)

    def __repr__(self) -> str:
        return f"ModuleRecord({self.class_name})"


PLAIN_MODULE_CLASSES = (
    "training.triplane.OSGDecoder",
    "training.volumetric_rendering.renderer.ImportanceRenderer",
    "training.volumetric_rendering.ray_marcher.MipRayMarcher2",
    "training.volumetric_rendering.ray_sampler.RaySampler",
    "torch.nn.modules.container.Sequential",
    "torch.nn.modules.activation.Softplus",
)
"""Module classes EG3D pickles by reference (not persistent); they load as :class:`ModuleRecord` stand-ins."""

_STAND_INS = {
    name: type(name.rsplit(".", 1)[1], (ModuleRecord,), {"class_name": name}) for name in PLAIN_MODULE_CLASSES
}


def _reconstruct_persistent_obj(meta: Mapping[str, Any]) -> PersistentRecord:
    """Stands in for ``torch_utils.persistence._reconstruct_persistent_obj``: records, never executes."""
    if not isinstance(meta, Mapping) or not isinstance(meta.get("state"), Mapping) or meta.get("type") != "class":
        raise InputError(f"a persistent object's metadata ({type(meta).__name__}) is malformed; not an EG3D pickle")
    state = dict(meta["state"])
    class_name, module_src = meta.get("class_name"), meta.get("module_src", "")
    init_args, init_kwargs = state.pop("_init_args", ()), state.pop("_init_kwargs", {})
    if not (
        isinstance(class_name, str)
        and isinstance(module_src, str)
        and isinstance(init_args, (tuple, list))
        and isinstance(init_kwargs, Mapping)
        and all(isinstance(key, str) for key in init_kwargs)
    ):
        got = ", ".join(type(value).__name__ for value in (class_name, module_src, init_args, init_kwargs))
        raise InputError(
            "a persistent object's metadata is wrongly typed (class_name and module_src must be strings, _init_args "
            f"a tuple, _init_kwargs a mapping with string names; got {got}); not an EG3D pickle"
        )
    return PersistentRecord(class_name, tuple(init_args), dict(init_kwargs), state, module_src)


def _load_storage(data: bytes) -> torch.TypedStorage:
    """Stands in for ``torch.storage._load_from_bytes`` (which unpickles unsafely): torch's weights-only loader."""
    if not isinstance(data, bytes):
        raise InputError(f"a tensor storage is {type(data).__name__}, not bytes; the pickle is malformed")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
            storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        lines = [line for line in str(error).splitlines() if line.strip()]
        reason = lines[1] if len(lines) > 1 else lines[0]  # torch's first line is generic advice
        raise UnsafePickleError(
            f"a tensor storage holds objects other than tensor data and was refused ({reason}); nothing was executed"
        ) from error
    except (RuntimeError, EOFError) as error:
        raise InputError(f"a tensor storage is unreadable ({error}); the pickle may be truncated") from error
    if not isinstance(storage, torch.TypedStorage):
        raise UnsafePickleError(f"a tensor storage decoded to {type(storage).__name__}, not a storage; refused")
    return storage


def _rebuild_tensor(
    storage: torch.TypedStorage, offset: int, size: tuple, stride: tuple, requires_grad: bool, hooks: Any, *rest: Any
) -> Tensor:
    """``torch._utils._rebuild_tensor_v2`` for CPU storages (backward hooks and metadata are dropped)."""
    if not isinstance(storage, torch.TypedStorage):
        raise UnsafePickleError(f"a tensor was to be built from {type(storage).__name__}, not a storage; refused")
    _check_view(storage, offset, size, stride)
    return torch._utils._rebuild_tensor_v2(
        storage, offset, size, stride, bool(requires_grad), collections.OrderedDict()
    )


def _check_view(storage: torch.TypedStorage, offset: Any, size: Any, stride: Any) -> None:
    """Refuse a tensor view that does not fit inside its storage: torch would silently *enlarge* the storage
    (uninitialised memory, gigabytes for a crafted offset) instead of failing."""
    valid = (
        isinstance(offset, int)
        and isinstance(size, tuple)
        and isinstance(stride, tuple)
        and len(size) == len(stride)
        and all(isinstance(value, int) and value >= 0 for value in (offset, *size, *stride))
    )
    if not valid:
        raise InputError(
            f"a tensor has an invalid layout (offset {offset!r:.40}, size {size!r:.80}, stride {stride!r:.80}); "
            "the pickle is malformed"
        )
    if 0 in size:
        return
    extent = offset + sum((length - 1) * step for length, step in zip(size, stride, strict=True)) + 1
    if extent > storage._size():  # _size: size() without its deprecation warning
        raise InputError(
            f"a tensor view (offset {offset}, size {size}, stride {stride}) reaches element {extent} of a storage of "
            f"{storage._size()}; the pickle is malformed or crafted, so it was refused"
        )


def _rebuild_parameter(data: Tensor, requires_grad: bool, hooks: Any) -> torch.nn.Parameter:
    """``torch._utils._rebuild_parameter`` (backward hooks are dropped)."""
    if not isinstance(data, Tensor):
        raise UnsafePickleError(f"a parameter was to be built from {type(data).__name__}, not a tensor; refused")
    return torch.nn.Parameter(data, bool(requires_grad))


def _numpy_scalar(dtype: np.dtype, data: bytes) -> Any:
    """``numpy.core.multiarray.scalar`` for numeric dtypes, as a Python number (EG3D stores gains this way)."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise UnsafePickleError(f"a numpy scalar of dtype {dtype!r} was refused (only numeric scalars load)")
    return np.frombuffer(data, dtype=dtype, count=1)[0].item()


def _numpy_reconstruct(subtype: type, shape: tuple, dtype_code: bytes) -> np.ndarray:
    """``numpy.core.multiarray._reconstruct`` for plain arrays (the data arrives with the next BUILD)."""
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"a numpy array of type {subtype!r} was refused (only numpy.ndarray loads)")
    return np.ndarray.__new__(np.ndarray, shape, np.dtype(dtype_code.decode()))


ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("dnnlib.util", "EasyDict"): dict,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    **{(module, "scalar"): _numpy_scalar for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "_reconstruct"): _numpy_reconstruct for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{
        (module, attribute): stand_in
        for name, stand_in in _STAND_INS.items()
        for module, attribute in [name.rsplit(".", 1)]
    },
}
"""Every global an EG3D pickle may name, mapped to what it becomes here; all else is refused."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles only :data:`ALLOWED_GLOBALS`; refuses any other global before it is called."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load global '{module}.{name}': it is not a part of EG3D network pickles and could run "
                "code (nothing was executed); only load pickles from a source you trust, and re-export them "
                "with EG3D's own code if they carry extra objects"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            f"refused persistent id {str(pid)[:60]!r}: EG3D network pickles are plain pickles, not torch.save files"
        )


def read_eg3d_pickle(path: str | Path) -> dict[str, Any]:
    """The top-level dict of an EG3D network pickle (``G``, ``D``, ``G_ema``, ``augment_pipe``, ...).

    Networks come back as :class:`PersistentRecord` (``record.state_dict()`` gives their tensors under EG3D's
    key names); everything else as plain data. Raises :class:`UnsafePickleError` for a global outside the
    allow-list and :class:`InputError` for a missing, truncated or foreign file, or one whose networks are malformed
    (wrongly typed metadata or module state, cyclic or oversized module trees).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"EG3D pickle {path} does not exist; pass a network-snapshot-*.pkl file")
    with path.open("rb") as file:
        content = _unpickle(file, str(path))
    if not isinstance(content, dict):
        raise InputError(
            f"{path} holds a {type(content).__name__}, not the dict of an EG3D network snapshot "
            "(keys G, D, G_ema, ...); pass a network-snapshot-*.pkl"
        )
    if not all(isinstance(name, str) for name in content):
        raise InputError(f"{path} holds a dict with names that are not strings; not an EG3D network snapshot")
    for name, network in content.items():
        if isinstance(network, _StateNode):
            try:
                _module_tree(network)
            except InputError as error:
                raise InputError(f"{path}: network {name[:40]}: {error}") from error
    return content


def _unpickle(file: io.IOBase, name: str) -> Any:
    try:
        return RestrictedUnpickler(file).load()
    except InputError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise InputError(
            f"{name} is not a readable EG3D pickle ({type(error).__name__}: {error}); it may be truncated or malformed"
        ) from error
