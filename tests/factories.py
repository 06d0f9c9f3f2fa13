"""Tiny networks shared by the tests (seconds on a CPU), and the bundled model's path."""

from pathlib import Path

import torch

from pix2nerf.networks import Generator

BUNDLED_MODEL = Path(__file__).resolve().parents[1] / "checkpoints" / "synthetic_heads_64.safetensors"
"""The trained model shipped with the package (README's main job)."""


def tiny_generator(seed: int = 0, **overrides) -> Generator:
    """A tri-plane generator with 8^2 planes, 8-d latents and a handful of samples per ray."""
    torch.manual_seed(seed)
    config = dict(
        z_dim=8,
        w_dim=8,
        plane_resolution=8,
        plane_channels=4,
        channel_base=64,
        channel_max=8,
        feature_dim=4,
        decoder_hidden=8,
        neural_resolution=8,
        image_resolution=None,
        num_coarse=4,
        num_importance=4,
    )
    return Generator(**{**config, **overrides})


def record_field_points(generator: Generator) -> list[int]:
    """Make ``generator``'s radiance head append the number of points per field it evaluates (N of (B, N, 3)) to
    the returned list, call by call."""
    points: list[int] = []
    head_forward = generator.head.forward
    generator.head.forward = lambda p, params: points.append(p.shape[1]) or head_forward(p, params)
    return points


def tiny_face_model(seed: int = 0, image_resolution: int = 16, residual: bool = False):
    """A FaceModel with a tiny generator (8^2 rendering, super-resolved to ``image_resolution``) and encoder; with
    ``residual``, also a plane residual whose last layer is randomised (so its offsets are not zero)."""
    from pix2nerf.inference import FaceModel
    from pix2nerf.networks import Encoder, PlaneResidual

    generator = tiny_generator(seed, image_resolution=image_resolution, sr_channels=(8, 8))
    encoder = Encoder(img_resolution=image_resolution, num_ws=generator.num_ws, w_dim=8, channel_base=64, channel_max=8)
    stage2 = None
    if residual:
        stage2 = PlaneResidual(image_resolution, 8, generator.plane_channels, channels=8, channel_max=16)
        with torch.no_grad():
            stage2.out.weight.normal_(std=1.0)
    return FaceModel(generator, encoder, residual=stage2).eval().requires_grad_(False)
