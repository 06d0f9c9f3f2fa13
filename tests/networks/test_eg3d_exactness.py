"""pix2nerf's generator reproduces EG3D's own outputs for EG3D's weights (../shared/eg3d_reference)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from pix2nerf.cameras import Cameras, rays
from pix2nerf.networks import Generator

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference(eg3d_reference_dir):
    path = eg3d_reference_dir
    config = json.loads((path / "generator_config.json").read_text())["init_kwargs"]
    rendering = config["rendering_kwargs"]
    generator = Generator(
        z_dim=config["z_dim"],
        c_dim=config["c_dim"],
        w_dim=config["w_dim"],
        mapping_layers=config["mapping_kwargs"]["num_layers"],
        plane_resolution=256,
        channel_base=config["channel_base"],
        channel_max=config["channel_max"],
        plane_order="eg3d",
        box_warp=rendering["box_warp"],
        neural_resolution=64,
        image_resolution=config["img_resolution"],
        ray_start=rendering["ray_start"],
        ray_end=rendering["ray_end"],
        num_coarse=rendering["depth_resolution"],
        num_importance=rendering["depth_resolution_importance"],
        importance_mode="eg3d",
        conditioning_scale=rendering["c_scale"],
        eg3d_raw_image=True,
    ).eval()
    state = load_file(str(path / "generator_state_dict.safetensors"))
    state = {("head." + k if k.startswith("decoder.") else k): v for k, v in state.items()}
    generator.load_state_dict(state)
    return generator, load_file(str(path / "reference_outputs.safetensors"))


def test_mapping_matches(reference):
    generator, ref = reference
    with torch.no_grad():
        torch.testing.assert_close(generator.mapping(ref["z"], ref["c"]), ref["ws"], atol=TOLERANCE, rtol=0)
        truncated = generator.mapping(ref["z"], ref["c"], truncation_psi=0.7)
    torch.testing.assert_close(truncated, ref["ws_psi0.7"], atol=TOLERANCE, rtol=0)


def test_planes_and_decoder_match(reference):
    generator, ref = reference
    with torch.no_grad():
        planes = generator.field_params(ref["ws"], noise_mode="const").flatten(1, 2)
        decoded = generator.head.decoder(generator.head.aggregate(ref["decoder_input"]))
    b, ch, y, x = ref["planes_index"].long().unbind(-1)
    torch.testing.assert_close(planes[b, ch, y, x], ref["planes_value"], atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(decoded.features, ref["decoder_rgb"], atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(decoded.sigma, ref["decoder_sigma"], atol=TOLERANCE, rtol=0)


def test_rendered_images_and_depth_match(reference):
    generator, ref = reference
    cameras = Cameras.from_label(ref["c"])
    with torch.no_grad():
        out = generator.synthesis(ref["ws"], cameras, noise_mode="const")
    torch.testing.assert_close(out.image_raw, ref["image_raw"], atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(out.image, ref["image"], atol=TOLERANCE, rtol=0)
    # EG3D's depth image is distance along the ray; ours is along the camera axis.
    _, directions = rays(cameras, 64)
    cos = (directions * cameras.forward[:, None]).sum(-1).reshape(2, 1, 64, 64)
    torch.testing.assert_close(out.depth / cos, ref["image_depth"], atol=TOLERANCE, rtol=0)
