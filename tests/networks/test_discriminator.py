import pytest
import torch

from pix2nerf.cameras import look_at
from pix2nerf.losses import r1_penalty
from pix2nerf.networks import Discriminator
from pix2nerf.networks.discriminator import MinibatchStdLayer

TINY_D = dict(img_resolution=16, channel_base=128, channel_max=16, mapping_layers=2)


def test_pose_conditioning_changes_the_score():
    torch.manual_seed(0)
    d = Discriminator(**TINY_D)
    images = torch.randn(4, 3, 16, 16)
    frontal = look_at(torch.zeros(4), torch.zeros(4)).label()
    profile = look_at(torch.full((4,), 0.8), torch.zeros(4)).label()
    assert not torch.allclose(d(images, frontal).logits, d(images, profile).logits)
    with pytest.raises(ValueError, match="conditioned"):
        d(images)
    unconditional = Discriminator(c_dim=0, **TINY_D)
    assert unconditional(images).logits.shape == (4, 1)


def test_dual_discrimination_sees_the_raw_image():
    torch.manual_seed(0)
    d = Discriminator(dual=True, pose_head=True, **TINY_D)
    c = look_at(torch.zeros(4), torch.zeros(4)).label()
    image, raw = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 8, 8)
    out = d(image, c, raw)
    assert out.logits.shape == (4, 1) and out.pose.shape == (4, 2)
    assert not torch.allclose(out.logits, d(image, c, torch.randn(4, 3, 8, 8)).logits)
    with pytest.raises(ValueError, match="needs image_raw"):
        d(image, c)
    with pytest.raises(ValueError, match="16x16"):
        d(torch.randn(4, 3, 32, 32), c, raw)


def test_minibatch_std_appends_the_group_spread():
    x = torch.zeros(4, 2, 3, 3)
    x[:2] = 1.0  # two groups of two (group size 2): per-group std over samples is 0.5
    out = MinibatchStdLayer(group_size=4)(x)
    assert out.shape == (4, 3, 3, 3)
    torch.testing.assert_close(out[:, 2], torch.full((4, 3, 3), 0.5), atol=1e-4, rtol=0)


def test_r1_matches_finite_differences_on_a_tiny_discriminator():
    torch.manual_seed(0)
    d = Discriminator(c_dim=0, mbstd_num_channels=0, **TINY_D).double()
    image = torch.randn(1, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    penalty = r1_penalty(d(image).logits, [image])
    analytic = torch.autograd.grad(d(image).logits.sum(), image)[0]
    with torch.no_grad():
        eps = 1e-6
        gradient = torch.zeros_like(image)
        flat = gradient.view(-1)
        for index in torch.randperm(image.numel())[:40].tolist():
            step = torch.zeros_like(image).view(-1)
            step[index] = eps
            plus = d(image + step.view_as(image)).logits
            minus = d(image - step.view_as(image)).logits
            flat[index] = ((plus - minus) / (2 * eps)).item()
    sampled = flat != 0
    torch.testing.assert_close(analytic.reshape(-1)[sampled], flat[sampled], atol=1e-7, rtol=1e-5)
    torch.testing.assert_close(penalty, analytic.square().sum().reshape(1))
