"""Meshes from radiance fields: marching cubes on a density grid, vertex colours from the field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from skimage.measure import marching_cubes
from torch import Tensor

from pix2nerf.fields.base import density_activation
from pix2nerf.fields.hashgrid import HashGridHead
from pix2nerf.fields.triplane import TriPlaneHead
from pix2nerf.networks.generator import Generator

EG3D_DENSITY_LEVEL = 10.0
"""EG3D extracts its shapes at density 10 (after the softplus activation)."""


@dataclass
class Mesh:
    """A triangle mesh in world coordinates: vertices (V, 3) float32, faces (F, 3) int64 (counter-clockwise
    seen from outside), colours (V, 3) uint8 RGB; ``level`` is the density of the extracted surface."""

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    level: float


def field_box(generator: Generator) -> float:
    """Side of the cube, centred on the origin, that the generator's field covers."""
    head = generator.head
    if isinstance(head, HashGridHead):
        return float(head.encoding.box_size)
    return float(cast(TriPlaneHead, head).box_warp)  # tri-plane heads (and look-alikes in tests) carry box_warp


@torch.no_grad()
def density_grid(
    generator: Generator, params: Tensor, grid_resolution: int = 128, chunk: int = 2**18
) -> tuple[Tensor, float]:
    """Activated density on a grid_resolution^3 grid covering the field's box: ((R, R, R) indexed [x, y, z], box side).

    ``params``: the field of one latent, ``generator.field_params(w)`` (tri-planes (1, 3, C, H, W) or ws).
    """
    box = field_box(generator)
    axis = torch.linspace(-box / 2, box / 2, grid_resolution, device=params.device)
    points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(1, -1, 3)
    sigma = torch.cat([generator.query(part, params).sigma for part in points.split(chunk, dim=1)], dim=1)
    return density_activation(sigma).reshape(grid_resolution, grid_resolution, grid_resolution), box


@torch.no_grad()
def field_colors(generator: Generator, params: Tensor, points: Tensor, chunk: int = 2**18) -> Tensor:
    """RGB in [0, 1] (N, 3) of the field's first three feature channels at points (N, 3); ``params`` as in
    :func:`density_grid`."""
    parts = [generator.query(part[None], params).features[0, :, :3] for part in points.split(chunk)]
    return torch.cat(parts).clamp(0.0, 1.0)


def extract_mesh(
    generator: Generator,
    w: Tensor,
    grid_resolution: int = 128,
    level: float = EG3D_DENSITY_LEVEL,
    plane_offsets: Tensor | None = None,
    fallback_to_range: bool = False,
) -> Mesh:
    """Marching cubes at density ``level`` on the field of latent w (1, num_ws, w_dim) with tri-plane offsets
    (1, 3, C, P, P) or None, sampled on a ``grid_resolution``^3 grid over the field's box.

    A field whose density never crosses ``level`` (fields of other models differ in scale: an imported EG3D model
    may stay below EG3D's 10) raises a ValueError naming its range, or with ``fallback_to_range`` is cut at the
    middle of its range instead (the mesh's ``level`` says which).
    """
    params = generator.field_params(w, noise_mode="const", plane_offsets=plane_offsets)
    density, box = density_grid(generator, params, grid_resolution)
    grid = density.cpu().numpy()
    low, high = float(grid.min()), float(grid.max())
    if not low < level < high:
        if not fallback_to_range or not low < high:
            raise ValueError(
                f"the density field never crosses level {level} (it spans {low:.3g}..{high:.3g}); "
                "choose a level inside that range"
            )
        level = (low + high) / 2
    spacing = box / (grid_resolution - 1)
    vertices, faces, _, _ = marching_cubes(grid, level=level, spacing=(spacing,) * 3, gradient_direction="ascent")
    vertices = (vertices - box / 2).astype(np.float32)
    colors = field_colors(generator, params, torch.from_numpy(vertices).to(w.device))
    return Mesh(vertices, faces.astype(np.int64), (colors.cpu().numpy() * 255).round().astype(np.uint8), level)


def write_ply(mesh: Mesh, path: str | Path) -> None:
    """Binary little-endian PLY with per-vertex RGB colours."""
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(mesh.vertices)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        f"element face {len(mesh.faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    vertex = np.empty(len(mesh.vertices), dtype=[("xyz", "<f4", 3), ("rgb", "u1", 3)])
    vertex["xyz"], vertex["rgb"] = mesh.vertices, mesh.colors
    face = np.empty(len(mesh.faces), dtype=[("count", "u1"), ("index", "<i4", 3)])
    face["count"], face["index"] = 3, mesh.faces
    with open(path, "wb") as file:
        file.write(header.encode("ascii"))
        file.write(vertex.tobytes())
        file.write(face.tobytes())


def write_obj(mesh: Mesh, path: str | Path) -> None:
    """Wavefront OBJ with vertex colours as the common ``v x y z r g b`` extension (r, g, b in [0, 1])."""
    rows = np.concatenate([mesh.vertices, mesh.colors / 255.0], axis=1)
    with open(path, "w") as file:
        np.savetxt(file, rows, fmt="v %.6f %.6f %.6f %.4f %.4f %.4f")
        np.savetxt(file, mesh.faces + 1, fmt="f %d %d %d")
