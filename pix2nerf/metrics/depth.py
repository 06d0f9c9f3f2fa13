"""Depth errors against ground truth: scale-aware (absolute units) and scale-invariant (shape only).

A 3D GAN's geometry is only defined up to the camera model it learned, so both kinds are reported:
the scale-aware errors check metric depth, the scale-invariant ones the shape of the surface.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class DepthErrors:
    """Per-image errors (B,) over the valid pixels.

    Attributes:
        mae: mean absolute error, in world units.
        rmse: root mean squared error, in world units.
        scaled_mae: mean absolute error after median scaling (prediction x median(target) / median(prediction)).
        silog: scale-invariant log RMSE (Eigen et al. 2014): the standard deviation of log(prediction / target).
    """

    mae: Tensor
    rmse: Tensor
    scaled_mae: Tensor
    silog: Tensor

    def mean(self) -> dict[str, Tensor]:
        """Batch means by name."""
        return {name: getattr(self, name).mean() for name in ("mae", "rmse", "scaled_mae", "silog")}


def depth_errors(prediction: Tensor, target: Tensor, mask: Tensor | None = None) -> DepthErrors:
    """Errors of predicted depth (B, 1, H, W) against target depth (B, 1, H, W).

    Valid pixels have a finite target, a finite positive prediction and (if given) ``mask`` (B, 1, H, W) set;
    an image without any valid pixel scores NaN.
    """
    valid = torch.isfinite(target) & torch.isfinite(prediction) & (prediction > 0)
    if mask is not None:
        valid = valid & mask.bool()
    errors: dict[str, list[Tensor]] = {name: [] for name in ("mae", "rmse", "scaled_mae", "silog")}
    for p, t, keep in zip(prediction.flatten(1), target.flatten(1), valid.flatten(1), strict=True):
        p, t = p[keep].double(), t[keep].double()
        difference = p - t
        errors["mae"].append(difference.abs().mean())
        errors["rmse"].append(difference.square().mean().sqrt())
        errors["scaled_mae"].append((p * (t.median() / p.median()) - t).abs().mean())
        log_ratio = p.log() - t.log()
        errors["silog"].append((log_ratio.square().mean() - log_ratio.mean().square()).clamp_min(0).sqrt())
    return DepthErrors(**{name: torch.stack(values).to(prediction.dtype) for name, values in errors.items()})
