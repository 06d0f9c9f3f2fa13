import pytest
import torch

from pix2nerf.cameras import look_at, sample_poses
from pix2nerf.metrics import reprojection_error
from pix2nerf.networks import Generator
from tests.factories import record_field_points

TINY = dict(
    z_dim=16,
    w_dim=16,
    plane_resolution=16,
    plane_channels=8,
    channel_base=256,
    channel_max=16,
    feature_dim=8,
    decoder_hidden=16,
    neural_resolution=8,
    num_coarse=8,
    num_importance=8,
)
TINY_HASH = dict(TINY, field="hashgrid", hash_levels=4, hash_table_size_log2=10, hash_max_resolution=64)


def tiny(**overrides) -> Generator:
    torch.manual_seed(0)
    return Generator(**{**TINY, "image_resolution": None, **overrides})


def inputs(generator: Generator, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cameras = sample_poses(batch, rng=g)
    return torch.randn(batch, generator.z_dim, generator=g), cameras.label(), cameras


@pytest.mark.parametrize(
    "config, image_size, semantics",
    [
        (dict(TINY, image_resolution=None), 8, None),
        (dict(TINY, image_resolution=16, sr_channels=(16, 8)), 16, None),
        (dict(TINY, image_resolution=None, plane_aggregation="concat", num_semantic_classes=5), 8, 5),
        (dict(TINY_HASH, image_resolution=None, num_semantic_classes=3), 8, 3),
        (dict(TINY_HASH, image_resolution=16, sr_channels=(16, 8)), 16, None),
    ],
)
def test_output_shapes_and_dtypes(config, image_size, semantics):
    generator = Generator(**config)
    z, c, cameras = inputs(generator, batch=3)
    out = generator(z, c)
    assert out.image.shape == (3, 3, image_size, image_size) and out.image.dtype == torch.float32
    assert out.image_raw.shape == (3, 3, 8, 8)
    assert out.depth.shape == out.opacity.shape == (3, 1, 8, 8)
    assert out.features.shape == (3, config["feature_dim"], 8, 8)
    assert out.ws.shape == (3, generator.num_ws, 16)
    if semantics:
        assert out.semantics.shape == (3, semantics, 8, 8)
    else:
        assert out.semantics is None
    assert (out.depth >= 2.25 * 0.99).all() and (out.depth <= 3.3).all()
    assert ((out.opacity >= 0) & (out.opacity <= 1)).all()


def test_resolution_and_samples_change_at_inference():
    generator = tiny().eval()
    z, c, cameras = inputs(generator)
    ws = generator.mapping(z, c)
    out = generator.synthesis(ws, cameras, neural_resolution=12, num_coarse=6, num_importance=0)
    assert out.image.shape == (2, 3, 12, 12)


def test_coarse_stride_renders_from_a_low_resolution_coarse_pass_and_trains():
    generator = tiny(coarse_stride=2, num_coarse=16, num_importance=8).train()
    z, c, cameras = inputs(generator)
    points = record_field_points(generator)
    out = generator(z, c, neural_resolution=12)
    assert points == [6 * 6 * 16, 12 * 12 * 8]  # a 6^2 coarse pass, then 8 fine samples per ray of 12^2
    assert out.image.shape == (2, 3, 12, 12) and ((out.opacity >= 0) & (out.opacity <= 1)).all()
    out.image.mean().backward()
    assert all(p.grad is not None for p in generator.backbone.synthesis.parameters())
    points.clear()
    generator.eval()
    first = generator(z, c, coarse_stride=1)
    assert points == [8 * 8 * 16, 8 * 8 * 8]  # the per-call override: both passes at full resolution
    assert torch.equal(first.image, generator(z, c, coarse_stride=1).image)


def test_coarse_stride_is_checked():
    with pytest.raises(ValueError, match="coarse_stride must be an integer >= 1"):
        tiny(coarse_stride=0)
    with pytest.raises(ValueError, match="cannot reproduce EG3D exactly"):
        tiny(coarse_stride=2, importance_mode="eg3d")
    generator = tiny()
    z, c, cameras = inputs(generator)
    with pytest.raises(ValueError, match="coarse_stride must be an integer >= 1"):
        generator(z, c, coarse_stride=-1)


def test_same_seed_same_output_and_latents_matter():
    generator = tiny().eval()
    z, c, cameras = inputs(generator)
    first, second = generator(z, c), generator(z, c)
    assert torch.equal(first.image, second.image)
    other = generator(torch.randn_like(z), c)
    assert (other.image - first.image).abs().mean() > 1e-3
    torch.manual_seed(0)
    again = Generator(**{**TINY, "image_resolution": None}).eval()
    assert torch.equal(again(z, c).image, first.image)


@pytest.mark.parametrize("config", [TINY, TINY_HASH])
def test_truncation_zero_renders_the_average_latent(config):
    generator = Generator(**{**config, "image_resolution": None}).eval()
    generator.backbone.mapping.w_avg.normal_()
    z, c, cameras = inputs(generator)
    out = generator(z, c, truncation_psi=0.0)
    expected = generator.synthesis(generator.backbone.mapping.w_avg.expand(2, generator.num_ws, -1), cameras)
    torch.testing.assert_close(out.image, expected.image)
    torch.testing.assert_close(out.ws[0], out.ws[1])


def test_mapping_tracks_w_average_and_conditioning_matters():
    generator = tiny()
    z, c, _ = inputs(generator, batch=64)
    before = generator.backbone.mapping.w_avg.clone()
    ws = generator.mapping(z, c, update_w_avg=True)
    torch.testing.assert_close(generator.backbone.mapping.w_avg, torch.lerp(ws[:, 0].mean(0), before, 0.998))
    other_pose = look_at(torch.full((64,), 0.5), torch.zeros(64)).label()
    assert not torch.allclose(generator.mapping(z, other_pose), generator.mapping(z, c))
    unconditioned = tiny(conditioning_scale=0.0)
    torch.testing.assert_close(unconditioned.mapping(z, other_pose), unconditioned.mapping(z, c))


@pytest.mark.parametrize(
    "config",
    [
        dict(TINY, image_resolution=16, sr_channels=(16, 8), sr_noise_mode="random"),
        dict(TINY_HASH, image_resolution=16, sr_channels=(16, 8), sr_noise_mode="random"),
    ],
)
def test_gradients_reach_every_parameter(config):
    generator = Generator(**config).train()
    z, c, _ = inputs(generator)
    out = generator(z, c)
    (out.image.square().mean() + out.image_raw.mean() + out.depth.mean()).backward()
    missing = [name for name, p in generator.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_wrong_inputs_are_clear_errors():
    generator = tiny()
    z, c, cameras = inputs(generator)
    with pytest.raises(ValueError, match="z must have shape"):
        generator(torch.randn(2, 7), c)
    with pytest.raises(ValueError, match="c must have shape"):
        generator(z, c[:, :16])
    with pytest.raises(ValueError, match="one camera per latent"):
        generator.synthesis(generator.mapping(z, c), cameras[:1])
    with pytest.raises(ValueError, match="field must be"):
        Generator(field="voxels")


def test_rendered_depth_makes_nearby_views_consistent():
    """Warping a nearby view through the rendered depth beats warping through a wrong depth."""
    torch.manual_seed(3)
    generator = Generator(
        **{**TINY, "image_resolution": None, "neural_resolution": 32, "num_coarse": 24, "num_importance": 24}
    ).eval()
    with torch.no_grad():
        generator.head.decoder.net[2].bias[0] += 4.0  # a denser field, so there is a surface to see
        z = torch.randn(1, generator.z_dim).expand(2, -1)
        cameras = look_at(torch.tensor([0.0, 0.12]), torch.tensor([0.0, 0.04]))
        ws = generator.mapping(z, cameras.label()[:1].expand(2, -1))
        out = generator.synthesis(ws, cameras)
    error = reprojection_error(out.image_raw[:1], out.depth[:1], cameras[:1], out.image_raw[1:], cameras[1:])
    wrong = reprojection_error(out.image_raw[:1], out.depth[:1] * 0.9, cameras[:1], out.image_raw[1:], cameras[1:])
    assert error.item() < 0.5 * wrong.item(), (error, wrong)
