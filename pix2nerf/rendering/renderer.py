"""Two-pass volume renderer: stratified coarse samples, importance fine samples, one composite."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from pix2nerf.rendering.compositing import Composite, composite
from pix2nerf.rendering.samplers import gather_samples, importance, importance_eg3d, merge_samples, stratified

FieldFn = Callable[[Tensor], tuple[Tensor, Tensor]]
"""A radiance field as the renderer sees it: points (B, N, 3) -> (sigma (B, N, 1), values (B, N, F)).

sigma is a density, or a raw density when the renderer has a ``density_activation``."""


@dataclass
class RayBundle:
    """Rays to render: origins and unit directions (B, R, 3), bounds near/far (B, R, 1)."""

    origins: Tensor
    directions: Tensor
    near: Tensor
    far: Tensor

    @classmethod
    def between(cls, origins: Tensor, directions: Tensor, near: float, far: float) -> RayBundle:
        """Rays (B, R, 3) that all sample the same distances ``near`` to ``far`` (camera rays of a fixed scene)."""
        bounds = torch.ones_like(origins[..., :1])
        return cls(origins, directions, bounds * near, bounds * far)


@dataclass
class Proposal:
    """Where a coarse pass found the rays' compositing weight: distances t (B, R, S) and the weights (B, R, S - 1)
    of the intervals between them. The fine pass draws its samples from it."""

    t: Tensor
    weights: Tensor


class VolumeRenderer(nn.Module):
    """Render a field along rays with a coarse stratified pass and an importance-sampled fine pass.

    The fine pass re-evaluates the field at ``num_importance`` new distances drawn from the coarse
    weights, merges them with the coarse samples and composites all S + S' samples (as EG3D does).
    Given a :class:`Proposal` (e.g. a coarse pass at a lower image resolution, see
    :func:`~pix2nerf.rendering.samplers.upsample_proposal`) it skips its own coarse pass and composites the S'
    fine samples alone.

    Args:
        num_coarse: stratified samples per ray (S).
        num_importance: importance samples per ray (S'); 0 renders the coarse pass only.
        jitter: jitter coarse samples and draw random (not evenly spaced) quantiles; the default for
            training. Evaluation sets it False for deterministic images.
        smooth_weights: blur the coarse weights before importance sampling (EG3D, mip-NeRF).
        density_activation: maps the field's raw sigma to density, after interval averaging (EG3D);
            None when the field returns densities.
        importance_mode: ``"standard"`` (bins are the coarse intervals) or ``"eg3d"`` (EG3D's exact
            bin alignment, see :func:`~pix2nerf.rendering.samplers.importance_eg3d`; always smoothed).
    """

    def __init__(
        self,
        num_coarse: int = 48,
        num_importance: int = 48,
        jitter: bool = True,
        smooth_weights: bool = True,
        density_activation: Callable[[Tensor], Tensor] | None = None,
        importance_mode: Literal["standard", "eg3d"] = "standard",
    ) -> None:
        super().__init__()
        if importance_mode not in ("standard", "eg3d"):
            raise ValueError(f"importance_mode must be 'standard' or 'eg3d', got {importance_mode!r}")
        self.num_coarse = num_coarse
        self.num_importance = num_importance
        self.jitter = jitter
        self.smooth_weights = smooth_weights
        self.density_activation = density_activation
        self.importance_mode = importance_mode

    def _evaluate(self, field: FieldFn, rays: RayBundle, t: Tensor) -> tuple[Tensor, Tensor]:
        batch, num_rays, num_samples = t.shape
        points = rays.origins[:, :, None, :] + t[..., None] * rays.directions[:, :, None, :]
        sigma, values = field(points.reshape(batch, num_rays * num_samples, 3))
        return (
            sigma.reshape(batch, num_rays, num_samples, 1),
            values.reshape(batch, num_rays, num_samples, values.shape[-1]),
        )

    def propose(
        self, field: FieldFn, rays: RayBundle, rng: torch.Generator | None = None, num_coarse: int | None = None
    ) -> Proposal:
        """The coarse pass alone: ``num_coarse`` stratified samples per ray (default: the renderer's) and their
        interval weights, without gradients (they only place the fine samples)."""
        with torch.no_grad():
            t = stratified(rays.near, rays.far, num_coarse or self.num_coarse, self.jitter and self.training, rng)
            sigma, values = self._evaluate(field, rays, t)
            return Proposal(t, self._weights(sigma, values, t))

    def _weights(self, sigma: Tensor, values: Tensor, t: Tensor) -> Tensor:
        return composite(sigma, values[..., :0], t, density_activation=self.density_activation).weights

    def forward(
        self,
        field: FieldFn,
        rays: RayBundle,
        background: Tensor | None = None,
        rng: torch.Generator | None = None,
        num_coarse: int | None = None,
        num_importance: int | None = None,
        proposal: Proposal | None = None,
    ) -> Composite:
        """Composite ``field`` along ``rays``; returns per-ray values (B, R, F), depth, opacity, weights.

        ``num_coarse`` and ``num_importance`` override the renderer's sample counts for this call. With a
        ``proposal`` for these rays, only its ``num_importance`` fine samples are evaluated and composited.
        """
        random = self.jitter and self.training
        num_coarse = num_coarse or self.num_coarse
        num_importance = self.num_importance if num_importance is None else num_importance
        if proposal is not None:
            if num_importance < 2:
                raise ValueError(f"rendering from a proposal needs num_importance >= 2 samples, got {num_importance}")
            t_fine = importance(proposal.t, proposal.weights, num_importance, not random, self.smooth_weights, rng)
            t_fine = torch.sort(t_fine, dim=-1).values  # random quantiles come unsorted
            sigma, values = self._evaluate(field, rays, t_fine)
            return composite(sigma, values, t_fine, background, self.density_activation)
        t = stratified(rays.near, rays.far, num_coarse, random, rng)
        sigma, values = self._evaluate(field, rays, t)
        if num_importance > 0:
            weights = self._weights(sigma, values, t)
            if self.importance_mode == "eg3d":
                t_fine = importance_eg3d(t, weights, num_importance, not random, rng)
            else:
                t_fine = importance(t, weights, num_importance, not random, self.smooth_weights, rng)
            sigma_fine, values_fine = self._evaluate(field, rays, t_fine)
            t, order = merge_samples(t, t_fine)
            sigma = gather_samples(torch.cat([sigma, sigma_fine], dim=2), order)
            values = gather_samples(torch.cat([values, values_fine], dim=2), order)
        return composite(sigma, values, t, background, self.density_activation)
