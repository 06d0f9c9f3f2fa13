"""The hybrid encoder's stage 2: tri-plane offsets that start at zero, reach every plane position, and must fit."""

import pytest
import torch

from pix2nerf.inference import FaceModel
from pix2nerf.networks import PlaneResidual
from pix2nerf.networks.residual import check_residual_fits
from tests.factories import tiny_face_model, tiny_generator


def test_an_untrained_residual_changes_nothing():
    model = tiny_face_model()
    residual = PlaneResidual(16, 8, model.generator.plane_channels, channels=8, channel_max=16)
    hybrid = FaceModel(model.generator, model.encoder, residual=residual)
    image = torch.rand(2, 3, 16, 16) * 2 - 1
    encoded = hybrid.encode(image)
    assert encoded.plane_offsets.shape == (2, 3, model.generator.plane_channels, 8, 8)
    assert torch.equal(encoded.plane_offsets, torch.zeros_like(encoded.plane_offsets))
    stage1 = model.encode(image)
    with_offsets = hybrid.render(encoded.w, encoded.yaw_pitch, plane_offsets=encoded.plane_offsets).image
    assert torch.equal(with_offsets, model.render(stage1.w, stage1.yaw_pitch).image)


def test_offsets_are_added_to_the_generators_planes_and_change_the_render():
    model = tiny_face_model(residual=True)
    encoded = model.encode(torch.rand(1, 3, 16, 16) * 2 - 1)
    offsets = encoded.plane_offsets
    assert offsets.abs().max() > 0
    generator = model.generator
    planes = generator.field_params(encoded.w, "const")
    torch.testing.assert_close(generator.field_params(encoded.w, "const", offsets), planes + offsets)
    plain = model.render(encoded.w, encoded.yaw_pitch).image
    offset = model.render(encoded.w, encoded.yaw_pitch, plane_offsets=offsets).image
    assert (plain - offset).abs().mean() > 1e-3


def test_every_plane_position_reads_the_whole_image():
    """Planes are not aligned with the view, so a change in one image corner must reach the far plane corner."""
    torch.manual_seed(0)
    residual = PlaneResidual(16, 16, 4, channels=8, channel_max=16)
    with torch.no_grad():
        residual.out.weight.normal_()
    image = torch.zeros(1, 3, 16, 16, requires_grad=True)
    offsets = residual(image, torch.zeros(1, 3, 16, 16))
    offsets[..., -1, -1].sum().backward()  # bottom-right of every plane
    assert image.grad[..., :2, :2].abs().sum() > 0  # depends on the top-left pixels


def test_mismatched_or_hash_grid_generators_are_refused_with_the_fix():
    generator = tiny_generator()
    with pytest.raises(ValueError, match="plane_resolution=8 and plane_channels=4"):
        check_residual_fits(PlaneResidual(16, 16, 4), generator)
    with pytest.raises(ValueError, match="hash-grid head"):
        check_residual_fits(PlaneResidual(16, 8, 4), tiny_generator(field="hashgrid", hash_table_size_log2=8))
    ws = torch.zeros(1, generator.num_ws, 8)
    with pytest.raises(ValueError, match="do not fit this generator's planes"):
        generator.field_params(ws, "const", torch.zeros(1, 3, 5, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        PlaneResidual(16, 8, 4)(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="power of two"):
        PlaneResidual(12, 8, 4)
