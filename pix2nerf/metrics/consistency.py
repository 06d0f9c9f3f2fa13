"""Multi-view consistency: warp one view into another through rendered (or ground-truth) depth."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pix2nerf.cameras import Cameras, rays

OCCLUSION_TOLERANCE = 0.01
"""Depth difference (world units) beyond which a reprojected point counts as hidden in the other view."""


def unproject_depth(depth: Tensor, cameras: Cameras) -> Tensor:
    """World points (B, H * W, 3) of every pixel centre at its z-depth (B, 1, H, W)."""
    origins, directions = rays(cameras, (depth.shape[-2], depth.shape[-1]))
    cos = (directions * cameras.forward[:, None]).sum(-1, keepdim=True)
    return origins + directions * depth.flatten(2).transpose(1, 2) / cos


def warp_to_view(
    image_b: Tensor, depth_a: Tensor, cameras_a: Cameras, cameras_b: Cameras
) -> tuple[Tensor, Tensor, Tensor]:
    """Backward-warp view B into view A using A's depth.

    Args:
        image_b: (B, C, H', W') values of view B.
        depth_a: (B, 1, H, W) z-depth of view A (non-finite where A sees nothing).
        cameras_a, cameras_b: the two views' cameras.

    Returns:
        warped: (B, C, H, W) view B's values at the points A sees (bilinear).
        z_b: (B, 1, H, W) depth of those points in camera B (to test occlusion against B's depth).
        inside: (B, 1, H, W) bool, the point projects inside B's image and in front of it.
    """
    points = unproject_depth(depth_a.nan_to_num(posinf=0.0, neginf=0.0), cameras_a)
    uv, z_b = cameras_b.project(points)
    grid = (uv * 2.0 - 1.0)[:, :, None]  # (B, N, 1, 2)
    warped = F.grid_sample(image_b, grid, mode="bilinear", padding_mode="border", align_corners=False)
    shape = (depth_a.shape[0], 1, *depth_a.shape[-2:])
    inside = ((uv >= 0) & (uv <= 1)).all(-1, keepdim=True) & (z_b > 0)
    inside = inside.transpose(1, 2).reshape(shape) & torch.isfinite(depth_a)
    return warped.reshape(*warped.shape[:2], *depth_a.shape[-2:]), z_b.transpose(1, 2).reshape(shape), inside


def reprojection_error(
    image_a: Tensor,
    depth_a: Tensor,
    cameras_a: Cameras,
    image_b: Tensor,
    cameras_b: Cameras,
    mask: Tensor | None = None,
    depth_b: Tensor | None = None,
    occlusion_tolerance: float = OCCLUSION_TOLERANCE,
) -> Tensor:
    """Mean absolute difference (B,) between view A and view B warped into A through A's depth.

    Only pixels that land inside B (and inside ``mask`` (B, 1, H, W), if given) count. With B's depth
    (B, 1, H', W'), points hidden in B (B sees a surface more than ``occlusion_tolerance`` closer) are
    excluded too.
    """
    warped, z_b, inside = warp_to_view(image_b, depth_a, cameras_a, cameras_b)
    valid = inside if mask is None else inside & mask
    if depth_b is not None:
        seen_depth, _, _ = warp_to_view(depth_b.nan_to_num(posinf=1e6), depth_a, cameras_a, cameras_b)
        valid = valid & ((seen_depth - z_b).abs() < occlusion_tolerance)
    error = (image_a - warped).abs().mean(dim=1, keepdim=True)
    return (error * valid).flatten(1).sum(1) / valid.flatten(1).sum(1).clamp_min(1)
