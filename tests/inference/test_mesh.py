"""Marching cubes on an analytic field: a sphere of known radius, outward-facing triangles, field colours."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pix2nerf.fields.base import FieldOutput
from pix2nerf.inference.mesh import extract_mesh, write_obj, write_ply

RADIUS = 0.3
INSIDE_DENSITY = 100.0


class SphereGenerator:
    """Duck-types the generator interface the mesher uses: a red ball of radius RADIUS in a unit box."""

    head = SimpleNamespace(box_warp=1.0)

    def field_params(self, w, noise_mode=None, plane_offsets=None):
        return w

    def query(self, points, params):
        inside = torch.sigmoid((RADIUS - points.norm(dim=-1, keepdim=True)) * 200)
        raw_sigma = 1 + INSIDE_DENSITY * inside  # softplus(raw - 1): ~INSIDE_DENSITY inside, log(2) outside
        colors = torch.tensor([1.0, 0.0, 0.0]).expand(*points.shape[:-1], 3)
        return FieldOutput(sigma=raw_sigma, features=colors, semantics=None)


def test_sphere_mesh_has_the_right_radius_orientation_and_colour(tmp_path):
    mesh = extract_mesh(SphereGenerator(), torch.zeros(1, 1, 1), grid_resolution=48, level=INSIDE_DENSITY / 2)
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert radii.mean() == pytest.approx(RADIUS, abs=0.01) and radii.std() < 0.01
    triangles = mesh.vertices[mesh.faces]
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    outward = (normals * triangles.mean(axis=1)).sum(axis=1) > 0
    assert outward.all()
    assert (mesh.colors == [255, 0, 0]).all()
    write_ply(mesh, tmp_path / "m.ply")
    write_obj(mesh, tmp_path / "m.obj")
    data = (tmp_path / "m.ply").read_bytes()
    header_end = data.index(b"end_header\n") + len(b"end_header\n")
    vertex_bytes, face_bytes = len(mesh.vertices) * 15, len(mesh.faces) * 13
    assert len(data) == header_end + vertex_bytes + face_bytes
    lines = (tmp_path / "m.obj").read_text().splitlines()
    first_vertex = [float(v) for v in lines[0].split()[1:]]
    assert first_vertex[:3] == pytest.approx(mesh.vertices[0].tolist(), abs=1e-5) and first_vertex[3:] == [1, 0, 0]


def test_level_outside_the_field_is_a_clear_error():
    with pytest.raises(ValueError, match="never crosses level"):
        extract_mesh(SphereGenerator(), torch.zeros(1, 1, 1), grid_resolution=16, level=1e6)


def test_hash_grid_fields_are_meshed_over_their_own_box():
    """Hash-grid heads have no tri-plane box_warp: the grid covers their encoding's box."""
    from pix2nerf.inference.mesh import density_grid
    from tests.factories import tiny_generator

    generator = tiny_generator(field="hashgrid", hash_levels=2, hash_table_size_log2=8, hash_max_resolution=32)
    ws = generator.mapping(torch.randn(1, generator.z_dim), torch.zeros(1, 25))
    density, box = density_grid(generator, generator.field_params(ws), grid_resolution=8)
    assert box == generator.head.encoding.box_size and density.shape == (8, 8, 8)
    assert torch.isfinite(density).all()
