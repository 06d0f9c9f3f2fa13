"""Inference inputs: which files to invert, and how a photo is brought to the model's framing."""

from __future__ import annotations

import glob
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor

from pix2nerf.data.images import ImageReadError, read_image
from pix2nerf.inference.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MIN_INPUT_SIZE = 32
"""Images whose shorter side is below this hold too little of a face to invert."""
WHITE = (1.0, 1.0, 1.0)


def collect_inputs(spec: str | Path) -> list[Path]:
    """The image files named by ``spec``: one file, every image in a folder, or a glob pattern (sorted)."""
    path = Path(spec)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise InputError(f"folder {path} contains no images ({', '.join(IMAGE_SUFFIXES)})")
        return found
    if glob.has_magic(str(spec)):
        found = sorted(Path(p) for p in glob.glob(str(spec)) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise InputError(f"no images match {spec!r}")
        return found
    raise InputError(f"input {spec} does not exist; pass an image file, a folder of images or a glob pattern")


def load_face(path: str | Path, resolution: int, background: tuple[float, float, float] = WHITE) -> Tensor:
    """An image file as the model's input: (3, resolution, resolution) RGB in [-1, 1].

    Conversions (documented, not errors): grayscale is repeated to RGB; RGBA is composited onto
    ``background``; non-square images are centre-cropped to a square. The face must already be framed
    like the training data (FFHQ/EG3D-style crops: the head centred, filling most of the frame).
    """
    try:
        image = read_image(path, background)
    except ImageReadError as error:
        raise InputError(str(error)) from error
    height, width = image.shape[-2:]
    if min(height, width) < MIN_INPUT_SIZE:
        raise InputError(
            f"image {path} is {width}x{height} pixels; at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} is needed "
            "(use a larger crop of the face)"
        )
    return fit_to_resolution(image, resolution)


def fit_to_resolution(image: Tensor, resolution: int) -> Tensor:
    """Centre-crop (3, H, W) to a square and resize it (antialiased) to (3, resolution, resolution)."""
    height, width = image.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[:, top : top + side, left : left + side]
    if side == resolution:
        return square.contiguous()
    resized = F.interpolate(square[None], size=(resolution, resolution), mode="bilinear", antialias=True)
    return resized[0].clamp(-1.0, 1.0)
