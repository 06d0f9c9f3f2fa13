"""Training can start from a bundle's generator when the configured architecture is the bundle's."""

import pytest
import torch

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
