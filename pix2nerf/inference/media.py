"""Rendered views as media: (N, 3, H, W) images in [-1, 1] to uint8 frames, display images of depth and semantics,
videos and grid PNGs. Shared by the novel-view pipeline and the viewer, so neither imports the other's module."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor
from torchvision.utils import make_grid

from pix2nerf.data.semantics import PALETTE

FOREGROUND_OPACITY = 0.5
"""Pixels with at least this opacity count as the head when normalising depth maps for display."""


def to_frames(images: Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def depth_frames(depth: Tensor, opacity: Tensor) -> Tensor:
    """Depth (N, 1, h, w) as display images in [-1, 1] (near = bright), normalised over the head's pixels
    of all frames together so brightness means the same depth in every frame; background is black."""
    head = opacity > FOREGROUND_OPACITY
    values = depth[head] if head.any() else depth.flatten()
    near, far = values.min(), values.max()
    shade = (1 - (depth - near) / (far - near + 1e-8)).clamp(0, 1) * head
    return (shade * 2 - 1).expand(-1, 3, -1, -1)


def semantic_frames(logits: Tensor) -> Tensor:
    """Semantic logits (N, K, h, w) -> label colours (N, 3, h, w) in [-1, 1] (CelebAMask-HQ palette, cycled)."""
    labels = logits.argmax(1)
    colors = PALETTE.to(logits.device)[labels % len(PALETTE)]
    return colors.permute(0, 3, 1, 2) * 2 - 1


def write_video(path: Path, images: Tensor, fps: int, gif: bool) -> list[str]:
    """MP4 (H.264 via imageio-ffmpeg) and optionally GIF of (N, 3, H, W) frames; returns the file names."""
    frames = to_frames(images)
    iio.imwrite(path.with_suffix(".mp4"), frames, fps=fps, macro_block_size=1)
    written = [path.with_suffix(".mp4").name]
    if gif:
        iio.imwrite(path.with_suffix(".gif"), frames, duration=1000 / fps, loop=0)
        written.append(path.with_suffix(".gif").name)
    return written


def write_grid(path: Path, images: Tensor, columns: int) -> None:
    """A grid PNG of (N, 3, H, W) images in [-1, 1]."""
    grid = make_grid(images.clamp(-1, 1) * 0.5 + 0.5, nrow=columns, padding=2, pad_value=1.0)
    iio.imwrite(path, (grid.permute(1, 2, 0) * 255).round().to(torch.uint8).cpu().numpy())
