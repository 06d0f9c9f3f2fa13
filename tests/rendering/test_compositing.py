import math

import pytest
import torch

from pix2nerf.cameras import look_at, rays
from pix2nerf.fields import SpheresField
from pix2nerf.rendering import RayBundle, VolumeRenderer, composite, stratified

SPHERE_CENTRE = torch.tensor([0.0, 0.0, 0.2])
SPHERE_RADIUS = 0.5
OPAQUE_DENSITY = 2000.0


sphere_field = SpheresField(
    SPHERE_CENTRE[None], torch.tensor([SPHERE_RADIUS]), torch.tensor([[0.9, 0.5, 0.2]]), density=OPAQUE_DENSITY
)


def ray_sphere_entry(origins, directions):
    """Analytic first intersection distance (inf on a miss) and closest approach of each ray."""
    offset = origins - SPHERE_CENTRE
    b = (offset * directions).sum(-1)
    closest = (offset - b[..., None] * directions).norm(dim=-1)
    disc = b**2 - (offset.norm(dim=-1) ** 2 - SPHERE_RADIUS**2)
    entry = torch.where(disc > 0, -b - disc.clamp_min(0).sqrt(), torch.full_like(b, math.inf))
    return entry, closest


def test_sphere_depth_and_opacity_match_analytic_intersection():
    wide_focal = 1.2  # a wide field of view so the sphere's silhouette lies inside the image
    cameras = look_at(torch.tensor([0.0, 0.6, -0.9, 0.3]), torch.tensor([0.0, 0.2, -0.1, -0.35]), focal=wide_focal)
    origins, directions = rays(cameras, 32)
    near, far = torch.full_like(origins[..., :1], 2.0), torch.full_like(origins[..., :1], 3.4)
    renderer = VolumeRenderer(num_coarse=64, num_importance=64, jitter=False).eval()
    out = renderer(sphere_field, RayBundle(origins, directions, near, far))
    entry, closest = ray_sphere_entry(origins, directions)

    solid = closest < 0.9 * SPHERE_RADIUS
    empty = closest > 1.05 * SPHERE_RADIUS
    assert solid.sum() > 500 and empty.sum() > 500
    depth_error = (out.depth[..., 0] - entry)[solid].abs()
    assert depth_error.max() < 0.01 * SPHERE_RADIUS
    assert out.opacity[..., 0][solid].min() > 0.999
    assert out.opacity[..., 0][empty].max() < 1e-6
    torch.testing.assert_close(out.depth[..., 0][empty], far[..., 0][empty])
    torch.testing.assert_close(out.values[solid], torch.tensor([0.9, 0.5, 0.2]).expand(int(solid.sum()), 3))


def test_homogeneous_slab_transmittance_is_beer_lambert():
    sigma_value, slab = 1.7, (-0.3, 0.4)  # density 1.7 between the planes z = -0.3 and z = 0.4
    cameras = look_at(torch.tensor([0.0, 0.5, -0.8]), torch.tensor([0.0, 0.3, -0.2]), target=(0.0, 0.0, 0.0))
    origins, directions = rays(cameras, 5)
    t = stratified(torch.full_like(origins[..., :1], 1.0), torch.full_like(origins[..., :1], 4.5), 8000)
    points = origins[:, :, None] + t[..., None] * directions[:, :, None]
    inside = (points[..., 2:3] > slab[0]) & (points[..., 2:3] < slab[1])
    out = composite(inside * sigma_value, torch.ones_like(points[..., :1]), t)
    path_length = (slab[1] - slab[0]) / directions[..., 2].abs()
    transmittance = 1.0 - out.opacity[..., 0]
    torch.testing.assert_close(transmittance, torch.exp(-sigma_value * path_length), atol=1e-3, rtol=0)
    torch.testing.assert_close(out.values, out.opacity)  # unit colour composites to the opacity


def test_background_fills_remaining_transmittance():
    t = torch.linspace(0.0, 1.0, 11).expand(1, 2, 11)
    sigma = torch.full((1, 2, 11, 1), 0.5)
    colour = torch.tensor([1.0, 0.0, 0.0]).expand(1, 2, 11, 3)
    out = composite(sigma, colour, t, background=torch.tensor([0.0, 0.0, 1.0]))
    expected_alpha = 1.0 - math.exp(-0.5)
    torch.testing.assert_close(out.opacity[..., 0], torch.full((1, 2), expected_alpha))
    torch.testing.assert_close(out.values[0, 0], torch.tensor([expected_alpha, 0.0, 1.0 - expected_alpha]))
    torch.testing.assert_close(out.weights.sum(-1, keepdim=True), out.opacity)


def test_composite_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"sigma \(B, R, S, 1\)"):
        composite(torch.ones(1, 2, 5), torch.ones(1, 2, 5, 3), torch.ones(1, 2, 5))


def test_composite_gradients_match_finite_differences():
    generator = torch.Generator().manual_seed(0)
    sigma = torch.rand(1, 2, 5, 1, dtype=torch.float64, generator=generator).requires_grad_()
    values = torch.rand(1, 2, 5, 3, dtype=torch.float64, generator=generator).requires_grad_()
    t = torch.cumsum(torch.rand(1, 2, 5, dtype=torch.float64, generator=generator) + 0.1, dim=-1)

    def render(s, v):
        out = composite(s, v, t)
        return out.values, out.depth, out.opacity

    assert torch.autograd.gradcheck(render, (sigma, values))


def test_renderer_is_deterministic_in_eval_and_random_in_training():
    cameras = look_at(torch.tensor([0.2]), torch.tensor([0.1]))
    origins, directions = rays(cameras, 8)
    bundle = RayBundle(
        origins, directions, torch.full_like(origins[..., :1], 2.0), torch.full_like(origins[..., :1], 3.4)
    )
    renderer = VolumeRenderer(num_coarse=16, num_importance=16).eval()
    first, second = renderer(sphere_field, bundle), renderer(sphere_field, bundle)
    assert torch.equal(first.values, second.values)
    renderer.train()
    a = renderer(sphere_field, bundle, rng=torch.Generator().manual_seed(1))
    b = renderer(sphere_field, bundle, rng=torch.Generator().manual_seed(2))
    assert not torch.equal(a.depth, b.depth)
