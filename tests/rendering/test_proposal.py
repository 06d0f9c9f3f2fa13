"""A coarse pass at low resolution placing the fine samples of a full-resolution image (fewer field evaluations)."""

import pytest
import torch

from pix2nerf.cameras import look_at, rays
from pix2nerf.fields import SpheresField
from pix2nerf.rendering import Proposal, RayBundle, VolumeRenderer, samples_per_ray, upsample_proposal
from tests.rendering.test_compositing import SPHERE_RADIUS, ray_sphere_entry, sphere_field


def test_each_fine_ray_takes_its_low_resolution_pixel_and_with_dilation_its_neighbours():
    low, fine = (2, 2), (4, 4)
    t = torch.arange(4.0).reshape(1, 4, 1).expand(1, 4, 3)  # low pixel i samples at distance i
    weights = torch.eye(4)[None, :, :2] * torch.tensor([1.0, 2.0])  # pixel 0 weighs interval 0, pixel 1 interval 1
    fine_t, fine_weights = upsample_proposal(t, weights, low, fine, dilation=0)
    rows, cols = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    containing = (rows // 2 * 2 + cols // 2).flatten()
    assert torch.equal(fine_t[0, :, 0], containing.float())
    assert torch.equal(fine_weights[0], weights[0, containing])
    _, dilated = upsample_proposal(t, weights, low, fine, dilation=1)
    assert torch.equal(dilated[0], torch.tensor([1.0, 2.0]).expand(16, 2))  # the 3x3 window spans the 2x2 grid


def test_upsample_proposal_rejects_a_grid_of_another_size():
    with pytest.raises(ValueError, match="4x4 grid"):
        upsample_proposal(torch.zeros(1, 9, 5), torch.zeros(1, 9, 4), (4, 4), (8, 8))


class CountingField(torch.nn.Module):
    """A field that counts the points it is evaluated at."""

    def __init__(self, field: SpheresField) -> None:
        super().__init__()
        self.field, self.points = field, 0

    def forward(self, points):
        self.points += points.shape[0] * points.shape[1]
        return self.field(points)


def test_low_resolution_proposal_renders_the_sphere_at_its_analytic_depth():
    """32 coarse samples on a 2x smaller grid + 16 fine samples (24 evaluations per ray; 128 with two
    full-resolution passes for the same accuracy) find the analytic surface and keep empty space empty."""
    resolution, stride, num_coarse, num_importance = 64, 2, 32, 16
    cameras = look_at(torch.tensor([0.0, 0.6, -0.9]), torch.tensor([0.0, 0.2, -0.1]), focal=2.0)
    renderer = VolumeRenderer(num_coarse, num_importance, jitter=False).eval()
    field = CountingField(sphere_field)
    low = resolution // stride
    low_origins, low_directions = rays(cameras, low)
    coarse = renderer.propose(field, RayBundle.between(low_origins, low_directions, 2.0, 3.4))
    proposal = Proposal(*upsample_proposal(coarse.t, coarse.weights, (low, low), (resolution, resolution)))
    origins, directions = rays(cameras, resolution)
    out = renderer(field, RayBundle.between(origins, directions, 2.0, 3.4), proposal=proposal)

    num_rays = origins.shape[0] * origins.shape[1]
    assert field.points == num_rays * samples_per_ray(num_coarse, num_importance, stride)
    entry, closest = ray_sphere_entry(origins, directions)
    solid, empty = closest < 0.9 * SPHERE_RADIUS, closest > 1.05 * SPHERE_RADIUS
    assert solid.sum() > 4000 and empty.sum() > 4000
    assert (out.depth[..., 0] - entry)[solid].abs().max() < 0.02 * SPHERE_RADIUS
    assert out.opacity[..., 0][solid].min() > 0.999
    assert out.opacity[..., 0][empty].max() < 1e-6


def test_rendering_from_a_proposal_needs_fine_samples():
    bundle = RayBundle.between(torch.zeros(1, 4, 3), torch.tensor([0.0, 0.0, 1.0]).expand(1, 4, 3), 2.0, 3.0)
    proposal = Proposal(torch.linspace(2.0, 3.0, 8).expand(1, 4, 8), torch.ones(1, 4, 7))
    with pytest.raises(ValueError, match="num_importance >= 2"):
        VolumeRenderer(8, 0)(sphere_field, bundle, proposal=proposal)
