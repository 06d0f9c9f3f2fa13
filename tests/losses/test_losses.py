import math

import pytest
import torch

from pix2nerf.losses import density_regularization, discriminator_loss, generator_loss, pose_loss, r1_penalty


def test_logistic_losses_known_values():
    zero = torch.zeros(4, 1)
    assert generator_loss(zero).item() == pytest.approx(math.log(2))
    assert discriminator_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    confident = discriminator_loss(torch.full((4, 1), 20.0), torch.full((4, 1), -20.0))
    assert confident.item() < 1e-8
    assert generator_loss(torch.full((2, 1), -20.0)).item() > 19.0


def test_r1_is_the_squared_input_gradient():
    weight = torch.randn(1, 12)
    inputs = torch.randn(3, 12, requires_grad=True)
    logits = (inputs * weight).sum(-1, keepdim=True)
    torch.testing.assert_close(r1_penalty(logits, [inputs]), weight.square().sum().expand(3))


def test_density_regularization_vanishes_for_constant_fields_and_sees_noise():
    constant = density_regularization(lambda p: torch.ones(*p.shape[:2], 1), 2, torch.device("cpu"))
    assert constant.item() == 0.0
    rough = density_regularization(lambda p: torch.sin(500 * p[..., :1]), 2, torch.device("cpu"))
    smooth = density_regularization(lambda p: torch.sin(p[..., :1]), 2, torch.device("cpu"))
    assert rough.item() > 50 * smooth.item()


def test_pose_loss_is_mse():
    assert pose_loss(torch.tensor([[0.1, 0.2]]), torch.tensor([[0.0, 0.0]])).item() == pytest.approx(0.025)
