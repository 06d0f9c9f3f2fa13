import torch

from pix2nerf.cameras import look_at
from pix2nerf.data.heads import render_heads, sample_heads
from pix2nerf.metrics import reprojection_error, unproject_depth, warp_to_view


def test_unproject_depth_recovers_a_known_plane():
    cameras = look_at(0.0, 0.0)
    depth = torch.full((1, 1, 5, 7), 2.5)  # the plane z = 0.2 seen from the frontal camera at z = 2.7
    points = unproject_depth(depth, cameras)
    torch.testing.assert_close(points[..., 2], torch.full((1, 35), 0.2), atol=1e-5, rtol=0)


def test_warping_a_view_into_itself_is_the_identity():
    out = render_heads(sample_heads([4]), look_at(torch.tensor([0.2]), torch.tensor([0.1])), 24)
    cameras = look_at(torch.tensor([0.2]), torch.tensor([0.1]))
    warped, z_b, inside = warp_to_view(out.image, out.depth, cameras, cameras)
    torch.testing.assert_close(warped[inside.expand_as(warped)], out.image[inside.expand_as(warped)], atol=1e-4, rtol=0)
    torch.testing.assert_close(z_b[inside], out.depth[inside], atol=1e-4, rtol=0)


def test_true_depth_is_consistent_and_wrong_depth_is_not():
    cameras = look_at(torch.tensor([-0.15, 0.15]), torch.tensor([0.0, 0.05]))
    out = render_heads(sample_heads([6, 6]), cameras, 64)
    mask = out.mask[:1]
    good = reprojection_error(
        out.image[:1], out.depth[:1], cameras[:1], out.image[1:], cameras[1:], mask, out.depth[1:]
    )
    bad = reprojection_error(out.image[:1], out.depth[:1] * 1.03, cameras[:1], out.image[1:], cameras[1:], mask)
    assert good.item() < 0.05 and bad.item() > 3 * good.item(), (good, bad)
