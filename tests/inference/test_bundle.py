import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from pix2nerf.inference import InputError, load_model, save_bundle
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


def test_spec_with_unknown_class_is_refused(tmp_path):
    path = save_bundle(tiny_face_model(), tmp_path / "model.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as file:
        metadata = dict(file.metadata())
    specs = json.loads(metadata["networks"])
    specs["generator"]["class"] = "os.system"
    metadata["networks"] = json.dumps(specs)
    save_file(load_file(path), str(path), metadata=metadata)
    with pytest.raises(InputError, match="unknown network class"):
        load_model(path)
