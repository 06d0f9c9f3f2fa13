"""LPIPS as an evaluation metric: the training loss's network, averaged over everything it has seen."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor
from torchmetrics import Metric

from pix2nerf.losses.perceptual import LPIPS


class LPIPSMetric(Metric):
    """Mean LPIPS distance between predicted and target images (B, 3, H, W) in [-1, 1]; lower is closer.

    Wraps :class:`pix2nerf.losses.perceptual.LPIPS`, so missing backbone weights raise its
    ``PerceptualWeightsMissing``; ``offline_random_backbone`` (not perceptual) is for tests and smoke runs only.
    """

    higher_is_better = False
    total: Tensor
    count: Tensor

    def __init__(
        self, net: Literal["alex", "vgg", "squeeze"] = "alex", offline_random_backbone: bool = False, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.lpips = LPIPS(net, offline_random_backbone=offline_random_backbone)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    @torch.no_grad()
    def update(self, prediction: Tensor, target: Tensor) -> None:
        distances = self.lpips(prediction, target)
        self.total += distances.double().sum()
        self.count += distances.numel()

    def compute(self) -> Tensor:
        return (self.total / self.count).float()
