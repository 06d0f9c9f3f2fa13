import torch

from pix2nerf.fields import SpheresField


def test_spheres_field_density_and_nearest_colour():
    field = SpheresField(
        torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), torch.tensor([0.5, 0.2]), torch.eye(2), density=10.0
    )
    points = torch.tensor([[[0.1, 0.0, 0.0], [0.9, 0.0, 0.0], [0.0, 0.0, 0.6], [0.7, 0.0, 0.0]]])
    sigma, colour = field(points)
    assert sigma[0, :, 0].tolist() == [10.0, 10.0, 0.0, 0.0]
    assert colour[0].argmax(-1).tolist() == [0, 1, 0, 1]  # (0.7, 0, 0) is 0.1 from sphere 1, 0.2 from sphere 0
    torch.testing.assert_close(field.signed_distance(points)[0, 2], torch.tensor([0.1, (1.0 + 0.36) ** 0.5 - 0.2]))
