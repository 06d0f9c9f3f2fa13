"""Semantic IoU on hand-made label maps with hand-computed values."""

import math

import pytest
import torch

from pix2nerf.metrics import class_iou, mean_iou


def test_iou_of_known_masks():
    target = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2]]])
    prediction = torch.tensor([[[0, 0, 0, 1], [0, 0, 1, 1], [2, 2, 2, 1]]])
    # class 0: intersection 4, union 5; class 1: intersection 3, union 5; class 2: 3 / 4; class 3: absent.
    iou = class_iou(prediction, target, num_classes=4)
    torch.testing.assert_close(iou[:3], torch.tensor([4 / 5, 3 / 5, 3 / 4], dtype=torch.float64))
    assert math.isnan(iou[3].item())
    assert mean_iou(prediction, target, num_classes=4).item() == pytest.approx((4 / 5 + 3 / 5 + 3 / 4) / 3)


def test_identical_maps_score_one_and_a_wrong_class_counts():
    target = torch.randint(0, 5, (2, 8, 8), generator=torch.Generator().manual_seed(0))
    assert mean_iou(target, target, num_classes=19).item() == pytest.approx(1.0)
    prediction = target.clone()
    prediction[0, 0, 0] = 7  # a class only in the prediction: IoU 0, and it enters the mean
    assert mean_iou(prediction, target, num_classes=19).item() < 5 / 6 + 1e-9
