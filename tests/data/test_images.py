"""Decoding of every common Pillow mode, EXIF orientation, shrinking while decoding and the pixel limit.

Each case saves a synthetic head (or an array made from it) in one mode and compares the decode with the RGB truth.
"""

from __future__ import annotations

import io
import math
import struct
import time
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, JpegImagePlugin
from torch import Tensor

from pix2nerf.data import SyntheticHeads, images
from pix2nerf.data.images import DECODE_MIN_SIDE, ImageReadError, decode_image, to_uint8
from pix2nerf.errors import InputError
from pix2nerf.inference.inputs import decode_face

JPEG_TOLERANCE = 0.05
"""Mean |difference| (in [-1, 1] units) a quality-95 JPEG of the head may keep."""
EXACT = 1e-6
ROUNDING = 2 / 255
"""One 8-bit step in [-1, 1] units (box-filter results are rounded to 8 bits)."""
YCBCR_ROUND_TRIP = 3 * ROUNDING + EXACT
"""Pillow's RGB -> YCbCr -> RGB in 8 bits is off by up to three steps."""
WHITE = (1.0, 1.0, 1.0)
JPEG_QUALITY = 95
PALETTE_COLOURS = 32
ORIENTATION_TAG = 0x0112
ROTATED_CLOCKWISE = 6
"""EXIF orientation of a phone photo taken upright: the stored pixels are the picture turned 90 degrees left."""
HEADER_ONLY_SECONDS = 1.0
"""A refusal from the header takes milliseconds; decoding a few hundred megapixels takes seconds."""


@pytest.fixture(scope="module")
def head() -> np.ndarray:
    """A synthetic head, (64, 64, 3) uint8."""
    return to_uint8(SyntheticHeads(resolution=64, num_identities=1)[0]["image"])


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def as_tensor(array: np.ndarray) -> Tensor:
    """(H, W, 3) RGB or (H, W) grey in [0, 1] -> (3, H, W) in [-1, 1]."""
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    return torch.from_numpy(array.astype(np.float32)).permute(2, 0, 1) * 2.0 - 1.0


def mean_error(decoded: Tensor, expected: Tensor) -> float:
    assert decoded.shape == expected.shape
    return (decoded - expected).abs().mean().item()


def assert_exact(decoded: Tensor, expected: Tensor, tolerance: float = EXACT) -> None:
    torch.testing.assert_close(decoded, expected, atol=tolerance, rtol=0.0)


def blank_bilevel_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG, built row by row (cheap at any size; decoding it is not)."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit grey, deflate, no filter, no interlace
    row = bytes(1 + (width + 7) // 8)  # filter type 0, then all-zero bits
    compressor = zlib.compressobj()
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_rgba_alpha_is_dropped_or_composited_onto_the_background(head):
    alpha = np.broadcast_to(np.linspace(0.0, 1.0, head.shape[1], dtype=np.float32), head.shape[:2])[..., None]
    rgba = np.concatenate([head, np.round(alpha * 255).astype(np.uint8)], axis=-1)
    data = encode(Image.fromarray(rgba), "PNG")
    coverage = rgba[..., 3:] / 255
    assert_exact(decode_image(data, "rgba.png"), as_tensor(head / 255))
    assert_exact(decode_image(data, "rgba.png", WHITE), as_tensor(head / 255 * coverage + (1 - coverage)))


def test_cmyk_jpeg_decodes_to_its_colours(head):
    rgb = head / 255
    black = 1 - rgb.max(axis=-1, keepdims=True)
    ink = np.divide(1 - rgb - black, 1 - black, out=np.zeros_like(rgb), where=black < 1)
    cmyk = np.round(np.concatenate([ink, black], axis=-1) * 255).astype(np.uint8)
    data = encode(Image.fromarray(cmyk, "CMYK"), "JPEG", quality=JPEG_QUALITY)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    assert mean_error(decode_image(data, "cmyk.jpg", WHITE), as_tensor(rgb)) < JPEG_TOLERANCE


def test_exif_orientation_is_applied(head):
    upright = head[:, 8:56]  # 64 x 48: a sideways decode has the wrong shape as well as the wrong pixels
    stored = np.ascontiguousarray(np.rot90(upright))  # row 0 holds the picture's right-hand column, top first
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = ROTATED_CLOCKWISE
    data = encode(Image.fromarray(stored), "JPEG", quality=JPEG_QUALITY, exif=exif.tobytes())
    assert mean_error(decode_image(data, "phone.jpg"), as_tensor(upright / 255)) < JPEG_TOLERANCE


def test_grey_alpha_png(head):
    grey = np.round(head.mean(axis=-1)).astype(np.uint8)
    alpha = np.broadcast_to(np.linspace(0, 255, grey.shape[1]).round().astype(np.uint8), grey.shape)
    data = encode(Image.fromarray(np.stack([grey, alpha], axis=-1), "LA"), "PNG")
    coverage = alpha / 255
    assert_exact(decode_image(data, "la.png"), as_tensor(grey / 255))
    assert_exact(decode_image(data, "la.png", WHITE), as_tensor(grey / 255 * coverage + (1 - coverage)))


def test_bilevel_png(head):
    bits = head.mean(axis=-1) > 127
    image = Image.fromarray(bits)
    assert image.mode == "1"
    assert_exact(decode_image(encode(image, "PNG"), "bits.png"), as_tensor(bits.astype(np.float32)))


def test_palette_png_with_and_without_transparency(head):
    paletted = Image.fromarray(head).quantize(PALETTE_COLOURS)
    indices = np.asarray(paletted)
    colours = np.asarray(paletted.getpalette(), dtype=np.float32).reshape(-1, 3)[indices] / 255
    assert_exact(decode_image(encode(paletted, "PNG"), "p.png", WHITE), as_tensor(colours))
    clear = int(indices[0, 0])  # the background's entry
    data = encode(paletted, "PNG", transparency=clear)
    assert_exact(decode_image(data, "p.png"), as_tensor(colours))
    assert_exact(decode_image(data, "p.png", WHITE), as_tensor(np.where((indices == clear)[..., None], 1.0, colours)))


@pytest.mark.parametrize(
    ("mode", "image_format", "dtype", "full_scale"),
    [("I;16", "PNG", np.uint16, 65535), ("I", "TIFF", np.int32, 65535), ("F", "TIFF", np.float32, 1)],
)
def test_high_bit_depth_grey_keeps_its_range(head, mode, image_format, dtype, full_scale):
    levels = np.round(head.mean(axis=-1) / 255 * 65535) / 65535  # 16-bit grey in [0, 1]
    image = Image.fromarray((levels * full_scale).astype(dtype))
    assert image.mode == mode
    assert_exact(decode_image(encode(image, image_format), f"grey.{image_format}"), as_tensor(levels))


def test_ycbcr_tiff(head):
    image = Image.fromarray(head).convert("YCbCr")
    data = encode(image, "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "YCbCr"
    assert_exact(decode_image(data, "ycbcr.tif"), as_tensor(head / 255), tolerance=YCBCR_ROUND_TRIP)


def test_large_jpeg_is_shrunk_by_the_jpeg_decoder(head, monkeypatch):
    side = 2 * DECODE_MIN_SIDE
    data = encode(Image.fromarray(head).resize((side, side), Image.Resampling.BICUBIC), "JPEG", quality=JPEG_QUALITY)
    decoder_sizes = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def recording_draft(image, mode, size):
        result = draft(image, mode, size)
        decoder_sizes.append(image.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", recording_draft)
    decoded = decode_image(data, "big.jpg")
    assert decoder_sizes == [(DECODE_MIN_SIDE, DECODE_MIN_SIDE)]  # DCT scaling: full size was never decoded
    expected = np.asarray(Image.fromarray(head).resize((DECODE_MIN_SIDE, DECODE_MIN_SIDE), Image.Resampling.BICUBIC))
    assert mean_error(decoded, as_tensor(expected / 255)) < JPEG_TOLERANCE


def test_large_png_is_reduced_by_whole_factors(head, monkeypatch):
    factor = 4
    monkeypatch.setattr(images, "DECODE_MIN_SIDE", head.shape[0] // factor)
    decoded = decode_image(encode(Image.fromarray(head), "PNG"), "big.png")
    assert_exact(decoded, F.avg_pool2d(as_tensor(head / 255)[None], factor)[0], tolerance=ROUNDING)


def test_pixel_limit_is_the_largest_size_read(head, monkeypatch):
    data = encode(Image.fromarray(head), "PNG")
    monkeypatch.setattr(images, "MAX_INPUT_PIXELS", head.shape[0] * head.shape[1])
    assert decode_image(data, "head.png").shape == (3, *head.shape[:2])
    monkeypatch.setattr(images, "MAX_INPUT_PIXELS", head.shape[0] * head.shape[1] - 1)
    with pytest.raises(ImageReadError, match=r"head.png is 64x64 pixels.*MAX_INPUT_PIXELS.*resize the photo below"):
        decode_image(data, "head.png")


@pytest.mark.parametrize("size", [(20_000, 20_000), (30_000, 20_000)], ids=["over_the_limit", "over_pillows_limit"])
def test_huge_image_is_refused_from_its_header(size):
    data = blank_bilevel_png(*size)
    assert size[0] * size[1] > images.MAX_INPUT_PIXELS
    fix = f"resize the photo below {images.MAX_INPUT_PIXELS // 10**6} megapixels"
    start = time.perf_counter()
    with pytest.raises(ImageReadError, match=fix):
        decode_image(data, "huge.png")
    assert time.perf_counter() - start < HEADER_ONLY_SECONDS
    with pytest.raises(InputError, match=fix):
        decode_face(data, "huge.png", resolution=64)


def test_pillows_bomb_guard_follows_the_limit():
    assert Image.MAX_IMAGE_PIXELS == images.MAX_INPUT_PIXELS  # Pillow warns above it and refuses twice it


def test_cmyk_and_phone_jpegs_of_a_head_invert_like_the_original(head, tmp_path):
    """Through the bundled model: the decoded photos give the original's pose and novel view (issue 18's check)."""
    from pix2nerf.inference import load_model
    from pix2nerf.inference.inputs import load_face
    from tests.factories import BUNDLED_MODEL

    model = load_model(BUNDLED_MODEL)
    rgb = head / 255
    black = 1 - rgb.max(axis=-1, keepdims=True)
    ink = np.divide(1 - rgb - black, 1 - black, out=np.zeros_like(rgb), where=black < 1)
    cmyk = np.round(np.concatenate([ink, black], axis=-1) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = ROTATED_CLOCKWISE
    files = {
        "original.png": encode(Image.fromarray(head), "PNG"),
        "cmyk.jpg": encode(Image.fromarray(cmyk, "CMYK"), "JPEG", quality=JPEG_QUALITY),
        "phone.jpg": encode(
            Image.fromarray(np.ascontiguousarray(np.rot90(head))), "JPEG", quality=JPEG_QUALITY, exif=exif
        ),
    }
    renders = {}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        encoded = model.encode(load_face(tmp_path / name, model.image_resolution).image[None])
        novel = model.render(encoded.w, encoded.yaw_pitch + torch.tensor([[0.5, 0.0]])).image
        renders[name] = (encoded.yaw_pitch, novel)
    pose, novel = renders["original.png"]
    for name in ("cmyk.jpg", "phone.jpg"):
        assert (renders[name][0] - pose).abs().max() < math.radians(2.0), name
        assert (renders[name][1] - novel).abs().mean() < 0.03, name
