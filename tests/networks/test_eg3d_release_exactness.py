"""EG3D's other releases: the 512^2 models' SuperresolutionHybrid8XDC and the ShapeNet configuration (white
background, box 1.6, rays 0.1-2.6) import through ``pix2nerf.io`` and reproduce EG3D's own outputs
(../shared/eg3d_reference_512 and ../shared/eg3d_reference_shapenet)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pix2nerf.cameras import Cameras, rays
from pix2nerf.inference import FaceModel, load_model
from pix2nerf.io.eg3d_import import import_eg3d
from tests.conftest import SHARED
from tests.io.eg3d_fakes import triplane_generator, write_pickle

TOLERANCE = 1e-4


def imported(folder: str, tmp_path: Path) -> tuple[FaceModel, dict]:
    """The reference generator pickled as EG3D pickles it, read by the safe reader, imported as a bundle and
    loaded; and EG3D's outputs."""
    path = SHARED / folder
    if not (path / "reference_outputs.safetensors").exists():
        pytest.skip(f"EG3D reference data not found at {path}")
    config = json.loads((path / "generator_config.json").read_text())["init_kwargs"]
    state = load_file(str(path / "generator_state_dict.safetensors"))
    pickle_path = write_pickle(tmp_path / "network-snapshot.pkl", {"G_ema": triplane_generator(state, config)})
    bundle = import_eg3d(pickle_path, tmp_path / "imported.safetensors", half_precision=False)
    return load_model(bundle), load_file(str(path / "reference_outputs.safetensors"))


def along_ray(depth: torch.Tensor, cameras: Cameras, resolution: int) -> torch.Tensor:
    """Our z-depth (B, 1, r, r) as EG3D's distance along each ray."""
    _, directions = rays(cameras, resolution)
    cos = (directions * cameras.forward[:, None]).sum(-1).reshape(-1, 1, resolution, resolution)
    return depth / cos


@pytest.mark.parametrize("neural_resolution", [64, 128])
def test_512_release_with_8xdc_super_resolution_matches_eg3d(neural_resolution, tmp_path):
    model, ref = imported("eg3d_reference_512", tmp_path)
    generator = model.generator
    cameras = Cameras.from_label(ref["c"])
    with torch.no_grad():
        torch.testing.assert_close(generator.mapping(ref["z"], ref["c"]), ref["ws"], atol=TOLERANCE, rtol=0)
        out = generator.synthesis(ref["ws"], cameras, neural_resolution=neural_resolution, noise_mode="const")
    suffix = f"nr{neural_resolution}"
    assert out.image.shape[-1] == 512
    assert generator.neural_resolution == 64 and generator.superresolution.input_resolution == 128  # as pickled
    torch.testing.assert_close(out.image_raw, ref[f"image_raw_{suffix}"], atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(out.image, ref[f"image_{suffix}"], atol=TOLERANCE, rtol=0)
    depth = along_ray(out.depth, cameras, neural_resolution)
    torch.testing.assert_close(depth, ref[f"image_depth_{suffix}"], atol=TOLERANCE, rtol=0)


def test_shapenet_release_with_white_background_matches_eg3d(tmp_path):
    model, ref = imported("eg3d_reference_shapenet", tmp_path)
    generator = model.generator
    assert generator.white_background and generator.ray_start == 0.1 and generator.ray_end == 2.6
    assert model.prior.radius == 1.7 and model.prior.target == (0.0, 0.0, 0.0)
    cameras = Cameras.from_label(ref["c"])
    with torch.no_grad():
        torch.testing.assert_close(generator.mapping(ref["z"], ref["c"]), ref["ws"], atol=TOLERANCE, rtol=0)
        out = generator.synthesis(ref["ws"], cameras, neural_resolution=64, noise_mode="const")
    torch.testing.assert_close(out.image_raw, ref["image_raw_nr64"], atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(out.image, ref["image_nr64"], atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(along_ray(out.depth, cameras, 64), ref["image_depth_nr64"], atol=TOLERANCE, rtol=0)
