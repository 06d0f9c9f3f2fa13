"""Two-pass volume renderer: stratified coarse samples, importance fine samples, one composite."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pix2nerf.rendering.compositing import Composite, composite
from pix2nerf.rendering.samplers import gather_samples, importance, merge_samples, stratified

FieldFn = Callable[[Tensor], tuple[Tensor, Tensor]]
"""A radiance field as the renderer sees it: points (B, N, 3) -> (sigma (B, N, 1) >= 0, values (B, N, F))."""


@dataclass
class RayBundle:
    """Rays to render: origins and unit directions (B, R, 3), bounds near/far (B, R, 1)."""

    origins: Tensor
    directions: Tensor
    near: Tensor
    far: Tensor


class VolumeRenderer(nn.Module):
    """Render a field along rays with a coarse stratified pass and an importance-sampled fine pass.

    The fine pass re-evaluates the field at ``num_importance`` new distances drawn from the coarse
    weights, merges them with the coarse samples and composites all S + S' samples (as EG3D does).

    Args:
        num_coarse: stratified samples per ray (S).
        num_importance: importance samples per ray (S'); 0 renders the coarse pass only.
        jitter: jitter coarse samples and draw random (not evenly spaced) quantiles; the default for
            training. Evaluation sets it False for deterministic images.
        smooth_weights: blur the coarse weights before importance sampling (EG3D, mip-NeRF).
    """

    def __init__(
        self, num_coarse: int = 48, num_importance: int = 48, jitter: bool = True, smooth_weights: bool = True
    ) -> None:
        super().__init__()
        self.num_coarse = num_coarse
        self.num_importance = num_importance
        self.jitter = jitter
        self.smooth_weights = smooth_weights

    def _evaluate(self, field: FieldFn, rays: RayBundle, t: Tensor) -> tuple[Tensor, Tensor]:
        batch, num_rays, num_samples = t.shape
        points = rays.origins[:, :, None, :] + t[..., None] * rays.directions[:, :, None, :]
        sigma, values = field(points.reshape(batch, num_rays * num_samples, 3))
        return (
            sigma.reshape(batch, num_rays, num_samples, 1),
            values.reshape(batch, num_rays, num_samples, values.shape[-1]),
        )

    def forward(
        self,
        field: FieldFn,
        rays: RayBundle,
        background: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Composite:
        """Composite ``field`` along ``rays``; returns per-ray values (B, R, F), depth, opacity, weights."""
        t = stratified(rays.near, rays.far, self.num_coarse, self.jitter and self.training, generator)
        sigma, values = self._evaluate(field, rays, t)
        if self.num_importance > 0:
            coarse = composite(sigma, values, t)
            t_fine = importance(
                t,
                coarse.weights,
                self.num_importance,
                deterministic=not (self.jitter and self.training),
                smooth=self.smooth_weights,
                generator=generator,
            )
            sigma_fine, values_fine = self._evaluate(field, rays, t_fine)
            t, order = merge_samples(t, t_fine)
            sigma = gather_samples(torch.cat([sigma, sigma_fine], dim=2), order)
            values = gather_samples(torch.cat([values, values_fine], dim=2), order)
        return composite(sigma, values, t, background)
