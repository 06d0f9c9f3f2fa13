import math

import pytest
import torch

from pix2nerf.metrics import pose_error_degrees, psnr, ssim


def test_psnr_known_values():
    a = torch.zeros(2, 3, 8, 8)
    assert torch.isinf(psnr(a, a)).all()
    shifted = a + 0.2  # 0.1 on the [0, 1] scale: MSE 0.01 -> 20 dB
    torch.testing.assert_close(psnr(shifted, a), torch.full((2,), 20.0))


def test_ssim_identical_and_degraded():
    torch.manual_seed(0)
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    assert ssim(image, image).item() == pytest.approx(1.0, abs=1e-4)
    noise = torch.randn_like(image)
    mild, strong = ssim(image + 0.2 * noise, image).item(), ssim(image + 0.8 * noise, image).item()
    assert strong < 0.6 and strong < mild < 0.99


def test_pose_error_in_degrees():
    target = torch.tensor([[0.0, 0.0], [0.3, 0.1]])
    assert pose_error_degrees(target, target).max() < 1e-3
    yawed = target + torch.tensor([[math.radians(10), 0.0], [0.0, 0.0]])
    assert pose_error_degrees(yawed, target)[0].item() == pytest.approx(10.0, abs=1e-3)


@pytest.mark.parametrize("offset", [0.02, 0.2, -0.5, 1.0])
def test_psnr_of_a_constant_offset(offset):
    # An offset d in [-1, 1] is |d| / 2 on the [0, 1] scale: PSNR = -10 log10(d^2 / 4) = 20 log10(2 / |d|).
    target = torch.rand(3, 3, 8, 8) * 0.5 - 0.25
    expected = 20 * math.log10(2 / abs(offset))
    torch.testing.assert_close(psnr(target + offset, target), torch.full((3,), expected), atol=1e-3, rtol=0)
