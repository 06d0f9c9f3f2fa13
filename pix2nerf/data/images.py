"""Reading and writing images as the package's tensors: float (3, H, W) RGB in [-1, 1]."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps
from torch import Tensor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
"""File names that folder and glob inputs pick up as images."""
MAX_INPUT_PIXELS = 2**28
"""Largest image read (width x height, about 268 megapixels: above the largest phone sensors' 200). Larger files
are refused from their header, before any pixel is decoded."""
DECODE_MIN_SIDE = 1024
"""Larger images are shrunk while decoding (JPEG DCT scaling, then :meth:`PIL.Image.Image.reduce`) by the largest
integer factor that keeps their shorter side at least this many pixels."""
UINT8_FULL_SCALE = 255.0
SIXTEEN_BIT_FULL_SCALE = 65535.0
"""White of 16-bit grey: modes I;16* and I (as Pillow opened 16-bit grey PNGs before mode I;16)."""
FLOAT_FULL_SCALE = 1.0
"""White of float grey (mode F)."""

# Pillow's own decompression-bomb guard (for every reader in this process) follows the same limit: it warns above it
# and refuses twice it in Image.open; decode_image refuses everything above it with the message below.
Image.MAX_IMAGE_PIXELS = MAX_INPUT_PIXELS


class ImageReadError(ValueError):
    """An image file is missing, unreadable, or not an image the package can use."""


def decode_image(data: bytes, name: str, background: tuple[float, float, float] | None = None) -> Tensor:
    """Decode image bytes to (3, H, W) float RGB in [-1, 1].

    Every Pillow mode is converted: grey (1, L, I;16, I, F) is repeated to three channels (I;16 and I span
    0..65535, F 0..1); palette, CMYK and YCbCr become RGB. The EXIF orientation is applied. An alpha channel
    (RGBA, LA, PA, or palette / tRNS transparency) is dropped, or, when ``background`` (RGB in [0, 1]) is given,
    the image is composited onto it. Of a multi-frame file (GIF, MPO) the first frame is read. Images above
    :data:`MAX_INPUT_PIXELS` are refused before decoding; large ones are shrunk while decoding (see
    :data:`DECODE_MIN_SIDE`). ``name`` is used in errors.
    """
    with _open(data, name) as opened:
        pixels, full_scale = _decode_upright(opened, name)
    array = np.asarray(pixels, dtype=np.float32) / full_scale
    if pixels.mode == "F":
        array = np.repeat(array.clip(0.0, 1.0)[..., None], 3, axis=-1)
    alpha = array[..., 3:] if pixels.mode == "RGBA" else None
    array = array[..., :3]
    image = torch.from_numpy(array).permute(2, 0, 1)
    if alpha is not None and background is not None:
        coverage = torch.from_numpy(alpha).permute(2, 0, 1)
        image = image * coverage + torch.tensor(background).view(3, 1, 1) * (1.0 - coverage)
    return image * 2.0 - 1.0


def _too_large(name: str, size: str) -> ImageReadError:
    megapixels = MAX_INPUT_PIXELS // 10**6
    return ImageReadError(
        f"image {name} is {size}, above the limit of {MAX_INPUT_PIXELS:,} pixels (MAX_INPUT_PIXELS); "
        f"resize the photo below {megapixels} megapixels and try again"
    )


def _open(data: bytes, name: str) -> ImageFile.ImageFile:
    """Open ``data`` reading only its header; refuse images above :data:`MAX_INPUT_PIXELS`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below with the package's message
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        limit = Image.MAX_IMAGE_PIXELS or 0  # never None here: Pillow raises this error only when a limit is set
        raise _too_large(name, f"over {2 * limit:,} pixels") from error
    except Exception as error:  # Pillow raises many types for corrupt data
        raise ImageReadError(f"cannot decode image {name}: {error}. Is it a valid PNG/JPEG file?") from error
    width, height = image.size
    if width * height > MAX_INPUT_PIXELS:
        image.close()
        raise _too_large(name, f"{width}x{height} pixels")
    return image


def _decode_upright(image: ImageFile.ImageFile, name: str) -> tuple[Image.Image, float]:
    """Decode an opened image, shrunk (see :data:`DECODE_MIN_SIDE`) and upright, as mode RGB, RGBA or F; and the
    value of white in it."""
    factor = min(image.size) // DECODE_MIN_SIDE
    if factor > 1:
        image.draft(image.mode, (image.width // factor, image.height // factor))  # JPEG only; others keep their size
    try:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        mode, full_scale = _working_mode(image)
        pixels = image if image.mode == mode else image.convert(mode)
    except Exception as error:  # Pillow raises many types for corrupt data
        raise ImageReadError(f"cannot decode image {name}: {error}. Is it a valid PNG/JPEG file?") from error
    factor = min(pixels.size) // DECODE_MIN_SIDE
    return (pixels.reduce(factor) if factor > 1 else pixels), full_scale


def _working_mode(image: Image.Image) -> tuple[str, float]:
    """The mode an image is decoded in (RGB, RGBA, or F for high-bit-depth grey) and the value of white in it."""
    if image.mode == "F":
        return "F", FLOAT_FULL_SCALE
    if image.mode == "I" or image.mode.startswith("I;16"):  # Pillow's 8-bit conversions would clip these at 255
        return "F", SIXTEEN_BIT_FULL_SCALE
    return ("RGBA" if image.has_transparency_data else "RGB"), UINT8_FULL_SCALE


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
