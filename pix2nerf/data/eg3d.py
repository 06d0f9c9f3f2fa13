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


LABEL_TOLERANCE = 1e-2
"""Largest deviation accepted where a camera label has an exact structure: R^T R = I and det R = 1 for the
cam2world rotation R, a (0, 0, 0, 1) last row of cam2world and a (0, 0, 1) last row of the intrinsics."""


def read_labels(source_path: str | Path) -> list[tuple[str, list[float]]]:
    """The (relative image path, 25-float label) pairs of an EG3D data set, validated: every label has 25 finite
    numbers, a cam2world whose rotation part is a rotation and intrinsics with positive focal lengths."""
    source = _Source(Path(source_path))
    file = f"{source_path}/dataset.json"
    if not source.exists("dataset.json"):
        raise DatasetFormatError(f"{source_path} has no dataset.json; EG3D-format data sets need camera labels")
    try:
        labels = json.loads(source.read("dataset.json"))["labels"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DatasetFormatError(f"{file} must be {{'labels': [[path, [25 floats]], ...]}}") from error
    if not labels:
        raise DatasetFormatError(f"{file} lists no images")
    pairs = []
    for entry in labels:
        try:
            name, label = entry
            values = [float(v) for v in label]
        except (TypeError, ValueError):
            raise DatasetFormatError(f"{file}: entry {entry!r:.80} is not [path, [25 numbers]]") from None
        if not isinstance(name, str):
            raise DatasetFormatError(f"{file}: entry {entry!r:.80} does not start with an image path")
        if len(values) != LABEL_DIM:
            raise DatasetFormatError(
                f"{file}: the label of {name} has {len(values)} values; EG3D camera labels have {LABEL_DIM}"
            )
        pairs.append((name, values))
    checks = _label_checks(np.asarray([values for _, values in pairs]))
    failed = np.stack(list(checks.values())).any(axis=0)
    if failed.any():
        index, others = int(failed.argmax()), int(failed.sum()) - 1
        name, values = pairs[index]
        problem = next(problem for problem, rows in checks.items() if rows[index])
        more = f" ({others} more invalid labels)" if others else ""
        raise DatasetFormatError(f"{file}: the label of {name} {problem}; label {values}{more}")
    return pairs


def _label_checks(labels: np.ndarray) -> dict[str, np.ndarray]:
    """For each check of (N, 25) camera labels, what it finds wrong and the (N,) rows where it fails."""
    finite = np.isfinite(labels).all(axis=1)
    labels = np.where(finite[:, None], labels, 0.0)  # keeps NaN warnings out of the checks after the first
    cam2world, intrinsics = labels[:, :16].reshape(-1, 4, 4), labels[:, 16:].reshape(-1, 3, 3)
    rotation = cam2world[:, :3, :3]
    orthogonality = np.abs(rotation.transpose(0, 2, 1) @ rotation - np.eye(3)).max(axis=(1, 2))
    determinant = np.linalg.det(rotation)
    focal = intrinsics[:, [0, 1], [0, 1]]
    return {
        "is not finite": ~finite,
        "has a cam2world rotation part (values 0-2, 4-6, 8-10) that is not a rotation": (
            (orthogonality > LABEL_TOLERANCE) | (np.abs(determinant - 1) > LABEL_TOLERANCE)
        ),
        "has a cam2world last row (values 12-15) other than (0, 0, 0, 1) (transposed?)": (
            np.abs(cam2world[:, 3] - (0.0, 0.0, 0.0, 1.0)).max(axis=1) > LABEL_TOLERANCE
        ),
        "has intrinsics (values 16-24) without positive focal lengths or last row (0, 0, 1)": (
            (focal <= 0).any(axis=1) | (np.abs(intrinsics[:, 2] - (0.0, 0.0, 1.0)).max(axis=1) > LABEL_TOLERANCE)
        ),
    }


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
