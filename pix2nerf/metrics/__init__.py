"""Metrics: image quality, perceptual distance, FID/KID, depth, semantics, pose error, multi-view consistency."""

from pix2nerf.metrics.consistency import reprojection_error, unproject_depth, warp_to_view
from pix2nerf.metrics.depth import DepthErrors, depth_errors
from pix2nerf.metrics.distribution import (
    DistributionScores,
    InceptionDistances,
    InceptionUnavailable,
    InceptionWeightsMissing,
    frechet_distance,
    gaussian_statistics,
    inception_distances,
    inception_weights_path,
    kernel_distance,
)
from pix2nerf.metrics.image import pose_error_degrees, psnr, ssim
from pix2nerf.metrics.perceptual import LPIPSMetric
from pix2nerf.metrics.semantic import class_iou, mean_iou

__all__ = [
    "DepthErrors",
    "DistributionScores",
    "InceptionDistances",
    "InceptionUnavailable",
    "InceptionWeightsMissing",
    "LPIPSMetric",
    "class_iou",
    "depth_errors",
    "frechet_distance",
    "gaussian_statistics",
    "inception_distances",
    "inception_weights_path",
    "kernel_distance",
    "mean_iou",
    "pose_error_degrees",
    "psnr",
    "reprojection_error",
    "ssim",
    "unproject_depth",
    "warp_to_view",
]
