"""The batch that the data modules build and the training systems read: one typed owner of its keys and shapes."""

from __future__ import annotations

from typing import Required, TypedDict

from torch import Tensor


class FaceBatch(TypedDict, total=False):
    """A collated batch of B face images (K: extra exact views per item, synthetic heads with ``target_views``).

    Every source gives ``image`` and ``camera``; the others are there when the source has them (synthetic heads
    have all; EG3D folders have ``semantics`` and ``depth`` when asked).
    """

    image: Required[Tensor]
    """(B, 3, H, W) in [-1, 1]."""
    camera: Required[Tensor]
    """(B, 25) EG3D camera labels (cam2world, then normalised intrinsics)."""
    yaw_pitch: Tensor
    """(B, 2) exact camera angles in radians (synthetic heads)."""
    semantics: Tensor
    """(B, H, W) int64 CelebAMask-HQ class ids."""
    depth: Tensor
    """(B, 1, H, W) z-depth, +inf on background."""
    mask: Tensor
    """(B, 1, H, W) bool foreground."""
    identity: Tensor
    """(B,) int64 identity of each head (synthetic heads)."""
    target_image: Tensor
    """(B, K, 3, H, W) the same heads from K other cameras."""
    target_camera: Tensor
    """(B, K, 25)."""
    target_yaw_pitch: Tensor
    """(B, K, 2)."""
    target_depth: Tensor
    """(B, K, 1, H, W)."""
    target_mask: Tensor
    """(B, K, 1, H, W)."""
    target_semantics: Tensor
    """(B, K, H, W)."""


BATCH_KEYS: tuple[str, ...] = tuple(FaceBatch.__annotations__)
"""Every key a batch may hold: what collation keeps of the data sets' items."""
