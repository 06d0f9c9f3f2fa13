"""Tri-plane radiance head (EG3D): features sampled from three axis-aligned planes, decoded by a small MLP."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pix2nerf.fields.base import FieldOutput, RadianceHead, feature_activation, split_decoder_output
from pix2nerf.layers import FullyConnectedLayer

PlaneOrder = Literal["xy_xz_yz", "eg3d"]
_PLANE_AXES = {
    # (u, v) coordinate axes of each plane; grid_sample reads u across the width, v down the height.
    "xy_xz_yz": ((0, 1), (0, 2), (1, 2)),
    # EG3D's released code: its third plane repeats x and z (ZX) instead of Y-Z. For official checkpoints.
    "eg3d": ((0, 1), (0, 2), (2, 0)),
}


def sample_planes(planes: Tensor, points: Tensor, box_warp: float = 1.0, order: PlaneOrder = "xy_xz_yz") -> Tensor:
    """Bilinearly sample tri-plane features at points.

    Args:
        planes: (B, 3, C, H, W) feature planes covering the cube [-box_warp / 2, box_warp / 2]^3.
        points: (B, N, 3) world coordinates; points outside the cube read zeros.
        order: plane axes, see ``_PLANE_AXES``.

    Returns:
        (B, 3, N, C) features of each plane.
    """
    batch, num_planes, channels, height, width = planes.shape
    coords = points * (2.0 / box_warp)
    grids = torch.stack([coords[..., list(axes)] for axes in _PLANE_AXES[order]], dim=1)  # (B, 3, N, 2)
    sampled = F.grid_sample(
        planes.reshape(batch * num_planes, channels, height, width),
        grids.reshape(batch * num_planes, 1, -1, 2),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )  # (B * 3, C, 1, N)
    return sampled.reshape(batch, num_planes, channels, -1).transpose(2, 3)


class FeatureDecoder(nn.Module):
    """EG3D's decoder MLP: features -> raw density, colour features (and semantic logits).

    One hidden softplus layer; semantic logits share the trunk with density (FENeRF). Named ``net`` with
    layers 0 and 2 as in EG3D's ``OSGDecoder``.
    """

    def __init__(
        self,
        in_features: int,
        feature_dim: int = 32,
        num_semantic_classes: int = 0,
        hidden: int = 64,
        lr_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        self.feature_dim, self.num_semantic_classes = feature_dim, num_semantic_classes
        self.net = nn.Sequential(
            FullyConnectedLayer(in_features, hidden, lr_multiplier=lr_multiplier),
            nn.Softplus(),
            FullyConnectedLayer(hidden, 1 + feature_dim + num_semantic_classes, lr_multiplier=lr_multiplier),
        )

    def forward(self, x: Tensor) -> FieldOutput:
        """x: (B, N, in_features)."""
        batch, num_points, _ = x.shape
        out = self.net(x.reshape(batch * num_points, -1)).reshape(batch, num_points, -1)
        return split_decoder_output(out, self.feature_dim, self.num_semantic_classes)


class DecoupledDecoder(nn.Module):
    """Decoder with separate geometry and appearance inputs (FENeRF): density and semantics see geometry only.

    A geometry trunk (one softplus layer) reads the geometry features and emits raw density and the
    semantic logits; a colour branch reads the trunk's hidden features together with the appearance
    features. Changing appearance features therefore never changes density or semantics.
    """

    def __init__(
        self,
        geometry_features: int,
        appearance_features: int,
        feature_dim: int = 32,
        num_semantic_classes: int = 0,
        hidden: int = 64,
        lr_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        self.feature_dim, self.num_semantic_classes = feature_dim, num_semantic_classes
        self.trunk = nn.Sequential(
            FullyConnectedLayer(geometry_features, hidden, lr_multiplier=lr_multiplier), nn.Softplus()
        )
        self.geometry = FullyConnectedLayer(hidden, 1 + num_semantic_classes, lr_multiplier=lr_multiplier)
        self.colour = nn.Sequential(
            FullyConnectedLayer(hidden + appearance_features, hidden, lr_multiplier=lr_multiplier),
            nn.Softplus(),
            FullyConnectedLayer(hidden, feature_dim, lr_multiplier=lr_multiplier),
        )

    def forward(self, geometry: Tensor, appearance: Tensor) -> FieldOutput:
        """geometry (B, N, Cg), appearance (B, N, Ca) -> FieldOutput."""
        batch, num_points, _ = geometry.shape
        hidden = self.trunk(geometry.reshape(batch * num_points, -1))
        shape = self.geometry(hidden).reshape(batch, num_points, -1)
        colour = self.colour(torch.cat([hidden, appearance.reshape(batch * num_points, -1)], dim=-1))
        return FieldOutput(
            sigma=shape[..., :1],
            features=feature_activation(colour.reshape(batch, num_points, -1)),
            semantics=shape[..., 1:] if self.num_semantic_classes else None,
        )


class TriPlaneHead(RadianceHead):
    """Radiance head reading three feature planes (B, 3, C, H, W).

    With ``appearance_channels`` > 0 each plane holds C geometry channels followed by A appearance
    channels, (B, 3, C + A, H, W), decoded by a :class:`DecoupledDecoder`: density and semantics then
    depend on the geometry channels only.

    Args:
        plane_channels: C, (geometry) channels per plane.
        feature_dim: colour feature channels out of the decoder (first 3 are RGB).
        num_semantic_classes: K semantic logits (0 disables semantics).
        aggregation: ``"mean"`` of the three planes (EG3D) or ``"concat"`` (decoder sees 3C inputs).
        plane_order: ``"xy_xz_yz"`` or EG3D's released ``"eg3d"`` (XY, XZ, ZX) for its checkpoints.
        box_warp: side of the cube the planes cover, centred on the origin.
        decoder_hidden, decoder_lr_multiplier: decoder MLP width and learning-rate multiplier.
        appearance_channels: A, appearance channels per plane (0: one shared decoder, EG3D's).
    """

    def __init__(
        self,
        plane_channels: int = 32,
        feature_dim: int = 32,
        num_semantic_classes: int = 0,
        aggregation: Literal["mean", "concat"] = "mean",
        plane_order: PlaneOrder = "xy_xz_yz",
        box_warp: float = 1.0,
        decoder_hidden: int = 64,
        decoder_lr_multiplier: float = 1.0,
        appearance_channels: int = 0,
    ) -> None:
        super().__init__()
        if aggregation not in ("mean", "concat"):
            raise ValueError(f"aggregation must be 'mean' or 'concat', got {aggregation!r}")
        if plane_order not in _PLANE_AXES:
            raise ValueError(f"plane_order must be one of {sorted(_PLANE_AXES)}, got {plane_order!r}")
        self.plane_channels, self.feature_dim = plane_channels, feature_dim
        self.num_semantic_classes = num_semantic_classes
        self.aggregation, self.plane_order, self.box_warp = aggregation, plane_order, box_warp
        self.appearance_channels = appearance_channels
        planes_read = 3 if aggregation == "concat" else 1
        self.decoder: FeatureDecoder | DecoupledDecoder
        if appearance_channels:
            self.decoder = DecoupledDecoder(
                plane_channels * planes_read,
                appearance_channels * planes_read,
                feature_dim,
                num_semantic_classes,
                decoder_hidden,
                decoder_lr_multiplier,
            )
        else:
            self.decoder = FeatureDecoder(
                plane_channels * planes_read, feature_dim, num_semantic_classes, decoder_hidden, decoder_lr_multiplier
            )

    def aggregate(self, sampled: Tensor) -> Tensor:
        """(B, 3, N, C) per-plane features -> (B, N, C) or (B, N, 3C) decoder input."""
        if self.aggregation == "mean":
            return sampled.mean(dim=1)
        return sampled.permute(0, 2, 1, 3).flatten(2)

    def forward(self, points: Tensor, planes: Tensor) -> FieldOutput:
        """points (B, N, 3), planes (B, 3, C + A, H, W) -> FieldOutput."""
        channels = self.plane_channels + self.appearance_channels
        if planes.ndim != 5 or planes.shape[1:3] != (3, channels):
            raise ValueError(f"planes must have shape (B, 3, {channels}, H, W), got {tuple(planes.shape)}")
        sampled = sample_planes(planes, points, self.box_warp, self.plane_order)
        if not self.appearance_channels:
            return self.decoder(self.aggregate(sampled))
        geometry, appearance = sampled.split([self.plane_channels, self.appearance_channels], dim=-1)
        return self.decoder(self.aggregate(geometry), self.aggregate(appearance))
