"""FID and KID between generated and real images (torchmetrics, Inception-v3 features of torch-fidelity).

Both need the Inception-v3 weights that torch-fidelity converted from TensorFlow's 2015-12-05 release
(``weights-inception-2015-12-05-6726825d.pth``, 91 MB). torch-fidelity fetches them with
``torch.hub.load_state_dict_from_url``, i.e. into ``$TORCH_HOME/hub/checkpoints`` (``~/.cache/torch`` by
default). This module never downloads them: when the file is absent it raises :class:`InceptionWeightsMissing`
saying where to put it, unless the caller asked to skip the metrics.

The feature statistics are plain functions (:func:`frechet_distance`, :func:`kernel_distance`), so their
maths is testable without the network.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance, poly_mmd

log = logging.getLogger(__name__)

INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
INCEPTION_WEIGHTS_FILE = INCEPTION_WEIGHTS_URL.rsplit("/", 1)[1]
INCEPTION_FEATURES = 2048
"""Pool features of Inception-v3, the standard FID/KID feature space."""


class InceptionUnavailable(RuntimeError):
    """FID/KID cannot run: torch-fidelity (the Inception-v3 implementation) is not installed."""


class InceptionWeightsMissing(InceptionUnavailable):
    """FID/KID cannot run: the Inception-v3 weights file is not on disk (it is never downloaded implicitly)."""


def inception_weights_path(path: str | Path | None = None) -> Path:
    """The weights file: ``path`` if given, else where torch-fidelity looks (``$TORCH_HOME/hub/checkpoints``)."""
    if path is not None:
        return Path(path).expanduser()
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


def load_inception(weights_path: str | Path | None = None) -> nn.Module:
    """torchmetrics' frozen Inception-v3 returning (B, 2048) pool features of uint8 images (B, 3, H, W).

    Raises:
        InceptionWeightsMissing: the weights file is absent (the message says which file, where and how).
        InceptionUnavailable: torch-fidelity is not installed.
    """
    path = inception_weights_path(weights_path)
    if not path.is_file():
        raise InceptionWeightsMissing(
            f"FID/KID need the Inception-v3 weights {INCEPTION_WEIGHTS_FILE}, which are not at {path}. "
            f"Download them on a machine with internet and copy the file there:\n"
            f"    mkdir -p {path.parent} && curl -L -o {path} {INCEPTION_WEIGHTS_URL}\n"
            "(or set TORCH_HOME to the folder whose hub/checkpoints holds the file, or pass its path explicitly). "
            "To evaluate without FID/KID, skip them explicitly (fid.skip_if_missing=true in tools/evaluate.py)."
        )
    if importlib.util.find_spec("torch_fidelity") is None:
        raise InceptionUnavailable(
            "FID/KID need torch-fidelity's Inception-v3: pip install torch-fidelity (or torchmetrics[image])"
        )
    from torchmetrics.image.fid import NoTrainInceptionV3

    return NoTrainInceptionV3(
        "inception-v3-compat", [str(INCEPTION_FEATURES)], feature_extractor_weights_path=str(path)
    )


def to_uint8(images: Tensor) -> Tensor:
    """Images (B, 3, H, W) in [-1, 1] -> uint8 in [0, 255], the input Inception's preprocessing expects."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class InceptionFeatures(nn.Module):
    """(B, 2048) Inception-v3 pool features of images (B, 3, H, W) in [-1, 1] (resized to 299^2 inside)."""

    num_features = INCEPTION_FEATURES

    def __init__(self, weights_path: str | Path | None = None) -> None:
        super().__init__()
        self.net = load_inception(weights_path)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(to_uint8(images))


def gaussian_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    features = features.double()
    return features.mean(0), torch.cov(features.T).reshape(features.shape[1], features.shape[1])


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> Tensor:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), means (D,), covariances (D, D).

    ``|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``; the trace of the matrix square root is
    the sum of the square roots of the eigenvalues of ``sigma1 sigma2`` (real and non-negative for PSD inputs).
    The reference for torchmetrics' FID, and usable with precomputed data-set statistics.
    """
    mu1, sigma1, mu2, sigma2 = (x.double() for x in (mu1, sigma1, mu2, sigma2))
    root_trace = torch.linalg.eigvals(sigma1 @ sigma2).sqrt().real.sum()
    return (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * root_trace


def kernel_distance(
    features_a: Tensor, features_b: Tensor, degree: int = 3, gamma: float | None = None, coef: float = 1.0
) -> Tensor:
    """Unbiased MMD^2 between feature sets (N, D) and (N, D) with the kernel ``(gamma a.b + coef)^degree``.

    KID is its mean over random subsets; ``gamma`` defaults to 1 / D (Binkowski et al. 2018).
    """
    return poly_mmd(features_a.double(), features_b.double(), degree, gamma, coef)


@dataclass
class DistributionScores:
    """FID and KID (mean and standard deviation over subsets) of generated vs real images."""

    fid: float
    kid_mean: float
    kid_std: float


class InceptionDistances(nn.Module):
    """torchmetrics' FID and KID over one shared feature extractor (default: Inception-v3).

    Args:
        features: the extractor, images (B, 3, H, W) in [-1, 1] -> (B, D), with a ``num_features`` attribute
            (default :class:`InceptionFeatures`, which needs the weights file).
        weights_path: the Inception weights file (default: torch-fidelity's cache location).
        kid_subsets, kid_subset_size: KID's random subsets (the size is capped by the number of images).
    """

    def __init__(
        self,
        features: nn.Module | None = None,
        weights_path: str | Path | None = None,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
    ) -> None:
        super().__init__()
        features = features if features is not None else InceptionFeatures(weights_path)
        self.fid = FrechetInceptionDistance(feature=features)
        self.kid = KernelInceptionDistance(feature=features, subsets=kid_subsets, subset_size=kid_subset_size)
        self.kid_subset_size = kid_subset_size

    @torch.no_grad()
    def update(self, images: Tensor, real: bool) -> None:
        """Add images (B, 3, H, W) in [-1, 1] to the real or the generated set."""
        self.fid.update(images, real=real)
        self.kid.update(images, real=real)

    def compute(self) -> DistributionScores:
        """Scores of everything added since construction (KID seeds its subsets from torch's global RNG)."""
        count = min(int(self.fid.real_features_num_samples), int(self.fid.fake_features_num_samples))
        self.kid.subset_size = min(self.kid_subset_size, count)
        kid_mean, kid_std = self.kid.compute()
        return DistributionScores(float(self.fid.compute()), float(kid_mean), float(kid_std))


def inception_distances(
    weights_path: str | Path | None = None, skip_missing: bool = False, **kwargs: int
) -> InceptionDistances | None:
    """:class:`InceptionDistances` on Inception-v3, or None (with a warning) when Inception is unavailable
    and ``skip_missing`` is set; otherwise :class:`InceptionUnavailable` propagates."""
    try:
        return InceptionDistances(None, weights_path, **kwargs)  # kwargs: the KID options
    except InceptionUnavailable as error:
        if not skip_missing:
            raise
        log.warning("skipping FID/KID (skip requested): %s", error)
        return None
