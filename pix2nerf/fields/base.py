"""The radiance-head interface: points plus per-latent field parameters -> density, features, semantics."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class FieldOutput:
    """What a radiance head returns for N points of each of B fields.

    Attributes:
        sigma: (B, N, 1) raw density (pre-activation; the renderer applies the density activation).
        features: (B, N, F) colour features in [0, 1] (the first 3 are RGB).
        semantics: (B, N, K) semantic logits, or None for heads without semantics.
    """

    sigma: Tensor
    features: Tensor
    semantics: Tensor | None = None


class RadianceHead(nn.Module):
    """Base class of radiance heads: ``forward(points (B, N, 3), params) -> FieldOutput``.

    ``params`` is whatever the generator's backbone produces for the head (tri-planes for
    :class:`~pix2nerf.fields.triplane.TriPlaneHead`, the latent for the hash grid).
    """

    feature_dim: int
    num_semantic_classes: int

    def forward(self, points: Tensor, params: Tensor) -> FieldOutput:  # pragma: no cover - interface
        raise NotImplementedError


DENSITY_SHIFT = 1.0
"""EG3D's density activation is ``softplus(raw - 1)``: fields start nearly transparent."""


def density_activation(raw: Tensor) -> Tensor:
    """EG3D's density activation, ``softplus(raw - 1)``, applied to raw densities of any shape."""
    return F.softplus(raw - DENSITY_SHIFT)


FEATURE_PADDING = 0.001
"""mip-NeRF's widened sigmoid: features can reach 0 and 1 exactly (range [-0.001, 1.001])."""


def feature_activation(raw: Tensor) -> Tensor:
    """Sigmoid widened by ``FEATURE_PADDING`` on both sides (EG3D's colour feature activation)."""
    return torch.sigmoid(raw) * (1 + 2 * FEATURE_PADDING) - FEATURE_PADDING


BACKGROUND_CLASS = 0
"""Semantic class of empty space (CelebAMask-HQ's background): rays that leave the field see it."""


def split_decoder_output(raw: Tensor, feature_dim: int, num_semantic_classes: int) -> FieldOutput:
    """Split a decoder's raw output (B, N, 1 + F + K) into raw density, activated features and logits."""
    features = feature_activation(raw[..., 1 : 1 + feature_dim])
    semantics = raw[..., 1 + feature_dim :] if num_semantic_classes else None
    return FieldOutput(sigma=raw[..., :1], features=features, semantics=semantics)
