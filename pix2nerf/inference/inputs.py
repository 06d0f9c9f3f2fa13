"""Inference inputs: which files to invert, and how a photo is brought to the model's framing."""

from __future__ import annotations

import glob
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pix2nerf.cameras import FACE_PRIOR, PosePrior
from pix2nerf.data.images import IMAGE_SUFFIXES, ImageReadError, decode_image, read_image
from pix2nerf.errors import InputError
from pix2nerf.inference.alignment import crop_from_landmarks, pose_from_landmarks, warp_crop
from pix2nerf.inference.landmarks import INSTALL_COMMAND, LandmarkDetector, landmark_detector_available

log = logging.getLogger(__name__)

MIN_INPUT_SIZE = 32
"""Images whose shorter side is below this hold too little of a face to invert."""
WHITE = (1.0, 1.0, 1.0)
FaceDetector = Literal["none", "haar", "landmarks"]
"""How a photo is framed: ``"none"`` (already a training-style crop), ``"haar"`` (a face box, no rotation) or
``"landmarks"`` (5 landmarks: rotation-aligned crop and a camera estimate; falls back to ``"haar"``, with a
warning, when the landmark detector's weights are not installed)."""
FACE_DETECTORS: tuple[str, ...] = get_args(FaceDetector)

# Framing of a detected face box in the model's crops, measured on synthetic heads rendered with the EG3D
# camera (FFHQ framing): the crop is 1.55 box sides wide and centred 0.13 box sides below the box centre.
CROP_PER_FACE_BOX = 1.55
CROP_CENTER_BELOW_BOX = 0.13
HAAR_MIN_FACE = 24
"""Smallest face side (pixels) the Haar cascade looks for."""


@dataclass
class Face:
    """A photo brought to the model's framing.

    Attributes:
        image: (3, resolution, resolution) RGB in [-1, 1].
        yaw_pitch: (2,) camera angles (radians) on the model's sphere estimated from the landmarks, or None.
        detector: what framed it: ``"none"``, ``"haar"`` or ``"landmarks"``.
    """

    image: Tensor
    yaw_pitch: Tensor | None = None
    detector: str = "none"


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


def load_face(
    path: str | Path,
    resolution: int,
    detector: FaceDetector = "none",
    background: tuple[float, float, float] = WHITE,
    prior: PosePrior = FACE_PRIOR,
) -> Face:
    """An image file as the model's input (see :class:`Face`).

    Decoding (see :func:`pix2nerf.data.images.read_image`): every common mode (grey, 1-bit, palette, CMYK,
    16-bit, YCbCr) becomes RGB, EXIF orientation is applied, alpha is composited onto ``background``, and very
    large photos are shrunk while decoding. With ``detector="none"`` the face must already be framed like the
    training data (FFHQ/EG3D-style crops) and non-square images are centre-cropped; ``"haar"`` finds the largest face
    (OpenCV's Haar cascade, shipped inside ``opencv-python-headless``) and crops around it; ``"landmarks"`` finds
    5 landmarks (MTCNN), aligns the crop (centre, scale and roll) and estimates the camera on ``prior``'s sphere.
    """
    try:
        image = read_image(path, background)
    except ImageReadError as error:
        raise InputError(str(error)) from error
    return prepare_face(image, str(path), resolution, detector, prior)


def decode_face(
    data: bytes,
    name: str,
    resolution: int,
    detector: FaceDetector = "none",
    background: tuple[float, float, float] = WHITE,
    prior: PosePrior = FACE_PRIOR,
) -> Face:
    """Image bytes (an upload) as the model's input, converted like :func:`load_face`."""
    try:
        image = decode_image(data, name, background)
    except ImageReadError as error:
        raise InputError(str(error)) from error
    return prepare_face(image, name, resolution, detector, prior)


def prepare_face(
    image: Tensor, name: str, resolution: int, detector: FaceDetector = "none", prior: PosePrior = FACE_PRIOR
) -> Face:
    """A decoded image (3, H, W) in [-1, 1] -> the model's input (see :func:`load_face`)."""
    height, width = image.shape[-2:]
    if min(height, width) < MIN_INPUT_SIZE:
        raise InputError(
            f"image {name} is {width}x{height} pixels; at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} is needed "
            "(use a larger crop of the face)"
        )
    if detector not in FACE_DETECTORS:
        raise InputError(f"unknown face detector {detector!r}; use 'none' (pre-aligned crops), 'haar' or 'landmarks'")
    if detector == "landmarks":
        if landmark_detector_available():
            return align_to_landmarks(image, name, resolution, prior)
        log.warning(
            "the landmark detector's weights are not installed (%s); framing %s with the Haar face box instead "
            "(no rotation alignment, no camera estimate)",
            INSTALL_COMMAND,
            name,
        )
        detector = "haar"
    if detector == "haar":
        image = crop_to_face(image, detect_face(image, name))
    return Face(fit_to_resolution(image, resolution), detector=detector)


@lru_cache(maxsize=1)
def landmark_detector() -> LandmarkDetector:
    """The 5-point detector, built once per process."""
    return LandmarkDetector()


def align_to_landmarks(image: Tensor, name: str, resolution: int, prior: PosePrior = FACE_PRIOR) -> Face:
    """Crop (3, H, W) to the training framing from its largest face's 5 landmarks (centre, scale and roll), and
    estimate that face's camera from the landmarks in the aligned crop."""
    points = landmark_detector().detect(image, name).points
    crop = crop_from_landmarks(points)
    aligned = warp_crop(image, crop, resolution).clamp(-1.0, 1.0)
    yaw_pitch = pose_from_landmarks(crop.to_crop(points, resolution), resolution, prior)
    return Face(aligned, yaw_pitch.to(image.dtype), "landmarks")


def detect_face(image: Tensor, name: str) -> tuple[int, int, int]:
    """The largest frontal face in ``image`` (3, H, W) in [-1, 1]: (centre x, centre y, side) in pixels."""
    try:
        import cv2
    except ImportError as error:
        raise InputError(
            "face detection needs OpenCV: pip install 'opencv-python-headless<5' (or pix2nerf[faces]); "
            "or pass pre-aligned crops with detector=none"
        ) from error
    gray = ((image.mean(0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    cascades = cv2.data.haarcascades  # type: ignore[attr-defined]  # OpenCV's stubs omit the cv2.data module
    cascade = cv2.CascadeClassifier(cascades + "haarcascade_frontalface_default.xml")
    faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=3, minSize=(HAAR_MIN_FACE, HAAR_MIN_FACE))
    if len(faces) == 0:
        raise InputError(
            f"no face found in {name}; pass a photo with a clearly visible frontal face, or a pre-aligned "
            "crop with detector=none"
        )
    x, y, width, height = max(np.asarray(faces).tolist(), key=lambda box: box[2] * box[3])
    return x + width // 2, y + height // 2, max(width, height)


def crop_to_face(image: Tensor, face: tuple[int, int, int]) -> Tensor:
    """Crop (3, H, W) to the training framing around a face box (centre x, centre y, side); the crop is
    padded with the image's edge pixels where it leaves the image."""
    center_x, center_y, side = face
    crop = round(side * CROP_PER_FACE_BOX)
    left = center_x - crop // 2
    top = round(center_y + side * CROP_CENTER_BELOW_BOX) - crop // 2
    height, width = image.shape[-2:]
    pad = (max(0, -left), max(0, left + crop - width), max(0, -top), max(0, top + crop - height))
    padded = F.pad(image[None], pad, mode="replicate")[0]
    top, left = top + pad[2], left + pad[0]
    return padded[:, top : top + crop, left : left + crop]


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
