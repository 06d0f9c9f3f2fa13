"""The LPIPS metric wrapper: zero for identical images, positive otherwise, averaged over batches."""

import pytest
import torch

from pix2nerf.metrics import LPIPSMetric


def test_lpips_metric_is_zero_for_identical_images_and_averages_batches():
    metric = LPIPSMetric(offline_random_backbone=True)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    metric.update(images, images)
    assert metric.compute().item() == pytest.approx(0.0, abs=1e-6)
    metric.reset()
    other = torch.rand(2, 3, 16, 16) * 2 - 1
    metric.update(images, other)
    metric.update(images[:1], images[:1])
    expected = metric.lpips(images, other).sum() / 3
    assert metric.compute().item() == pytest.approx(expected.item(), rel=1e-5) and expected > 0
