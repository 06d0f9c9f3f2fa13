"""The EG3D pickle reader: exact tensors and plain data from persistent objects, and nothing executable."""

import os
import pickle
import subprocess

import numpy as np
import pytest
import torch
from torch import nn

from pix2nerf.errors import InputError
from pix2nerf.io import ModuleRecord, PersistentRecord, UnsafePickleError, read_eg3d_pickle
from pix2nerf.io.eg3d_pickle import MAX_MODULE_DEPTH, MAX_MODULES
from tests.io.eg3d_fakes import (
    CallOnLoad,
    EasyDict,
    OSGDecoder,
    Persistent,
    call_global,
    eg3d_modules_loaded,
    with_raw_state,
    write_pickle,
)


def _small_generator(module_src: str = "") -> Persistent:
    """TriPlaneGenerator > backbone > mapping > fc0 and a decoder of plain module classes, with varied tensors."""
    generator = Persistent(
        "TriPlaneGenerator",
        module_src,
        (7,),
        z_dim=8,
        mapping_kwargs=EasyDict(num_layers=2),
        rendering_kwargs={"ray_start": 2.25, "avg_camera_pivot": [0, 0, 0.2]},
    )
    generator.add_module("backbone", Persistent("Generator"))
    generator.backbone.add_module("mapping", Persistent("MappingNetwork"))
    fc0 = Persistent("FullyConnectedLayer")
    fc0.weight = nn.Parameter(torch.randn(4, 3), requires_grad=False)
    fc0.bias = nn.Parameter(torch.randn(4))
    fc0.weight_gain = np.float64(0.25)
    generator.backbone.mapping.add_module("fc0", fc0)
    generator.backbone.mapping.register_buffer("w_avg", torch.randn(3))
    generator.backbone.mapping.register_buffer("noise_half", torch.randn(2, 2).half())
    generator.backbone.mapping.register_buffer("steps", torch.tensor([3, -5], dtype=torch.int64))
    generator.backbone.mapping.register_buffer("scratch", torch.zeros(2), persistent=False)
    generator.transposed = nn.Parameter(torch.randn(3, 5).t(), requires_grad=False)  # non-contiguous storage
    generator.add_module("decoder", nn.Sequential(nn.Softplus(), Persistent("FullyConnectedLayer")))
    generator.decoder[1].weight = nn.Parameter(torch.randn(2, 2), requires_grad=False)
    return generator


def test_networks_load_as_records_with_exact_tensors(tmp_path):
    generator = _small_generator()
    path = write_pickle(tmp_path / "snapshot.pkl", {"G_ema": generator, "augment_pipe": None, "step": np.float64(1)})
    assert not eg3d_modules_loaded()  # reading needs no EG3D code
    content = read_eg3d_pickle(path)
    assert not eg3d_modules_loaded()
    record = content["G_ema"]
    assert isinstance(record, PersistentRecord) and record.class_name == "TriPlaneGenerator"
    assert record.init_args == (7,)
    assert record.init_kwargs == {
        "z_dim": 8,
        "mapping_kwargs": {"num_layers": 2},
        "rendering_kwargs": {"ray_start": 2.25, "avg_camera_pivot": [0, 0, 0.2]},
    }
    assert type(record.init_kwargs["mapping_kwargs"]) is dict  # EasyDict comes back as a plain dict
    assert content["augment_pipe"] is None and content["step"] == 1.0

    expected = generator.state_dict()
    assert "backbone.mapping.scratch" not in expected
    state = record.state_dict()
    assert list(state) == list(expected)  # EG3D's dotted names, in module order, without non-persistent buffers
    for key, value in expected.items():
        assert state[key].dtype == value.dtype and state[key].shape == value.shape
        assert torch.equal(state[key], value), key

    mapping = record.state["_modules"]["backbone"].state["_modules"]["mapping"]
    fc0 = mapping.state["_modules"]["fc0"]
    assert isinstance(fc0.state["_parameters"]["weight"], nn.Parameter)
    assert fc0.state["_parameters"]["bias"].requires_grad and not fc0.state["_parameters"]["weight"].requires_grad
    assert type(mapping.state["_buffers"]["w_avg"]) is torch.Tensor
    assert fc0.state["weight_gain"] == 0.25 and isinstance(fc0.state["weight_gain"], float)
    decoder = record.state["_modules"]["decoder"]
    assert isinstance(decoder, ModuleRecord) and decoder.class_name == "torch.nn.modules.container.Sequential"


@pytest.mark.parametrize(
    ("module", "name", "command"),
    [
        ("os", "system", "touch {marker}"),
        ("builtins", "eval", "open({marker!r}, 'w').close()"),
        ("subprocess", "call", "touch {marker}"),
    ],
)
def test_other_globals_are_refused_before_running(tmp_path, module, name, command):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(call_global(module, name, command.format(marker=str(marker))))
    with pytest.raises(UnsafePickleError, match=rf"'{module}\.{name}'"):
        read_eg3d_pickle(path)
    assert not marker.exists()


def test_the_malicious_payload_is_live(tmp_path):
    """The payloads above do run under plain pickle (so refusing them is what keeps the marker away)."""
    marker = tmp_path / "pwned"
    pickle.loads(call_global("builtins", "eval", f"open({str(marker)!r}, 'w').close()"))
    assert marker.exists()


def test_a_global_inside_a_network_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    generator = _small_generator()
    generator.rendering_hook = CallOnLoad(subprocess.call, ["touch", str(marker)])
    path = write_pickle(tmp_path / "snapshot.pkl", {"G_ema": generator})
    with pytest.raises(UnsafePickleError, match=r"'subprocess\.call'"):
        read_eg3d_pickle(path)
    assert not marker.exists()


def test_a_storage_that_is_not_tensor_data_is_refused(tmp_path):
    """Storages unpickle through torch.storage._load_from_bytes, whose bytes are a pickle of their own."""
    marker = tmp_path / "pwned"
    storage = CallOnLoad(torch.storage._load_from_bytes, call_global("os", "system", f"touch {marker}"))
    path = write_pickle(tmp_path / "snapshot.pkl", {"G_ema": storage})
    with pytest.raises(UnsafePickleError, match=r"storage.*os\.system"):
        read_eg3d_pickle(path)
    assert not marker.exists()


def test_module_source_is_kept_as_text_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    source = f"open({str(marker)!r}, 'w').close()\nimport os\nos.system('touch {marker}')\n"
    path = write_pickle(tmp_path / "snapshot.pkl", {"G_ema": _small_generator(source)})
    record = read_eg3d_pickle(path)["G_ema"]
    assert record.module_src == source
    assert not marker.exists()


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_eg3d_pickle(tmp_path / "missing.pkl")
    path = write_pickle(tmp_path / "snapshot.pkl", {"G_ema": _small_generator()})
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    with pytest.raises(InputError, match="truncated"):
        read_eg3d_pickle(truncated)
    listing = write_pickle(tmp_path / "list.pkl", [1, 2])
    with pytest.raises(InputError, match="not the dict of an EG3D network snapshot"):
        read_eg3d_pickle(listing)


@pytest.mark.parametrize(
    "offset, size, stride, message",
    [
        (10**9, (2,), (1,), "reaches element"),  # torch would grow the storage to 4 GB
        (0, (3, 4), (4, 1), "reaches element"),  # 12 elements viewed in a storage of 8
        (0, (-2,), (1,), "invalid layout"),
        (-1, (2,), (1,), "invalid layout"),
    ],
)
def test_tensor_views_outside_their_storage_are_refused(tmp_path, offset, size, stride, message):
    storage = torch.zeros(8).untyped_storage()
    typed = torch.storage.TypedStorage(wrap_storage=storage, dtype=torch.float32, _internal=True)
    view = CallOnLoad(torch._utils._rebuild_tensor_v2, typed, offset, size, stride, False, {})
    path = write_pickle(tmp_path / "snapshot.pkl", {"G_ema": view})
    with pytest.raises(InputError, match=message):
        read_eg3d_pickle(path)


def _looping_sequential(generator: Persistent) -> None:
    loop = nn.Sequential()
    loop.add_module("again", loop)
    generator.add_module("loop", loop)


def _chain(generator: Persistent, depth: int) -> None:
    module = generator
    for _ in range(depth):
        module.add_module("child", nn.Sequential())
        module = module.child


def _shared_levels(generator: Persistent, levels: int) -> None:
    """Each level holds the next twice: 2**levels paths through ``levels`` modules."""
    module = generator
    for _ in range(levels):
        shared = nn.Sequential()
        module.add_module("left", shared)
        module.add_module("right", shared)
        module = shared


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (_looping_sequential, "module loop.again contains itself"),
        (lambda g: g.add_module("back", nn.Sequential(g)), "module back.0 contains itself"),
        (lambda g: _chain(g, MAX_MODULE_DEPTH + 1), f"nested deeper than {MAX_MODULE_DEPTH} levels"),
        (lambda g: _shared_levels(g, int(np.log2(MAX_MODULES)) + 1), f"more than {MAX_MODULES:,} submodules"),
    ],
)
def test_cyclic_and_exploding_module_trees_are_refused(tmp_path, build, message):
    generator = _small_generator()
    build(generator)
    path = write_pickle(tmp_path / "snapshot.pkl", {"G_ema": generator})
    with pytest.raises(InputError, match=rf"network G_ema: .*{message}"):
        read_eg3d_pickle(path)


def _set(name: str, value: object):
    return lambda generator: generator.__dict__.__setitem__(name, value)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (_set("_init_kwargs", [1, 2]), r"metadata is wrongly typed .*got str, str, tuple, list"),
        (_set("_init_args", 7), r"metadata is wrongly typed .*got str, str, int, dict"),
        (_set("_eg3d_class_name", ["TriPlaneGenerator"]), r"metadata is wrongly typed .*got list, str"),
        (_set("_modules", 3), r"module \(root\): _modules has type int, not a mapping"),
        (_set("_parameters", [torch.zeros(1)]), r"_parameters has type list, not a mapping"),
        (lambda g: g._parameters.__setitem__("scale", "0.5"), r"_parameters\['scale'\] has type str, not a tensor"),
        (lambda g: g._modules.__setitem__("head", 3), r"_modules\['head'\] has type int, not a module"),
        (_set("_non_persistent_buffers_set", 5), "_non_persistent_buffers_set is not a set of names"),
        (lambda g: g.add_module("decoder", with_raw_state(OSGDecoder(), [1, 2])), "state has type list"),
    ],
)
def test_wrongly_typed_structures_are_refused(tmp_path, corrupt, message):
    generator = _small_generator()
    corrupt(generator)
    path = write_pickle(tmp_path / "snapshot.pkl", {"G_ema": generator})
    with pytest.raises(InputError, match=message):
        read_eg3d_pickle(path)
