"""Image and pose metrics against ground truth. Images are (B, 3, H, W) in [-1, 1]."""

from __future__ import annotations

import kornia
import torch
from torch import Tensor

SSIM_WINDOW = 11
"""Gaussian window of SSIM (Wang et al. 2004)."""


def psnr(prediction: Tensor, target: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB per image (B,), on the [0, 1] scale (identical images: +inf)."""
    mse = ((prediction - target) / 2).square().flatten(1).mean(dim=1)
    return -10.0 * torch.log10(mse)


def ssim(prediction: Tensor, target: Tensor, window: int = SSIM_WINDOW) -> Tensor:
    """Mean structural similarity per image (B,) on the [0, 1] scale (kornia's Gaussian-window SSIM)."""
    value = kornia.metrics.ssim(prediction * 0.5 + 0.5, target * 0.5 + 0.5, window, max_val=1.0)
    return value.flatten(1).mean(dim=1)


def viewing_direction(yaw_pitch: Tensor) -> Tensor:
    """Unit vector (B, 3) from the origin toward a camera at (yaw, pitch) (B, 2) (see ``cameras.look_at``)."""
    yaw, pitch = yaw_pitch.unbind(-1)
    return torch.stack([torch.cos(pitch) * torch.sin(yaw), torch.sin(pitch), torch.cos(pitch) * torch.cos(yaw)], -1)


def pose_error_degrees(predicted: Tensor, target: Tensor) -> Tensor:
    """Angle in degrees (B,) between the camera directions of two (yaw, pitch) batches (B, 2)."""
    cos = (viewing_direction(predicted) * viewing_direction(target)).sum(-1).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cos))
