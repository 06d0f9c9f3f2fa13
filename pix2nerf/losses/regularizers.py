"""Regularisers of the radiance field and the pose regression loss."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

DENSITY_REG_POINTS = 1000
"""Random points per latent for EG3D's density regulariser."""


def density_regularization(
    sigma_fn: Callable[[Tensor], Tensor],
    batch_size: int,
    device: torch.device,
    perturbation: float = 0.004,
    extent: float = 1.0,
    num_points: int = DENSITY_REG_POINTS,
    rng: torch.Generator | None = None,
) -> Tensor:
    """EG3D's density smoothness prior: L1 between raw densities at random points and at jittered copies.

    Args:
        sigma_fn: points (B, N, 3) -> raw densities (B, N, 1) of the B fields being regularised.
        perturbation: standard deviation of the jitter (EG3D's ``density_reg_p_dist``).
        extent: points are uniform in [-extent, extent]^3 (EG3D uses 1).
    """
    points = (torch.rand(batch_size, num_points, 3, device=device, generator=rng) * 2 - 1) * extent
    jittered = points + torch.randn(points.shape, device=device, generator=rng) * perturbation
    sigma = sigma_fn(torch.cat([points, jittered], dim=1))
    return F.l1_loss(sigma[:, :num_points], sigma[:, num_points:])


def pose_loss(predicted: Tensor, target: Tensor) -> Tensor:
    """Mean squared error between predicted and true (yaw, pitch) in radians, both (B, 2)."""
    return F.mse_loss(predicted, target)
