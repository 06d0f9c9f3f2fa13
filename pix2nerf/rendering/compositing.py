"""Differentiable volume rendering: alpha compositing of densities and per-sample values along rays."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from pix2nerf.precision import at_least_float32, full_precision


@dataclass
class Composite:
    """Per-ray results of compositing.

    Attributes:
        values: (B, R, F) composited values (colour features, semantic logits, ...).
        depth: (B, R, 1) expected distance along the ray of the visible surface (weights normalised by
            opacity, as EG3D does); rays with zero opacity get the far bound.
        opacity: (B, R, 1) accumulated alpha, 1 - transmittance through the whole sampled segment.
        weights: (B, R, S - 1) compositing weight of each interval [t_i, t_{i+1}].
    """

    values: Tensor
    depth: Tensor
    opacity: Tensor
    weights: Tensor


def composite(
    sigma: Tensor,
    values: Tensor,
    t: Tensor,
    background: Tensor | None = None,
    density_activation: Callable[[Tensor], Tensor] | None = None,
) -> Composite:
    """Alpha-composite samples along rays with midpoint quadrature.

    S samples bound S - 1 intervals; each interval takes the mean density, value and distance of its
    two end samples (EG3D's ray marcher), so its alpha is ``1 - exp(-sigma_mid * (t_{i+1} - t_i))``.
    Transmittance is accumulated in log space, which is exact and stable for opaque media. Compositing runs in
    float32 even under bf16 autocast (:func:`~pix2nerf.precision.full_precision`); the outputs are float32.

    Args:
        sigma: (B, R, S, 1) non-negative densities, or raw densities when ``density_activation`` is given.
        values: (B, R, S, F) per-sample values.
        t: (B, R, S) sorted sample distances along unit-length rays.
        background: optional (F,) or (B, R, F) value seen through the remaining transmittance.
        density_activation: maps raw densities to densities; applied to each interval's mean raw
            density (EG3D activates after averaging, which matters for exact reproduction).
    """
    if sigma.shape[:-1] != t.shape or sigma.shape[-1] != 1 or values.shape[:-1] != t.shape:
        raise ValueError(
            "composite expects sigma (B, R, S, 1), values (B, R, S, F) and t (B, R, S); got "
            f"{tuple(sigma.shape)}, {tuple(values.shape)} and {tuple(t.shape)}"
        )
    if t.shape[-1] < 2:
        raise ValueError("compositing needs at least 2 samples per ray")
    with full_precision(t.device):
        sigma, values, t = at_least_float32(sigma), at_least_float32(values), at_least_float32(t)
        return _composite(sigma, values, t, background, density_activation)


def _composite(
    sigma: Tensor,
    values: Tensor,
    t: Tensor,
    background: Tensor | None,
    density_activation: Callable[[Tensor], Tensor] | None,
) -> Composite:
    """The body of :func:`composite`, on float32 (or float64) inputs with autocast off."""
    deltas = t[..., 1:] - t[..., :-1]
    sigma = sigma[..., 0]
    sigma_mid = 0.5 * (sigma[..., 1:] + sigma[..., :-1])
    if density_activation is not None:
        sigma_mid = density_activation(sigma_mid)
    optical_depth = sigma_mid * deltas
    alpha = -torch.expm1(-optical_depth)
    optical_depth_before = torch.cumsum(optical_depth, dim=-1) - optical_depth
    weights = alpha * torch.exp(-optical_depth_before)  # (B, R, S - 1), one per interval

    # An interval's value is the mean of its end samples, so sample j carries half the weight of each
    # interval it bounds. Compositing then is one batched (1, S) @ (S, F) product per ray, with no
    # (B, R, S - 1, F) midpoint tensor.
    zero = torch.zeros_like(weights[..., :1])
    sample_weights = 0.5 * (torch.cat([weights, zero], dim=-1) + torch.cat([zero, weights], dim=-1))
    composited = (sample_weights[..., None, :] @ values)[..., 0, :]

    opacity = weights.sum(dim=-1, keepdim=True)
    expected_t = (sample_weights * t).sum(dim=-1, keepdim=True)
    near, far = t[..., :1], t[..., -1:]
    depth = torch.where(opacity > 0, expected_t / opacity.clamp_min(1e-20), far)
    depth = torch.minimum(torch.maximum(depth, near), far)
    if background is not None:
        composited = composited + (1.0 - opacity) * background
    return Composite(values=composited, depth=depth, opacity=opacity, weights=weights)
