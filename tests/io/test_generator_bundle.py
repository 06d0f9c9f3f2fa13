"""Training can start from a bundle's generator when the configured architecture is the bundle's."""

import pytest
import torch

from pix2nerf.cameras import prior_cameras
from pix2nerf.errors import InputError
from pix2nerf.inference import save_bundle
from pix2nerf.io import load_encoder_bundle, load_generator_bundle
from pix2nerf.networks import Encoder
from tests.factories import tiny_face_model, tiny_generator


def test_bundle_weights_load_into_a_matching_generator(tmp_path):
    model = tiny_face_model(seed=1)
    path = save_bundle(model, tmp_path / "model.safetensors", half_precision=False)
    generator, ema = tiny_generator(seed=2, image_resolution=16, sr_channels=(8, 8)), tiny_generator(seed=3)
    with pytest.raises(InputError, match=r"'image_resolution': \(None, 16\)"):
        load_generator_bundle(path, generator, ema)
    ema = tiny_generator(seed=3, image_resolution=16, sr_channels=(8, 8))
    load_generator_bundle(path, generator, ema)
    for key, value in model.generator.state_dict().items():
        assert torch.equal(generator.state_dict()[key], value) and torch.equal(ema.state_dict()[key], value)


def test_a_w_encoder_bundle_starts_a_w_plus_encoder_with_the_same_predictions(tmp_path):
    model = tiny_face_model(seed=1)
    path = save_bundle(model, tmp_path / "model.safetensors", half_precision=False)
    widened = Encoder(**{**model.encoder.init_args, "w_plus": True})
    load_encoder_bundle(path, widened)
    image = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(widened(image).w, model.encoder(image).w)
    narrower = Encoder(**{**model.encoder.init_args, "channel_max": 4})
    with pytest.raises(InputError, match="channel_max"):
        load_encoder_bundle(path, narrower)


def test_a_grown_generator_first_renders_the_bundle_image_upsampled_and_its_superresolution_learns(tmp_path):
    """Progressive growing: an 8^2 model gains a super-resolution to 16^2; the shared weights are copied and the new
    super-resolution starts as a bilinear upsampling of the bundle's image (its ToRGB layers are zero)."""
    small = tiny_face_model(seed=1, image_resolution=8)
    assert small.generator.superresolution is None
    path = save_bundle(small, tmp_path / "small.safetensors", half_precision=False)
    grown = tiny_generator(seed=2, image_resolution=16, sr_channels=(8, 8))
    load_generator_bundle(path, grown, grow_superresolution=True)
    grown.eval()  # no sample jitter: both render the same rays

    z, c = torch.randn(2, 8), prior_cameras(torch.tensor([[0.0, 0.0], [0.4, 0.1]])).label()
    before, after = small.generator(z, c, noise_mode="const"), grown(z, c, noise_mode="const")
    torch.testing.assert_close(after.image_raw, before.image)
    upsampled = torch.nn.functional.interpolate(before.image, scale_factor=2, mode="bilinear")
    interior = (..., slice(2, -2), slice(2, -2))  # the StyleGAN upsampling pads the image border with zeros
    torch.testing.assert_close(after.image[interior], upsampled[interior])
    after.image.square().mean().backward()
    torgb = grown.superresolution.block1.torgb.weight
    assert torgb.grad is not None and torgb.grad.abs().sum() > 0


def test_growing_refuses_what_it_cannot_grow(tmp_path):
    small = tiny_face_model(seed=1, image_resolution=8)
    path = save_bundle(small, tmp_path / "small.safetensors", half_precision=False)
    with pytest.raises(InputError, match="image_resolution above neural_resolution"):
        load_generator_bundle(path, tiny_generator(seed=2), grow_superresolution=True)
    with pytest.raises(InputError, match=r"'plane_channels': \(8, 4\)"):
        wider = tiny_generator(seed=2, image_resolution=16, sr_channels=(8, 8), plane_channels=8)
        load_generator_bundle(path, wider, grow_superresolution=True)
    with_sr = save_bundle(tiny_face_model(seed=1), tmp_path / "sr.safetensors", half_precision=False)
    with pytest.raises(InputError, match="already has a super-resolution"):
        grown = tiny_generator(seed=2, image_resolution=32, sr_channels=(8, 8))
        load_generator_bundle(with_sr, grown, grow_superresolution=True)
