"""Analytic radiance fields with known geometry: ground truth for tests, demos and benchmarks."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SpheresField(nn.Module):
    """A union of solid, uniformly dense, uniformly coloured spheres.

    Args:
        centres: (K, 3) sphere centres.
        radii: (K,) sphere radii.
        colours: (K, F) per-sphere values (e.g. RGB in [0, 1]).
        density: density inside every sphere (large = opaque surface).
    """

    centres: Tensor
    radii: Tensor
    colours: Tensor

    def __init__(self, centres: Tensor, radii: Tensor, colours: Tensor, density: float = 1000.0) -> None:
        super().__init__()
        if centres.ndim != 2 or centres.shape[1] != 3 or radii.shape != centres.shape[:1]:
            raise ValueError("SpheresField expects centres (K, 3) and radii (K,)")
        if colours.ndim != 2 or colours.shape[0] != centres.shape[0]:
            raise ValueError("SpheresField expects one colour row per sphere: colours (K, F)")
        self.register_buffer("centres", centres.float())
        self.register_buffer("radii", radii.float())
        self.register_buffer("colours", colours.float())
        self.density = density

    def signed_distance(self, points: Tensor) -> Tensor:
        """Signed distance (B, N, K) of points (B, N, 3) to each sphere (negative inside)."""
        return torch.cdist(points, self.centres[None].expand(points.shape[0], -1, -1)) - self.radii

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Density (B, N, 1) and the colour of the nearest sphere surface (B, N, F) at points (B, N, 3)."""
        distance, nearest = self.signed_distance(points).min(dim=-1, keepdim=True)
        sigma = (distance < 0).to(points.dtype) * self.density
        return sigma, self.colours[nearest[..., 0]]

    @classmethod
    def snowman_head(cls, density: float = 1000.0) -> SpheresField:
        """A face-like test scene around the face pivot: head, two eyes, a nose and two ears."""
        centres = torch.tensor(
            [
                [0.0, 0.0, 0.2],
                [-0.09, 0.06, 0.42],
                [0.09, 0.06, 0.42],
                [0.0, -0.02, 0.47],
                [-0.26, 0.0, 0.18],
                [0.26, 0.0, 0.18],
            ]
        )
        radii = torch.tensor([0.25, 0.04, 0.04, 0.05, 0.06, 0.06])
        colours = torch.tensor(
            [
                [0.85, 0.65, 0.52],
                [0.1, 0.25, 0.6],
                [0.1, 0.25, 0.6],
                [0.8, 0.4, 0.35],
                [0.8, 0.58, 0.48],
                [0.8, 0.58, 0.48],
            ]
        )
        return cls(centres, radii, colours, density)
