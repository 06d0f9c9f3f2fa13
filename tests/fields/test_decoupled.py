"""Tri-planes with appearance channels: density and semantics read the geometry channels only."""

import pytest
import torch

from pix2nerf.fields import TriPlaneHead, sample_planes


@pytest.mark.parametrize("aggregation", ["mean", "concat"])
def test_appearance_channels_change_colour_only(aggregation):
    head = TriPlaneHead(
        plane_channels=4, feature_dim=3, num_semantic_classes=5, aggregation=aggregation, appearance_channels=2
    )
    planes = torch.randn(2, 3, 6, 8, 8)
    other = planes.clone()
    other[:, :, 4:] = torch.randn(2, 3, 2, 8, 8)  # new appearance channels, same geometry channels
    points = torch.rand(2, 50, 3) - 0.5
    first, second = head(points, planes), head(points, other)
    assert torch.equal(first.sigma, second.sigma) and torch.equal(first.semantics, second.semantics)
    assert (first.features - second.features).abs().max() > 1e-3
    # Density is the trunk's function of the aggregated geometry features alone.
    geometry = head.aggregate(sample_planes(planes[:, :, :4], points))
    expected_sigma = head.decoder.geometry(head.decoder.trunk(geometry))[..., :1]
    torch.testing.assert_close(first.sigma, expected_sigma)
    with pytest.raises(ValueError, match=r"\(B, 3, 6, H, W\)"):
        head(points, planes[:, :, :4])
