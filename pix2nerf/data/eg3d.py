"""Data sets in EG3D's format: images plus ``dataset.json`` camera labels, in a folder or a zip file.

``dataset.json`` holds ``{"labels": [[relative_path, [25 floats]], ...]}``: the OpenCV cam2world
(flattened) and normalised intrinsics of each image (see :mod:`pix2nerf.cameras`). Optional extras
that pix2nerf writes and reads: semantic masks (8-bit PNGs of class ids) under ``masks/`` and z-depth
(``.npy``, +inf on background) under ``depth/``, each with the image's relative path.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from pix2nerf.cameras import LABEL_DIM, Cameras, flip_yaw
from pix2nerf.data.images import decode_image

MASK_DIR = "masks"
DEPTH_DIR = "depth"


class DatasetFormatError(ValueError):
    """A data set folder or zip does not follow EG3D's format."""


class _Source:
    """Read files by relative path from a folder or a zip (opened lazily, once per worker process)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.is_zip = path.suffix.lower() == ".zip"
        self._zip: zipfile.ZipFile | None = None
        if not path.exists():
            raise FileNotFoundError(f"data set not found: {path} (expected a folder or a .zip with dataset.json)")

    def __getstate__(self) -> dict:
        return {"path": self.path, "is_zip": self.is_zip, "_zip": None}

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        return self._zip

    def exists(self, name: str) -> bool:
        if self.is_zip:
            return name in self._archive().NameToInfo
        return (self.path / name).is_file()

    def read(self, name: str) -> bytes:
        if self.is_zip:
            try:
                return self._archive().read(name)
            except KeyError:
                raise FileNotFoundError(f"{name} is listed in dataset.json but missing from {self.path}") from None
        file = self.path / name
        if not file.is_file():
            raise FileNotFoundError(f"{name} is listed in dataset.json but missing from {self.path}")
        return file.read_bytes()


def read_labels(source_path: str | Path) -> list[tuple[str, list[float]]]:
    """The (relative image path, 25-float label) pairs of an EG3D data set, validated."""
    source = _Source(Path(source_path))
    if not source.exists("dataset.json"):
        raise DatasetFormatError(f"{source_path} has no dataset.json; EG3D-format data sets need camera labels")
    try:
        labels = json.loads(source.read("dataset.json"))["labels"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DatasetFormatError(
            f"{source_path}/dataset.json must be {{'labels': [[path, [25 floats]], ...]}}"
        ) from error
    if not labels:
        raise DatasetFormatError(f"{source_path}/dataset.json lists no images")
    for name, label in labels:
        if len(label) != LABEL_DIM:
            raise DatasetFormatError(f"label of {name} has {len(label)} values; EG3D camera labels have {LABEL_DIM}")
    return [(name, [float(v) for v in label]) for name, label in labels]


class EG3DDataset(Dataset):
    """Images with EG3D camera labels, optionally with semantic masks and depth.

    Args:
        path: folder or ``.zip`` holding ``dataset.json`` and the images.
        resolution: resize images (bilinear, antialiased; masks nearest) to this size if they differ.
        xflip: double the data set with mirrored copies (image flipped, pose mirrored with ``flip_yaw``).
        load_masks: also return ``semantics`` (H, W) int64 from ``masks/``.
        load_depth: also return ``depth`` (1, H, W) from ``depth/`` (not resized; needs native resolution).

    Items: ``image`` (3, H, W) in [-1, 1], ``camera`` (25,), plus ``semantics`` / ``depth`` when asked.
    """

    def __init__(
        self,
        path: str | Path,
        resolution: int | None = None,
        xflip: bool = False,
        load_masks: bool = False,
        load_depth: bool = False,
    ) -> None:
        self.source = _Source(Path(path))
        self.labels = read_labels(path)
        self.resolution = resolution
        self.xflip = xflip
        self.load_masks = load_masks
        self.load_depth = load_depth
        if load_masks and not self.source.exists(f"{MASK_DIR}/{self.labels[0][0]}"):
            raise DatasetFormatError(
                f"load_masks=True but {path} has no {MASK_DIR}/{self.labels[0][0]}; masks must mirror image paths"
            )

    def __len__(self) -> int:
        return len(self.labels) * (2 if self.xflip else 1)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        mirrored = index >= len(self.labels)
        name, label = self.labels[index % len(self.labels)]
        image = decode_image(self.source.read(name), f"{self.source.path}/{name}")
        camera = torch.tensor(label)
        item: dict[str, Tensor] = {}
        if self.resolution is not None and image.shape[-2:] != (self.resolution, self.resolution):
            image = F.interpolate(image[None], size=self.resolution, mode="bilinear", antialias=True)[0]
        if self.load_masks:
            mask = torch.from_numpy(iio.imread(io.BytesIO(self.source.read(f"{MASK_DIR}/{name}"))).astype(np.int64))
            if mask.ndim != 2:
                raise DatasetFormatError(f"mask {MASK_DIR}/{name} must be a single-channel image of class ids")
            if mask.shape != image.shape[-2:]:
                mask = F.interpolate(mask[None, None].float(), size=image.shape[-2:], mode="nearest")[0, 0].long()
            item["semantics"] = mask
        if self.load_depth:
            stem = name.rsplit(".", 1)[0]
            depth = torch.from_numpy(np.load(io.BytesIO(self.source.read(f"{DEPTH_DIR}/{stem}.npy"))))
            item["depth"] = depth.reshape(1, *depth.shape[-2:]).float()
        if mirrored:
            image = image.flip(-1)
            camera = flip_yaw(Cameras.from_label(camera)).label()[0]
            for key in ("semantics", "depth"):
                if key in item:
                    item[key] = item[key].flip(-1)
            if "semantics" in item:
                item["semantics"] = _swap_left_right(item["semantics"])
        item["image"] = image
        item["camera"] = camera
        return item


_LEFT_RIGHT = ((4, 5), (6, 7), (8, 9))
"""CelebAMask-HQ class pairs that swap under mirroring: eyes, brows, ears."""


def _swap_left_right(semantics: Tensor) -> Tensor:
    swapped = semantics.clone()
    for left, right in _LEFT_RIGHT:
        swapped[semantics == left] = right
        swapped[semantics == right] = left
    return swapped
