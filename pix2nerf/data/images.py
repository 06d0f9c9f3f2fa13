"""Reading and writing images as the package's tensors: float (3, H, W) RGB in [-1, 1]."""

from __future__ import annotations

import io
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor


class ImageReadError(ValueError):
    """An image file is missing, unreadable, or not an image the package can use."""


def decode_image(data: bytes, name: str, background: tuple[float, float, float] | None = None) -> Tensor:
    """Decode image bytes to (3, H, W) float RGB in [-1, 1].

    Grayscale images are repeated to three channels. An alpha channel is dropped, or, when ``background``
    (RGB in [0, 1]) is given, the image is composited onto it. ``name`` is used in errors.
    """
    try:
        array = iio.imread(io.BytesIO(data), index=None)
    except Exception as error:  # imageio raises many types for corrupt data
        raise ImageReadError(f"cannot decode image {name}: {error}. Is it a valid PNG/JPEG file?") from error
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ImageReadError(f"image {name} has shape {array.shape}; expected H x W with 1, 3 or 4 channels")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    alpha = array[..., 3:] if array.shape[-1] == 4 else None
    array = array[..., :3]
    if array.dtype == np.uint16:
        scale = 65535.0
    elif array.dtype == np.uint8:
        scale = 255.0
    else:
        raise ImageReadError(f"image {name} has unsupported pixel type {array.dtype}; use 8- or 16-bit images")
    image = torch.from_numpy(array.astype(np.float32) / scale).permute(2, 0, 1)
    if alpha is not None and background is not None:
        coverage = torch.from_numpy(alpha.astype(np.float32) / scale).permute(2, 0, 1)
        image = image * coverage + torch.tensor(background).view(3, 1, 1) * (1.0 - coverage)
    return image * 2.0 - 1.0


def read_image(path: str | Path, background: tuple[float, float, float] | None = None) -> Tensor:
    """Read an image file as (3, H, W) float RGB in [-1, 1] (see :func:`decode_image`)."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image file not found: {path}")
    return decode_image(path.read_bytes(), str(path), background)


def to_uint8(image: Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    return ((image.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def write_image(path: str | Path, image: Tensor) -> None:
    """Write (3, H, W) in [-1, 1] as an 8-bit image (format from the suffix)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, to_uint8(image))
