"""Semantic label maps in CelebAMask-HQ's 19-class id space: one-hot encoding, resizing, display colours,
and label maps assembled from CelebAMask-HQ's per-part annotation PNGs."""

from __future__ import annotations

import io
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

CELEBAMASK_HQ_CLASSES = (
    "background",
    "skin",
    "nose",
    "eye_g",
    "l_eye",
    "r_eye",
    "l_brow",
    "r_brow",
    "l_ear",
    "r_ear",
    "mouth",
    "u_lip",
    "l_lip",
    "hair",
    "hat",
    "ear_r",
    "neck_l",
    "neck",
    "cloth",
)
"""Class names by id (CelebAMask-HQ face parsing; ``l_`` is the subject's left)."""

PALETTE = (
    torch.tensor(
        [
            [0, 0, 0],
            [204, 0, 0],
            [76, 153, 0],
            [204, 204, 0],
            [51, 51, 255],
            [204, 0, 204],
            [0, 255, 255],
            [255, 204, 204],
            [102, 51, 0],
            [255, 0, 0],
            [102, 204, 0],
            [255, 255, 0],
            [0, 0, 153],
            [0, 0, 204],
            [255, 51, 153],
            [0, 204, 204],
            [0, 51, 0],
            [255, 153, 51],
            [0, 204, 0],
        ],
        dtype=torch.float32,
    )
    / 255.0
)
"""(19, 3) display colours in [0, 1], CelebAMask-HQ's colour map."""


def one_hot_labels(labels: Tensor, num_classes: int) -> Tensor:
    """Label maps (B, H, W) int64 -> one-hot (B, K, H, W) float."""
    if labels.dtype != torch.long or labels.ndim != 3:
        raise ValueError(f"labels must be int64 label maps (B, H, W), got {labels.dtype} {tuple(labels.shape)}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"label ids must be in 0..{num_classes - 1}, got {int(labels.min())}..{int(labels.max())}")
    return F.one_hot(labels, num_classes).permute(0, 3, 1, 2).float()


def resize_labels(labels: Tensor, size: int) -> Tensor:
    """Nearest-neighbour resize of label maps (B, H, W) int64 to (B, size, size)."""
    if labels.shape[-2:] == (size, size):
        return labels
    return F.interpolate(labels[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()


def colorize_labels(labels: Tensor) -> Tensor:
    """Label maps (B, H, W) int64 -> RGB (B, 3, H, W) in [0, 1] with :data:`PALETTE` (ids wrap around)."""
    palette = PALETTE.to(labels.device)
    return palette[labels % len(palette)].permute(0, 3, 1, 2)


def celebamask_label_map(annotation_dir: str | Path, index: int, resolution: int | None = None) -> Tensor:
    """Assemble one CelebAMask-HQ label map (H, W) int64 from its per-part binary PNGs.

    CelebAMask-HQ stores ``CelebAMask-HQ-mask-anno/<index // 2000>/<index:05d>_<part>.png`` for the parts
    that occur in image ``index``; parts are painted in class-id order (later ids win where they overlap,
    as the data set's own conversion script does). Missing parts are absent from the image.
    """
    folder = Path(annotation_dir) / str(index // 2000)
    labels: Tensor | None = None
    for class_id, part in enumerate(CELEBAMASK_HQ_CLASSES[1:], start=1):
        file = folder / f"{index:05d}_{part}.png"
        if not file.is_file():
            continue
        pixels = iio.imread(io.BytesIO(file.read_bytes()))
        mask = torch.from_numpy(np.asarray(pixels)[..., 0] if pixels.ndim == 3 else np.asarray(pixels)) > 0
        labels = torch.zeros(mask.shape, dtype=torch.long) if labels is None else labels
        labels[mask] = class_id
    if labels is None:
        raise FileNotFoundError(f"no CelebAMask-HQ part masks for image {index} under {folder}")
    return labels if resolution is None else resize_labels(labels[None], resolution)[0]
