"""Five facial landmarks (eyes, nose tip, mouth corners) with MTCNN, for aligning in-the-wild photos.

MTCNN (Zhang et al. 2016, "Joint Face Detection and Alignment using Multi-task Cascaded Convolutional Networks") is a
cascade of three small networks: PNet proposes face windows over an image pyramid, RNet rejects most of them and
ONet scores the rest and places the five points. The networks and the cascade are our own; the trained weights are
the ones shipped (MIT licence) in the facenet-pytorch wheel, which is installed for its data only, without its
dependencies: ``pip install --no-deps facenet-pytorch==2.6.0``. That package is located, never imported.

Coordinates are continuous pixels: pixel (row i, column j) covers [j, j + 1) x [i, i + 1), so its centre is at
(j + 0.5, i + 0.5); boxes are (x0, y0, x1, y1) and points are (x, y).
"""

from __future__ import annotations

import importlib.util
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import nms, roi_align

from pix2nerf.errors import InputError

WEIGHTS_PACKAGE = "facenet_pytorch"
"""The installed package whose data folder holds MTCNN's weights (located with importlib, never imported)."""
WEIGHTS_FOLDER = "data"
WEIGHT_FILES = {"pnet": "pnet.pt", "rnet": "rnet.pt", "onet": "onet.pt"}
INSTALL_COMMAND = "pip install --no-deps facenet-pytorch==2.6.0"
"""Installs the weights without facenet-pytorch's pinned (old) torch and numpy."""
FALLBACK_HINT = "detector=haar works without it"

NUM_LANDMARKS = 5
"""Left eye, right eye, nose tip, left mouth corner, right mouth corner; left/right as seen in the image."""
PIXEL_MAX = 255.0
PIXEL_MEAN = 127.5
PIXEL_SCALE = 0.0078125
"""MTCNN's input normalisation: (pixel - PIXEL_MEAN) * PIXEL_SCALE, pixels on the 0..255 scale."""

PNET_SIZE = 12
"""Side of the window each PNet output cell sees; the pyramid stops when the image gets smaller than this."""
PNET_STRIDE = 2
"""Pixels between neighbouring PNet windows (its one 2x2 pooling)."""
RNET_SIZE = 24
ONET_SIZE = 48
MIN_FACE_SIZE = 20
"""Smallest face side (pixels) searched for: the pyramid's first scale maps it onto one PNet window."""
PYRAMID_FACTOR = 0.709
"""Scale ratio between pyramid levels (about 1/sqrt(2): half the area)."""
PNET_THRESHOLD = 0.6
RNET_THRESHOLD = 0.7
ONET_THRESHOLD = 0.7
"""Face probabilities a window needs to pass each stage."""
PNET_LEVEL_NMS_IOU = 0.5
"""Non-maximum suppression within one pyramid level."""
PNET_NMS_IOU = 0.7
RNET_NMS_IOU = 0.7
ONET_NMS_MIN_OVERLAP = 0.7
"""The last suppression divides the intersection by the smaller box's area, so a box mostly inside a better-scored
one is dropped (also when it is much larger)."""
FACE_CHANNEL = 1
"""Softmax channel of the face class in every network's classification output (channel 0 is background)."""


class PNet(nn.Module):
    """Proposal network, fully convolutional: one output cell per 12x12 window, PNET_STRIDE pixels apart.

    ``forward``: normalised images (N, 3, H, W) -> box offsets (N, 4, H', W') and face probability (N, H', W'), with
    H' = ceil((H - 2) / 2) - 4 (1 for a 12x12 input). Offsets are (dx0, dy0, dx1, dy1) in window sides.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), self.conv4_1(x).softmax(1)[:, FACE_CHANNEL]


def _flatten_transposed(x: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, W * H * C) in the (width, height, channel) order the converted Caffe weights expect."""
    return x.permute(0, 3, 2, 1).flatten(1)


class RNet(nn.Module):
    """Refinement network. ``forward``: normalised crops (N, 3, 24, 24) -> box offsets (N, 4), face probability (N,)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.dense4(_flatten_transposed(self.prelu3(self.conv3(x)))))
        return self.dense5_2(x), self.dense5_1(x).softmax(1)[:, FACE_CHANNEL]


class ONet(nn.Module):
    """Output network. ``forward``: normalised crops (N, 3, 48, 48) -> box offsets (N, 4), landmarks (N, 5, 2) as
    (x, y) fractions of the crop's width and height, face probability (N,)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 2 * NUM_LANDMARKS)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_flatten_transposed(self.prelu4(self.conv4(x)))))
        # The landmark head gives the five x fractions, then the five y fractions.
        points = self.dense6_3(x).unflatten(1, (2, NUM_LANDMARKS)).transpose(1, 2)
        return self.dense6_2(x), points, self.dense6_1(x).softmax(1)[:, FACE_CHANNEL]


@dataclass(frozen=True)
class FaceLandmarks:
    """One detected face, in pixels of the image it was found in.

    box: (4,) x0, y0, x1, y1. points: (5, 2) x, y of the left eye, right eye, nose tip, left mouth corner, right
    mouth corner (left/right as seen in the image). score: ONet's face probability.
    """

    box: Tensor
    points: Tensor
    score: float


def _weights_folder() -> Path | None:
    """facenet-pytorch's data folder, found without importing the package; None when it is not installed."""
    try:
        spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FOLDER


def landmark_detector_available() -> bool:
    """Whether MTCNN's weight files are installed, so :class:`LandmarkDetector` can be built."""
    folder = _weights_folder()
    return folder is not None and all((folder / name).is_file() for name in WEIGHT_FILES.values())


def load_mtcnn_weights() -> dict[str, dict[str, Tensor]]:
    """The state dicts of PNet, RNet and ONet (keyed "pnet", "rnet", "onet"), loaded on the CPU.

    Raises :class:`InputError` with the install command when facenet-pytorch or one of its weight files is missing.
    """
    folder = _weights_folder()
    if folder is None:
        raise InputError(
            f"5-point face landmarks need MTCNN's weights from the facenet-pytorch package, which is not installed: "
            f"{INSTALL_COMMAND} (weights only; {FALLBACK_HINT})"
        )
    missing = [name for name in WEIGHT_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise InputError(
            f"MTCNN weight file(s) {', '.join(missing)} missing from {folder} (broken facenet-pytorch install): "
            f"reinstall with {INSTALL_COMMAND} --force-reinstall ({FALLBACK_HINT})"
        )
    weights = {}
    for net, name in WEIGHT_FILES.items():
        path = folder / name
        try:
            weights[net] = torch.load(path, weights_only=True, map_location="cpu")
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
            raise InputError(
                f"MTCNN weight file {path} cannot be read ({type(error).__name__}): reinstall with {INSTALL_COMMAND} "
                f"--force-reinstall ({FALLBACK_HINT})"
            ) from error
    return weights


def _normalise(pixels: Tensor) -> Tensor:
    """Pixels on the 0..255 scale -> MTCNN's input range (about [-1, 1])."""
    return (pixels - PIXEL_MEAN) * PIXEL_SCALE


def _box_sizes(boxes: Tensor) -> Tensor:
    """(K, 4) boxes -> (K, 4) widths and heights laid out as (w, h, w, h), to scale per-corner offsets."""
    return (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)


def _apply_offsets(boxes: Tensor, offsets: Tensor) -> Tensor:
    """Move each box corner by its regressed offset (K, 4), measured in box widths (x) and heights (y)."""
    return boxes + offsets * _box_sizes(boxes)


def _square(boxes: Tensor) -> Tensor:
    """Grow each box (K, 4) about its centre to a square whose side is its longer side."""
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).amax(1, keepdim=True) / 2
    return torch.cat([centres - half, centres + half], 1)


def _nms_min_overlap(boxes: Tensor, scores: Tensor, threshold: float) -> Tensor:
    """Greedy non-maximum suppression where overlap = intersection / smaller area; returns kept indices (K',).

    Greedy NMS keeps box j unless a kept, better-scored box overlaps it. That rule is a unique fixed point, found
    by iterating it on all boxes at once: round r settles the r best boxes, and it usually converges in a few.
    """
    order = scores.argsort(descending=True)
    boxes = boxes[order]
    corner_min = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    corner_max = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    intersection = (corner_max - corner_min).clamp(min=0).prod(-1)
    area = (boxes[:, 2:] - boxes[:, :2]).prod(-1)
    overlap = intersection / torch.minimum(area[:, None], area[None, :])
    suppresses = (overlap > threshold).triu(diagonal=1)  # [i, j]: better box i would suppress box j
    keep = torch.ones(len(boxes), dtype=torch.bool, device=boxes.device)
    for _ in range(len(boxes)):
        updated = ~(suppresses & keep[:, None]).any(0)
        if torch.equal(updated, keep):
            break
        keep = updated
    return order[keep]


def _crop(pixels: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Square crops of ``boxes`` (K, 4) from ``pixels`` (1, 3, H, W), resized to (K, 3, size, size) by averaging
    bilinear samples over each output pixel; outside the image reads as black, as in the original MTCNN."""
    return roi_align(pixels, [boxes], output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)


class LandmarkDetector:
    """MTCNN face detector with five landmarks; build once (it loads the weights) and reuse.

    Raises :class:`InputError` when the weights (facenet-pytorch) are not installed.
    """

    def __init__(self, device: torch.device | str = "cpu", min_face_size: int = MIN_FACE_SIZE) -> None:
        weights = load_mtcnn_weights()
        self.device = torch.device(device)
        self.min_face_size = min_face_size
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        for name, net in (("pnet", self.pnet), ("rnet", self.rnet), ("onet", self.onet)):
            net.load_state_dict(weights[name], strict=True)
            net.eval().requires_grad_(False).to(self.device)

    @torch.no_grad()
    def detect(self, image: Tensor, name: str = "the image") -> FaceLandmarks:
        """The largest face that passes every stage of the cascade, in ``image`` (3, H, W) RGB in [-1, 1].

        The largest rather than the most confident: a portrait's subject is the biggest face, and every returned
        face already passed ONet's threshold. Raises :class:`InputError` naming ``name`` when no face is found.
        """
        faces = self.detect_all(image)
        if not faces:
            raise InputError(
                f"no face found in {name}; use a clearer, well-lit frontal photo in which the face is at least "
                f"{self.min_face_size} pixels wide"
            )
        return faces[0]

    @torch.no_grad()
    def detect_all(self, image: Tensor) -> list[FaceLandmarks]:
        """Every face found in ``image`` (3, H, W) RGB in [-1, 1], largest box first (CPU tensors)."""
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"expected an RGB image of shape (3, H, W), got {tuple(image.shape)}")
        pixels = ((image.to(self.device, torch.float32) + 1) * (PIXEL_MAX / 2)).clamp(0, PIXEL_MAX)[None]
        boxes = self._propose(pixels)
        boxes = self._refine(pixels, boxes)
        boxes, points, scores = self._output(pixels, boxes)
        order = (boxes[:, 2:] - boxes[:, :2]).prod(1).argsort(descending=True).tolist()
        boxes, points, scores = boxes.cpu(), points.cpu(), scores.cpu()
        return [FaceLandmarks(boxes[i], points[i], float(scores[i])) for i in order]

    def _propose(self, pixels: Tensor) -> Tensor:
        """Stage 1: PNet over an image pyramid (1, 3, H, W) -> square candidate boxes (K, 4)."""
        height, width = pixels.shape[-2:]
        scale = PNET_SIZE / self.min_face_size
        found: list[tuple[Tensor, Tensor, Tensor]] = []
        while min(height, width) * scale >= PNET_SIZE:
            size = (math.ceil(height * scale), math.ceil(width * scale))
            level = F.interpolate(pixels, size=size, mode="area")
            offsets, probability = self.pnet(_normalise(level))
            rows, cols = (probability[0] >= PNET_THRESHOLD).nonzero(as_tuple=True)
            # Each output cell's window, mapped back through this level's actual (rounded) x and y scales.
            window = torch.stack([cols, rows, cols, rows], 1).float() * PNET_STRIDE
            window[:, 2:] += PNET_SIZE
            boxes = window / torch.tensor([size[1] / width, size[0] / height] * 2, device=pixels.device)
            scores = probability[0, rows, cols]
            keep = nms(boxes, scores, PNET_LEVEL_NMS_IOU)
            found.append((boxes[keep], scores[keep], offsets[0, :, rows[keep], cols[keep]].T))
            scale *= PYRAMID_FACTOR
        if not found:
            return pixels.new_zeros(0, 4)
        boxes, scores, offsets = (torch.cat(parts) for parts in zip(*found, strict=True))
        keep = nms(boxes, scores, PNET_NMS_IOU)
        return _square(_apply_offsets(boxes[keep], offsets[keep]))

    def _refine(self, pixels: Tensor, boxes: Tensor) -> Tensor:
        """Stage 2: RNet rescores and adjusts candidates (K, 4) -> square boxes (K', 4)."""
        boxes = boxes[(boxes[:, 2:] > boxes[:, :2]).all(1)]
        if len(boxes) == 0:
            return boxes
        offsets, scores = self.rnet(_normalise(_crop(pixels, boxes, RNET_SIZE)))
        passed = scores > RNET_THRESHOLD
        boxes, offsets, scores = boxes[passed], offsets[passed], scores[passed]
        keep = nms(boxes, scores, RNET_NMS_IOU)
        return _square(_apply_offsets(boxes[keep], offsets[keep]))

    def _output(self, pixels: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Stage 3: ONet on boxes (K, 4) -> final boxes (F, 4), landmarks (F, 5, 2), scores (F,)."""
        boxes = boxes[(boxes[:, 2:] > boxes[:, :2]).all(1)]
        if len(boxes) == 0:
            return boxes, boxes.new_zeros(0, NUM_LANDMARKS, 2), boxes.new_zeros(0)
        offsets, fractions, scores = self.onet(_normalise(_crop(pixels, boxes, ONET_SIZE)))
        passed = scores > ONET_THRESHOLD
        boxes, offsets, fractions, scores = boxes[passed], offsets[passed], fractions[passed], scores[passed]
        # Landmarks are fractions of the box ONet saw, before its own box offsets are applied.
        points = boxes[:, None, :2] + fractions * (boxes[:, None, 2:] - boxes[:, None, :2])
        boxes = _apply_offsets(boxes, offsets)
        keep = _nms_min_overlap(boxes, scores, ONET_NMS_MIN_OVERLAP)
        return boxes[keep], points[keep], scores[keep]
