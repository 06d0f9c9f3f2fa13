"""Metrics: image quality, depth and pose error, multi-view consistency."""

from pix2nerf.metrics.consistency import reprojection_error, unproject_depth, warp_to_view

__all__ = ["reprojection_error", "unproject_depth", "warp_to_view"]
