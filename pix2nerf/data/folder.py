"""Plain image folders (CelebA / pi-GAN style): no camera labels, so poses are drawn from a prior."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from pix2nerf.cameras import FACE_PRIOR, PosePrior, look_at, sample_yaw_pitch
from pix2nerf.data.images import IMAGE_SUFFIXES, read_image


class ImageFolderDataset(Dataset):
    """Every image under ``path`` (recursively), centre-cropped to a square and resized.

    Real images of such sets carry no pose; each item gets a camera label drawn from ``prior``
    (seeded by index, so an item always has the same label). Items: ``image`` (3, R, R) in [-1, 1],
    ``camera`` (25,).
    """

    def __init__(self, path: str | Path, resolution: int = 64, prior: PosePrior = FACE_PRIOR, seed: int = 0) -> None:
        self.root = Path(path)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        self.files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {self.root}")
        self.resolution, self.prior, self.seed = resolution, prior, seed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = read_image(self.files[index])
        height, width = image.shape[-2:]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        image = image[:, top : top + side, left : left + side]
        if side != self.resolution:
            image = F.interpolate(image[None], size=self.resolution, mode="bilinear", antialias=True)[0]
        rng = torch.Generator().manual_seed(self.seed * 2**32 + index)
        yaw, pitch = sample_yaw_pitch(1, self.prior, rng)[0]
        camera = look_at(yaw, pitch, self.prior.radius, self.prior.target, self.prior.focal).label()[0]
        return {"image": image, "camera": camera}
