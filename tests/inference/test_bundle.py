import json
import os
import stat
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from pix2nerf.inference import InputError, load_model, save_bundle
from pix2nerf.inference.bundle import DIGEST_KEY, bundle_digest
from tests.factories import tiny_face_model


def _render(model, seed=0):
    torch.manual_seed(seed)
    image = torch.rand(2, 3, 16, 16) * 2 - 1
    encoded = model.encode(image)
    return model.render(encoded.w, encoded.yaw_pitch)


def test_bundle_round_trip_renders_the_same(tmp_path):
    model = tiny_face_model()
    path = save_bundle(model, tmp_path / "model.safetensors", half_precision=False, info={"steps": 3})
    loaded = load_model(path)
    before, after = _render(model), _render(loaded)
    assert torch.equal(before.image, after.image) and torch.equal(before.depth, after.depth)
    assert loaded.prior == model.prior
    assert (tmp_path / "model.yaml").read_text().startswith("networks:")


def test_half_precision_bundle_is_smaller_and_close(tmp_path):
    model = tiny_face_model()
    full = save_bundle(model, tmp_path / "full.safetensors", half_precision=False)
    half = save_bundle(model, tmp_path / "half.safetensors", half_precision=True)
    assert half.stat().st_size < 0.7 * full.stat().st_size  # headers are a large share of a tiny model
    assert (_render(load_model(half)).image - _render(model).image).abs().max() < 2e-2


def test_tampered_bundle_is_refused(tmp_path):
    path = save_bundle(tiny_face_model(), tmp_path / "model.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as file:
        metadata = file.metadata()
    tensors = load_file(path)
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(InputError, match="modified"):
        load_model(path)


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_model(tmp_path / "missing.ckpt")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="not a readable safetensors"):
        load_model(garbage)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2)}, str(foreign))
    with pytest.raises(InputError, match="not a pix2nerf bundle"):
        load_model(foreign)
    other_model = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"net.weight": torch.zeros(2)}}, other_model)
    with pytest.raises(InputError, match="no generator_ema"):
        load_model(other_model)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InputError, match="not a readable PyTorch checkpoint"):
        load_model(truncated)


def test_checkpoint_with_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.ckpt"

    class Payload:
        def __reduce__(self):
            return (subprocess.call, ([sys.executable, "-c", f"open({str(marker)!r}, 'w')"],))

    torch.save({"state_dict": {}, "payload": Payload()}, evil)
    with pytest.raises(InputError, match="safe loading refused"):
        load_model(evil)
    assert not marker.exists()


def rewrite(path, networks=None, prior=None, tensors=None, version=None):
    """Edit a bundle as an attacker who knows the format would: change parts and recompute the digest."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as file:
        metadata = dict(file.metadata())
    weights = load_file(path)
    specs = json.loads(metadata["networks"])
    if networks is not None:
        networks(specs)
    metadata["networks"] = json.dumps(specs)
    if prior is not None:
        metadata["camera_prior"] = json.dumps({**json.loads(metadata["camera_prior"]), **prior})
    if tensors is not None:
        tensors(weights)
    if version is not None:
        metadata["version"] = version
    metadata[DIGEST_KEY] = bundle_digest(weights, metadata)
    save_file(weights, str(path), metadata=metadata)
    return path


def generator_args(**changes):
    return lambda specs: specs["generator"]["init_args"].update(changes)


def test_spec_with_unknown_class_is_refused(tmp_path):
    path = save_bundle(tiny_face_model(), tmp_path / "model.safetensors")
    rewrite(path, networks=lambda specs: specs["generator"].update({"class": "os.system"}))
    with pytest.raises(InputError, match="unknown network class"):
        load_model(path)


def test_edited_metadata_is_detected_like_edited_weights(tmp_path):
    path = save_bundle(tiny_face_model(), tmp_path / "model.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as file:
        metadata = dict(file.metadata())
    metadata["camera_prior"] = json.dumps({**json.loads(metadata["camera_prior"]), "radius": 1.0})
    save_file(load_file(path), str(path), metadata=metadata)
    with pytest.raises(InputError, match="metadata do not match the digest"):
        load_model(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (dict(prior={"radius": float("nan")}), "radius must be a finite number"),
        (dict(prior={"focal": -4.0}), "must be positive"),
        (dict(version="99"), "bundle version '99'"),
        (dict(tensors=lambda weights: weights[next(iter(weights))].fill_(float("inf"))), "NaN or infinite"),
        (dict(networks=generator_args(mapping_layers=200_000)), "mapping_layers=200000 is outside"),
        (dict(networks=generator_args(num_importance=10**7)), "num_importance=10000000 is outside"),
        (dict(networks=generator_args(channel_max=16384)), "channel_max=16384 is outside"),
        (dict(networks=generator_args(plane_channels=-3)), "plane_channels=-3 is outside"),
        (dict(networks=generator_args(plane_resolution=4096, channel_max=4096, channel_base=2**20)), "parameters"),
    ],
)
def test_crafted_bundles_are_refused_before_anything_is_built(tmp_path, edit, message):
    path = rewrite(save_bundle(tiny_face_model(), tmp_path / "model.safetensors", half_precision=False), **edit)
    with pytest.raises(InputError, match=message):
        load_model(path)


def test_no_crafted_spec_makes_the_loader_allocate_more_than_its_bound(tmp_path):
    """Under an address-space limit of 1.5 GB above the interpreter's, a spec describing a 4 GB generator is refused
    with the usual message (not a MemoryError or a crash): nothing is allocated before the bound is checked."""
    spec = generator_args(plane_resolution=4096, channel_max=4096, channel_base=2**20, mapping_layers=64, w_dim=4096)
    path = rewrite(save_bundle(tiny_face_model(), tmp_path / "model.safetensors"), networks=spec)
    program = f"""
import resource, sys
import torch
from pix2nerf.inference import InputError, load_model
with open("/proc/self/status") as status:
    size_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize"))
limit = size_kb * 1024 + {1536 * 2**20}
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    load_model({str(path)!r})
except InputError as error:
    print("refused:", error)
"""
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "refused:" in result.stdout and "parameters" in result.stdout, result.stdout


GENERATOR_ONLY = {"generator_ema.x": torch.zeros(1)}


@pytest.mark.parametrize(
    "checkpoint, message",
    [
        ({"state_dict": [1, 2]}, "not a mapping of names to tensors"),
        (
            {"state_dict": {"generator_ema.x": torch.zeros(1)}, "network_specs": {"g": 1}, "camera_prior": [1]},
            "prior is list",
        ),
        ({"state_dict": {"generator_ema.x": torch.zeros(1)}, "network_specs": [3]}, "network_specs is list"),
    ],
)
def test_checkpoints_with_wrongly_typed_parts_are_user_errors(tmp_path, checkpoint, message):
    path = tmp_path / "run.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(InputError, match=message):
        load_model(path)


def test_a_broken_run_config_is_a_user_error(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("model: [unclosed")
    torch.save({"state_dict": {"generator_ema.x": torch.zeros(1)}}, run / "checkpoints" / "last.ckpt")
    with pytest.raises(InputError, match="config.yaml is unreadable"):
        load_model(run / "checkpoints" / "last.ckpt")


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_bundle_and_its_yaml_get_ordinary_permissions(tmp_path, umask):
    """Like any file the process writes (safetensors alone would make the bundle owner-only, 0o600)."""
    previous = os.umask(umask)
    try:
        path = save_bundle(tiny_face_model(), tmp_path / "model.safetensors")
    finally:
        os.umask(previous)
    modes = [stat.S_IMODE(file.stat().st_mode) for file in (path, path.with_suffix(".yaml"))]
    assert modes == [0o666 & ~umask] * 2
