import torch

from pix2nerf.fields import HashEncoding, HashGridHead, TriPlaneHead, sample_planes


def test_sample_planes_reads_the_right_axes():
    planes = torch.zeros(1, 3, 1, 5, 5)
    planes[0, 0, 0, 1, 4] = 1.0  # plane XY: u = x (column 4 -> x = +0.4), v = y (row 1 -> y = -0.2)
    planes[0, 1, 0, 3, 0] = 2.0  # plane XZ: u = x (column 0 -> x = -0.4), v = z (row 3 -> z = +0.2)
    planes[0, 2, 0, 2, 1] = 3.0  # plane YZ: u = y (column 1 -> y = -0.2), v = z (row 2 -> z = 0)
    points = torch.tensor([[[0.4, -0.2, 0.0], [-0.4, 0.0, 0.2], [0.0, -0.2, 0.0]]])
    sampled = sample_planes(planes, points, box_warp=1.0)[0, :, :, 0]  # (3 planes, 3 points)
    assert sampled[0, 0] == 1.0 and sampled[1, 1] == 2.0 and sampled[2, 2] == 3.0
    assert sampled[2, 0] == 3.0  # point 0 shares y = -0.2, z = 0 with point 2 on the YZ plane
    eg3d = sample_planes(planes, points, box_warp=1.0, order="eg3d")[0, :, :, 0]
    assert eg3d[2, 2] == 0.0  # EG3D's third plane is ZX: u = z, v = x


def test_points_outside_the_box_read_zeros_and_mean_aggregation():
    head = TriPlaneHead(plane_channels=4, feature_dim=3, num_semantic_classes=2)
    planes = torch.randn(2, 3, 4, 8, 8)
    sampled = sample_planes(planes, torch.full((2, 1, 3), 0.9))
    assert sampled.abs().max() == 0
    inside = torch.rand(2, 10, 3) - 0.5
    out = head(inside, planes)
    expected = head.decoder(sample_planes(planes, inside).mean(dim=1))
    torch.testing.assert_close(out.sigma, expected.sigma)
    assert out.features.shape == (2, 10, 3) and out.semantics.shape == (2, 10, 2)
    assert out.features.min() >= -0.001 and out.features.max() <= 1.001


def naive_hash_encoding(encoding: HashEncoding, points: torch.Tensor) -> torch.Tensor:
    """Instant-NGP's encoding, one level and one corner at a time (the reference)."""
    table_size = encoding.table_size
    unit = (points / encoding.box_size + 0.5).clamp(0, 1)
    levels = []
    for level, resolution in enumerate(encoding.resolutions.tolist()):
        scaled = unit * resolution
        base = torch.minimum(scaled.floor(), torch.tensor(resolution - 1.0))
        frac = scaled - base
        total = 0
        for corner in range(8):
            offset = torch.tensor([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
            c = base.long() + offset
            if (resolution + 1) ** 3 <= table_size:
                index = c[:, 0] + (resolution + 1) * (c[:, 1] + (resolution + 1) * c[:, 2])
            else:
                index = (c[:, 0] * 1 ^ c[:, 1] * 2654435761 ^ c[:, 2] * 805459861) % table_size
            weight = torch.where(offset.bool(), frac, 1 - frac).prod(-1, keepdim=True)
            total = total + weight * encoding.embeddings[level, index]
        levels.append(total)
    return torch.cat(levels, dim=-1)


def test_hash_encoding_matches_the_reference_definition():
    encoding = HashEncoding(levels=6, table_size_log2=10, features_per_level=2, base_resolution=4, max_resolution=64)
    with torch.no_grad():
        encoding.embeddings.normal_()
    assert encoding.dense.tolist()[:2] == [True, True] and not encoding.dense[-1]  # coarse dense, fine hashed
    points = torch.rand(500, 3) - 0.5
    torch.testing.assert_close(encoding(points[None])[0], naive_hash_encoding(encoding, points), atol=1e-5, rtol=0)


def test_hash_encoding_interpolates_linearly_between_vertices():
    encoding = HashEncoding(levels=1, table_size_log2=12, base_resolution=4, max_resolution=4)
    with torch.no_grad():
        encoding.embeddings.normal_()
    a, b = torch.tensor([-0.25, 0.0, 0.0]), torch.tensor([0.0, 0.0, 0.0])  # neighbouring vertices along x
    t = torch.linspace(0, 1, 5)[:, None]
    values = encoding(a + t * (b - a))
    torch.testing.assert_close(values, values[0] + t * (values[-1] - values[0]), atol=1e-6, rtol=0)


def test_hash_grid_head_depends_on_the_latent():
    head = HashGridHead(w_dim=8, feature_dim=4, levels=4, table_size_log2=10, max_resolution=64, num_layers=2)
    points = torch.rand(2, 32, 3) - 0.5
    ws = torch.randn(2, 2, 8)
    out = head(points, ws)
    assert out.sigma.shape == (2, 32, 1) and out.features.shape == (2, 32, 4) and out.semantics is None
    swapped = head(points, ws.flip(0))
    assert not torch.allclose(out.sigma, swapped.sigma)
    same = head(points, ws[:1].expand(2, -1, -1))
    torch.testing.assert_close(same.sigma[0], out.sigma[0])
