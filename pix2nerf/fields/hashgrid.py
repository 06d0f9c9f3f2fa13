"""Multiresolution hash-grid radiance head (Instant-NGP encoding), decoded by a latent-modulated MLP.

A CNN cannot emit hash tables, so the grid is shared by all latents and each latent changes the field
through FiLM modulation of the decoder. Trade-off against tri-planes: the grid has far more capacity for
fine detail per parameter and no per-latent backbone to run (cheaper per image), but latents only steer
the decoder, so identities vary less freely than with per-latent tri-planes. It suits per-image residual
fields (refinement) and single-scene fitting better than a wide generative model.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pix2nerf.fields.base import FieldOutput, RadianceHead, split_decoder_output
from pix2nerf.layers import FullyConnectedLayer

_PRIMES = (1, 2654435761, 805459861)
"""Instant-NGP's spatial hash: x * 1 XOR y * 2654435761 XOR z * 805459861, modulo the table size."""
EMBEDDING_INIT = 1e-4


class HashEncoding(nn.Module):
    """Trilinear interpolation in L grids of growing resolution, each stored in a table of 2^T entries.

    Levels whose dense grid fits the table are indexed densely; finer levels are hashed.

    Args:
        levels: L. table_size_log2: T. features_per_level: F.
        base_resolution, max_resolution: grid resolutions of the coarsest and finest level.
        box_size: the grid covers the cube [-box_size / 2, box_size / 2]^3; points outside read zeros
            (as tri-planes do), so the grid's border does not smear along rays that leave the cube.
    """

    resolutions: Tensor
    dense: Tensor

    def __init__(
        self,
        levels: int = 16,
        table_size_log2: int = 19,
        features_per_level: int = 2,
        base_resolution: int = 16,
        max_resolution: int = 2048,
        box_size: float = 1.0,
    ) -> None:
        super().__init__()
        self.levels, self.features_per_level, self.box_size = levels, features_per_level, box_size
        self.table_size = 2**table_size_log2
        growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / max(levels - 1, 1))
        resolutions = torch.tensor([math.floor(base_resolution * growth**level) for level in range(levels)])
        self.register_buffer("resolutions", resolutions, persistent=False)
        self.register_buffer("dense", (resolutions + 1) ** 3 <= self.table_size, persistent=False)
        table = (torch.rand(levels, self.table_size, features_per_level) * 2 - 1) * EMBEDDING_INIT
        self.embeddings = nn.Parameter(table)

    @property
    def output_dim(self) -> int:
        return self.levels * self.features_per_level

    def forward(self, points: Tensor) -> Tensor:
        """points (..., 3) -> features (..., L * F)."""
        shape = points.shape[:-1]
        unit = points.reshape(-1, 3) / self.box_size + 0.5
        inside = ((unit >= 0) & (unit <= 1)).all(dim=-1)
        unit = unit.clamp(0.0, 1.0)  # (M, 3) in [0, 1]
        resolutions = self.resolutions[:, None, None]
        scaled = unit[None] * resolutions  # (L, M, 3)
        base = torch.minimum(scaled.floor(), resolutions - 1)
        frac = scaled - base
        lower = base.long()
        # Per axis, the two neighbouring grid coordinates (..., 2); the 8 corners are their outer
        # combinations (corner i has x bit i >> 2, y bit i >> 1, z bit i & 1), built without an (L, M, 8, 3) tensor.
        coords = torch.stack([lower, lower + 1], dim=-1)  # (L, M, 3, 2)
        weights = torch.stack([1 - frac, frac], dim=-1)
        x, y, z = coords.unbind(2)
        side = (self.resolutions + 1)[:, None, None]
        dense = _outer(x, lambda a, b: a + b, _outer(y * side, lambda a, b: a + b, z * side * side))
        hashed = _outer(x * _PRIMES[0], torch.bitwise_xor, _outer(y * _PRIMES[1], torch.bitwise_xor, z * _PRIMES[2]))
        index = torch.where(self.dense[:, None, None], dense, hashed & (self.table_size - 1))  # (L, M, 8)
        wx, wy, wz = weights.unbind(2)
        corner_weights = _outer(wx, torch.mul, _outer(wy, torch.mul, wz))
        level_offset = torch.arange(self.levels, device=points.device)[:, None, None] * self.table_size
        values = self.embeddings.reshape(-1, self.features_per_level)[index + level_offset]
        encoded = (corner_weights[..., None] * values).sum(dim=2) * inside[:, None]  # (L, M, F)
        return encoded.permute(1, 0, 2).reshape(*shape, self.output_dim)


def _outer(a: Tensor, op, b: Tensor) -> Tensor:
    """Combine every entry of ``a`` (..., 2) with every entry of ``b`` (..., K): (..., 2 K), a-major."""
    return op(a[..., :, None], b[..., None, :]).flatten(-2)


class HashGridHead(RadianceHead):
    """Shared hash-grid features, decoded by an MLP whose hidden layers are FiLM-modulated by w.

    ``params`` for :meth:`forward` are the ws (B, num_ws, w_dim); hidden layer i reads ws[:, i].

    Args:
        w_dim: latent size. feature_dim, num_semantic_classes: as :class:`TriPlaneHead`.
        levels, table_size_log2, features_per_level, base_resolution, max_resolution: the encoding.
        box_size: the cube the grid covers. hidden: decoder width. num_layers: modulated hidden layers.
    """

    def __init__(
        self,
        w_dim: int = 512,
        feature_dim: int = 32,
        num_semantic_classes: int = 0,
        levels: int = 16,
        table_size_log2: int = 19,
        features_per_level: int = 2,
        base_resolution: int = 16,
        max_resolution: int = 2048,
        box_size: float = 1.0,
        hidden: int = 64,
        num_layers: int = 3,
    ) -> None:
        super().__init__()
        self.feature_dim, self.num_semantic_classes, self.num_ws = feature_dim, num_semantic_classes, num_layers
        self.encoding = HashEncoding(
            levels, table_size_log2, features_per_level, base_resolution, max_resolution, box_size
        )
        widths = [self.encoding.output_dim + 3] + [hidden] * num_layers
        self.layers = nn.ModuleList(FullyConnectedLayer(widths[i], widths[i + 1]) for i in range(num_layers))
        # FiLM: each w gives a per-channel scale (initialised at 1) and shift for its hidden layer.
        self.films = nn.ModuleList(FullyConnectedLayer(w_dim, 2 * hidden) for _ in range(num_layers))
        self.output = FullyConnectedLayer(hidden, 1 + feature_dim + num_semantic_classes)

    def forward(self, points: Tensor, ws: Tensor) -> FieldOutput:
        """points (B, N, 3), ws (B, num_ws, w_dim) -> FieldOutput."""
        if ws.ndim != 3 or ws.shape[1] < self.num_ws:
            raise ValueError(f"HashGridHead needs ws of shape (B, >= {self.num_ws}, w_dim), got {tuple(ws.shape)}")
        x = torch.cat([self.encoding(points), points], dim=-1)
        for index, (layer, film) in enumerate(zip(self.layers, self.films, strict=True)):
            scale, shift = film(ws[:, index]).unsqueeze(1).chunk(2, dim=-1)
            x = nn.functional.softplus(layer(x) * (1.0 + scale) + shift)
        return split_decoder_output(self.output(x), self.feature_dim, self.num_semantic_classes)
