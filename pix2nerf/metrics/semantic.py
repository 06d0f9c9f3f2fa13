"""Semantic segmentation agreement: per-class and mean intersection over union."""

from __future__ import annotations

import torch
from torch import Tensor


def class_iou(prediction: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """IoU (K,) of each class over a whole batch of label maps (B, H, W) (int ids in [0, K)).

    Classes absent from both prediction and target have no IoU: NaN.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    pairs = (target.flatten().long() * num_classes + prediction.flatten().long()).bincount(minlength=num_classes**2)
    confusion = pairs.reshape(num_classes, num_classes).double()
    intersection = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - intersection
    return torch.where(union > 0, intersection / union.clamp_min(1), torch.nan)


def mean_iou(prediction: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Mean IoU () over the classes present in the prediction or the target of label maps (B, H, W)."""
    return class_iou(prediction, target, num_classes).nanmean()
