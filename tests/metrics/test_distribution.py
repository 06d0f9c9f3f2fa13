"""FID/KID: the closed forms on analytic Gaussians and feature sets, torchmetrics' results against them, and
the offline error when Inception's weights are missing."""

import importlib.util

import pytest
import torch
from torch import nn

from pix2nerf.metrics import (
    InceptionDistances,
    InceptionUnavailable,
    InceptionWeightsMissing,
    frechet_distance,
    gaussian_statistics,
    inception_distances,
    kernel_distance,
)
from pix2nerf.metrics.distribution import INCEPTION_WEIGHTS_FILE, INCEPTION_WEIGHTS_URL, load_inception


def random_covariance(dim: int, seed: int) -> torch.Tensor:
    a = torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T + 0.1 * torch.eye(dim, dtype=torch.float64)


def test_frechet_distance_of_identical_gaussians_is_zero():
    mu, sigma = torch.randn(6, dtype=torch.float64), random_covariance(6, 0)
    assert frechet_distance(mu, sigma, mu, sigma).item() == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_of_one_dimensional_gaussians():
    # W2^2 between N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2.
    m1, s1, m2, s2 = 0.5, 2.0, -1.0, 0.5
    value = frechet_distance(torch.tensor([m1]), torch.tensor([[s1**2]]), torch.tensor([m2]), torch.tensor([[s2**2]]))
    assert value.item() == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2)


def test_frechet_distance_with_non_diagonal_covariance():
    # sigma1 = I, sigma2 = Q diag(l) Q^T: tr(I + sigma2 - 2 sigma2^(1/2)) = sum (1 - sqrt(l))^2, plus |dmu|^2.
    eigenvalues = torch.tensor([0.25, 1.0, 4.0, 9.0], dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    sigma2 = q @ torch.diag(eigenvalues) @ q.T
    mu1, mu2 = torch.zeros(4), torch.tensor([3.0, 0.0, 4.0, 0.0])
    expected = 25.0 + (1 - eigenvalues.sqrt()).square().sum().item()
    assert frechet_distance(mu1, torch.eye(4), mu2, sigma2).item() == pytest.approx(expected, rel=1e-9)


def test_kernel_distance_of_constant_feature_sets_is_the_kernel_distance_of_the_points():
    a, b = torch.full((5, 3), 1.0), torch.tensor([[1.0, 2.0, -1.0]]).expand(5, 3)
    # Linear kernel: MMD^2 = |a - b|^2.
    assert kernel_distance(a, b, degree=1, gamma=1.0, coef=0.0).item() == pytest.approx(0.0 + 1.0 + 4.0)
    # Cubic kernel (KID's default, gamma = 1/3): k(a, a) + k(b, b) - 2 k(a, b).
    k = lambda x, y: (x @ y / 3 + 1) ** 3  # noqa: E731
    expected = k(a[0], a[0]) + k(b[0], b[0]) - 2 * k(a[0], b[0])
    assert kernel_distance(a, b).item() == pytest.approx(expected.item())


def test_kernel_distance_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 8, generator=g), torch.randn(400, 8, generator=g)
    same = kernel_distance(a, b).item()
    shifted = kernel_distance(a, b + 0.5).item()
    further = kernel_distance(a, b + 1.0).item()
    assert abs(same) < 0.01 < shifted < further


class Features(nn.Module):
    """A feature 'extractor' that passes feature vectors (N, D) through: FID/KID of known features."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def test_torchmetrics_fid_and_kid_match_the_closed_forms():
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(64, 5, generator=g), torch.randn(64, 5, generator=g) * 1.5 + 0.3
    metric = InceptionDistances(Features(5), kid_subsets=1, kid_subset_size=1000)  # subset capped to all 64
    for chunk in range(0, 64, 16):  # streamed in batches
        metric.update(real[chunk : chunk + 16], real=True)
        metric.update(fake[chunk : chunk + 16], real=False)
    scores = metric.compute()
    expected_fid = frechet_distance(*gaussian_statistics(fake), *gaussian_statistics(real)).item()
    assert scores.fid == pytest.approx(expected_fid, rel=1e-4)
    assert scores.kid_mean == pytest.approx(kernel_distance(real, fake).item(), rel=1e-5)
    assert scores.kid_std == 0.0


def test_missing_inception_weights_name_the_file_the_folder_and_the_url(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # robust to an earlier set_dir
    folder = tmp_path / "hub" / "checkpoints"
    with pytest.raises(InceptionWeightsMissing) as error:
        load_inception()
    message = str(error.value)
    assert INCEPTION_WEIGHTS_FILE in message and str(folder) in message and INCEPTION_WEIGHTS_URL in message
    assert "skip_if_missing" in message
    with pytest.raises(InceptionWeightsMissing, match="nowhere.pth"):
        inception_distances(tmp_path / "nowhere.pth")
    assert inception_distances(skip_missing=True) is None  # skipped only when asked


@pytest.mark.skipif(importlib.util.find_spec("torch_fidelity") is not None, reason="torch-fidelity is installed")
def test_weights_without_torch_fidelity_say_what_to_install(tmp_path):
    weights = tmp_path / INCEPTION_WEIGHTS_FILE
    weights.write_bytes(b"")
    with pytest.raises(InceptionUnavailable, match="pip install torch-fidelity"):
        load_inception(weights)
