"""Synthetic heads as a data set: procedural identities rendered on the fly from known cameras.

The training split draws a camera from a pose prior for every index; the held-out test split renders
each of its identities from a fixed yaw x pitch grid, so novel-view quality, depth error and pose
error can be scored against exact ground truth. Identity seeds of the two splits never overlap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset

from pix2nerf.cameras import FACE_PRIOR, Cameras, PosePrior, look_at, sample_yaw_pitch
from pix2nerf.data.heads import HeadImages, head_landmarks, render_heads, sample_heads

TEST_SEED_OFFSET = 10_000_000
"""Identity seeds of the held-out test split start here; training seeds are 0 .. num_identities - 1."""

MAX_TRAIN_IDENTITIES = TEST_SEED_OFFSET
TARGET_SEED_OFFSET = 2**31
"""Offsets the camera seeds of target views from those of source views (indices stay far below it)."""

EVAL_YAWS = tuple(math.radians(a) for a in (-30.0, -15.0, 0.0, 15.0, 30.0))
EVAL_PITCHES = tuple(math.radians(a) for a in (-10.0, 0.0, 10.0))
"""The fixed evaluation grid of the test split (radians)."""


@dataclass(frozen=True)
class HeadView:
    """Which head, seen from where: identity seed and camera yaw/pitch (radians)."""

    identity: int
    yaw: float
    pitch: float


def view_cameras(views: Sequence[HeadView], prior: PosePrior) -> Cameras:
    """The cameras of a batch of views: their yaw and pitch on ``prior``'s sphere, with its pivot and focal."""
    yaw = torch.tensor([v.yaw for v in views])
    pitch = torch.tensor([v.pitch for v in views])
    return look_at(yaw, pitch, prior.radius, prior.target, prior.focal)


def render_views(
    views: Sequence[HeadView], resolution: int, prior: PosePrior, random_light: bool
) -> tuple[HeadImages, Cameras]:
    """Render a batch of views (one sphere-tracing pass for all of them)."""
    cameras = view_cameras(views, prior)
    heads = sample_heads([v.identity for v in views], random_light)
    return render_heads(heads, cameras, resolution), cameras


def view_landmarks(views: Sequence[HeadView], resolution: int, prior: PosePrior) -> Tensor:
    """Exact 2D landmarks (N, 5, 2) of N views rendered at ``resolution``: :func:`head_landmarks` projected with each
    view's camera, in continuous pixels (x right, y down; pixel (row i, column j) covers [j, j + 1) x [i, i + 1)).
    Nothing is rendered; a landmark hidden in the view (the far eye of a turned head) is still where it projects."""
    heads = sample_heads([v.identity for v in views], random_light=False)  # the light never moves the geometry
    uv, _ = view_cameras(views, prior).project(head_landmarks(heads))
    return uv * resolution


class SyntheticHeads(Dataset):
    """Procedural heads rendered on the fly; item ``i`` is always the same image.

    Args:
        split: ``"train"`` (camera from ``prior`` per index) or ``"test"`` (identity x fixed view grid).
        resolution: image size (square).
        num_identities: identities in the split (train seeds 0..N-1, test seeds from ``TEST_SEED_OFFSET``).
        length: items per epoch for the training split (identities repeat, cameras do not); default N.
        prior: camera distribution of the training split (radius, pivot and focal also set the test cameras).
        eval_yaws, eval_pitches: the test split's view grid (radians).
        random_light: a light direction and ambient level per identity (else one fixed light).
        seed: varies the training cameras (not the identities).
        target_views: K extra views of each training item's identity, from cameras drawn independently from
            ``prior`` (multi-view supervision; 0: none). The test split already has every view.

    Items are dicts: ``image`` (3, H, W) in [-1, 1]; ``camera`` (25,) EG3D label; ``yaw_pitch`` (2,);
    ``depth`` (1, H, W) z-depth, +inf on background; ``mask`` (1, H, W) bool; ``semantics`` (H, W) int64
    CelebAMask-HQ ids; ``identity`` and ``view`` ints (view is -1 in the training split). With ``target_views``
    K > 0, training items also carry ``target_image`` (K, 3, H, W), ``target_camera`` (K, 25),
    ``target_yaw_pitch`` (K, 2), ``target_depth`` (K, 1, H, W), ``target_mask`` (K, 1, H, W) and
    ``target_semantics`` (K, H, W): the same head
    (same light) seen from the K target cameras, exact like the source view.
    A ``DataLoader`` fetches a whole batch with one batched render (``__getitems__``).
    """

    def __init__(
        self,
        split: Literal["train", "test"] = "train",
        resolution: int = 64,
        num_identities: int = 10_000,
        length: int | None = None,
        prior: PosePrior = FACE_PRIOR,
        eval_yaws: Sequence[float] = EVAL_YAWS,
        eval_pitches: Sequence[float] = EVAL_PITCHES,
        random_light: bool = True,
        seed: int = 0,
        target_views: int = 0,
    ) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"unknown split {split!r}; use 'train' or 'test'")
        if not 0 < num_identities <= MAX_TRAIN_IDENTITIES:
            raise ValueError(f"num_identities must be in 1..{MAX_TRAIN_IDENTITIES}, got {num_identities}")
        if resolution < 8:
            raise ValueError(f"resolution must be at least 8 pixels, got {resolution}")
        if target_views < 0:
            raise ValueError(f"target_views must be >= 0, got {target_views}")
        self.split = split
        self.resolution = resolution
        self.num_identities = num_identities
        self.prior = prior
        self.eval_grid = [(yaw, pitch) for pitch in eval_pitches for yaw in eval_yaws]
        self.random_light = random_light
        self.seed = seed
        self.target_views = target_views if split == "train" else 0
        self.length = length if length is not None else num_identities
        if split == "test":
            self.length = num_identities * len(self.eval_grid)

    def __len__(self) -> int:
        return self.length

    def view(self, index: int) -> HeadView:
        """The identity and camera of item ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        if self.split == "test":
            identity, view = divmod(index, len(self.eval_grid))
            return HeadView(TEST_SEED_OFFSET + identity, *self.eval_grid[view])
        rng = torch.Generator().manual_seed(self.seed * 2**32 + index)
        yaw, pitch = sample_yaw_pitch(1, self.prior, rng)[0].tolist()
        return HeadView(index % self.num_identities, yaw, pitch)

    def target_views_of(self, index: int) -> list[HeadView]:
        """The ``target_views`` extra views of training item ``index``: its identity from other prior cameras."""
        source = self.view(index)
        rng = torch.Generator().manual_seed(self.seed * 2**32 + index + TARGET_SEED_OFFSET)
        angles = sample_yaw_pitch(self.target_views, self.prior, rng).tolist()
        return [HeadView(source.identity, yaw, pitch) for yaw, pitch in angles]

    def landmarks(self, indices: Sequence[int]) -> Tensor:
        """Exact 2D landmarks (N, 5, 2) of items ``indices`` in their images' pixels (see :func:`view_landmarks`);
        cheap: nothing is rendered."""
        return view_landmarks([self.view(int(i)) for i in indices], self.resolution, self.prior)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, torch.Tensor | int]]:
        views = [self.view(int(i)) for i in indices]
        targets = [view for i in indices for view in self.target_views_of(int(i))] if self.target_views else []
        out, cameras = render_views(views + targets, self.resolution, self.prior, self.random_light)
        labels = cameras.label()
        items: list[dict[str, torch.Tensor | int]] = [
            {
                "image": out.image[k],
                "camera": labels[k],
                "yaw_pitch": torch.tensor([view.yaw, view.pitch]),
                "depth": out.depth[k],
                "mask": out.mask[k],
                "semantics": out.semantics[k],
                "identity": view.identity,
                "view": int(index) % len(self.eval_grid) if self.split == "test" else -1,
            }
            for k, (index, view) in enumerate(zip(indices, views, strict=True))
        ]
        count = self.target_views
        for k, item in enumerate(items if count else []):
            own = targets[k * count : (k + 1) * count]
            rows = slice(len(views) + k * count, len(views) + (k + 1) * count)
            item.update(
                {
                    "target_image": out.image[rows],
                    "target_camera": labels[rows],
                    "target_yaw_pitch": torch.tensor([[v.yaw, v.pitch] for v in own]),
                    "target_depth": out.depth[rows],
                    "target_mask": out.mask[rows],
                    "target_semantics": out.semantics[rows],
                }
            )
        return items
