"""Metrics: image quality, pose error, multi-view consistency."""

from pix2nerf.metrics.consistency import reprojection_error, unproject_depth, warp_to_view
from pix2nerf.metrics.image import pose_error_degrees, psnr, ssim

__all__ = ["pose_error_degrees", "psnr", "reprojection_error", "ssim", "unproject_depth", "warp_to_view"]
