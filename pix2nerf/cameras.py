"""Cameras in EG3D's convention: 25-d labels, look-at poses, pose priors, mirroring and rays.

Conventions (one for the whole package):

* World frame is y-up; a face looks toward +z and its pivot sits at ``FACE_PIVOT``.
* ``cam2world`` is an OpenCV camera-to-world matrix (camera x right, y down, z forward).
* Intrinsics are normalised by image size: a pixel coordinate ``u`` in [0, 1] across the width,
  ``v`` in [0, 1] down the height, so one matrix serves every resolution.
* A camera label is ``cam2world.flatten()`` (16) followed by ``intrinsics.flatten()`` (9): 25 floats.
* ``yaw`` is the azimuth of the camera around the world y axis (0 = frontal, positive = camera on +x);
  ``pitch`` is its elevation (positive = camera above the face, looking down). Both in radians.
  EG3D's sampler angles ``(h, v)`` convert exactly with :func:`yaw_pitch_from_eg3d`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from kornia.geometry.linalg import transform_points
from torch import Tensor

LABEL_DIM = 25
"""Length of a camera label: 16 (cam2world) + 9 (normalised intrinsics)."""

FACE_RADIUS = 2.7
"""Distance of the camera from the world origin for faces (EG3D FFHQ)."""

FACE_PIVOT = (0.0, 0.0, 0.2)
"""Point the face cameras look at (EG3D FFHQ)."""

FACE_FOCAL = 4.2647
"""Normalised focal length of the face cameras: 13.37 degrees horizontal (EG3D quotes the 18.84 degree diagonal)."""

PRINCIPAL_POINT = (0.5, 0.5)
"""Normalised principal point: the image centre."""

WORLD_UP = (0.0, 1.0, 0.0)

_EG3D_V_EPS = 1e-5
"""EG3D clamps its vertical angle into [eps, pi - eps] before converting it."""


@dataclass
class Cameras:
    """A batch of pinhole cameras.

    Attributes:
        cam2world: (B, 4, 4) OpenCV camera-to-world rigid transforms.
        intrinsics: (B, 3, 3) intrinsics normalised by image size.
    """

    cam2world: Tensor
    intrinsics: Tensor

    def __post_init__(self) -> None:
        if self.cam2world.ndim != 3 or self.cam2world.shape[-2:] != (4, 4):
            raise ValueError(f"cam2world must have shape (B, 4, 4), got {tuple(self.cam2world.shape)}")
        if self.intrinsics.shape != (self.cam2world.shape[0], 3, 3):
            raise ValueError(
                f"intrinsics must have shape ({self.cam2world.shape[0]}, 3, 3) to match cam2world, "
                f"got {tuple(self.intrinsics.shape)}"
            )

    def __len__(self) -> int:
        return self.cam2world.shape[0]

    def __getitem__(self, index: int | slice | Tensor) -> Cameras:
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Cameras(self.cam2world[index], self.intrinsics[index])

    @property
    def device(self) -> torch.device:
        return self.cam2world.device

    @property
    def origins(self) -> Tensor:
        """Camera centres in world space, (B, 3)."""
        return self.cam2world[:, :3, 3]

    @property
    def forward(self) -> Tensor:
        """Unit viewing directions (camera +z) in world space, (B, 3)."""
        return self.cam2world[:, :3, 2]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Cameras:
        return Cameras(self.cam2world.to(device, dtype), self.intrinsics.to(device, dtype))

    def label(self) -> Tensor:
        """The EG3D camera label, (B, 25)."""
        return torch.cat([self.cam2world.flatten(1), self.intrinsics.flatten(1)], dim=1)

    @classmethod
    def from_label(cls, label: Tensor) -> Cameras:
        """Split EG3D labels (B, 25) (or a single (25,) label) into a camera batch."""
        if label.ndim == 1:
            label = label[None]
        if label.ndim != 2 or label.shape[1] != LABEL_DIM:
            raise ValueError(
                f"a camera label has {LABEL_DIM} values (16 cam2world + 9 intrinsics); "
                f"got a tensor of shape {tuple(label.shape)}"
            )
        return cls(label[:, :16].reshape(-1, 4, 4), label[:, 16:].reshape(-1, 3, 3))

    def world_to_camera(self, points: Tensor) -> Tensor:
        """Transform world points (B, N, 3) into each camera's frame, (B, N, 3)."""
        return transform_points(torch.linalg.inv(self.cam2world), points)

    def project(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Project world points (B, N, 3) to normalised pixel coordinates.

        Returns:
            uv: (B, N, 2) in [0, 1] inside the image (x across, y down).
            z_depth: (B, N, 1) distance along the camera's z axis (negative behind the camera).
        """
        points_cam = self.world_to_camera(points)
        z = points_cam[..., 2:3]
        pixels = points_cam @ self.intrinsics.transpose(1, 2)
        return pixels[..., :2] / z, z


def intrinsics_matrix(
    focal: float | Tensor = FACE_FOCAL,
    principal: tuple[float, float] = PRINCIPAL_POINT,
    batch_size: int = 1,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Normalised pinhole intrinsics, (B, 3, 3). ``focal`` is a scalar or a (B,) tensor."""
    focal = torch.as_tensor(focal, device=device, dtype=dtype).expand(batch_size)
    matrix = torch.zeros(batch_size, 3, 3, device=device, dtype=dtype)
    matrix[:, 0, 0] = focal
    matrix[:, 1, 1] = focal
    matrix[:, 0, 2] = principal[0]
    matrix[:, 1, 2] = principal[1]
    matrix[:, 2, 2] = 1.0
    return matrix


def focal_from_fov(fov_degrees: float | Tensor) -> float | Tensor:
    """Normalised focal length for a full field of view in degrees: ``1 / (2 tan(fov / 2))``."""
    if isinstance(fov_degrees, Tensor):
        return 0.5 / torch.tan(torch.deg2rad(fov_degrees) / 2.0)
    return 0.5 / math.tan(math.radians(fov_degrees) / 2.0)


def fov_from_focal(focal: float | Tensor) -> float | Tensor:
    """Full field of view in degrees for a normalised focal length (inverse of :func:`focal_from_fov`)."""
    if isinstance(focal, Tensor):
        return torch.rad2deg(2.0 * torch.atan(0.5 / focal))
    return math.degrees(2.0 * math.atan(0.5 / focal))


def look_at_matrix(origins: Tensor, target: Tensor, up: tuple[float, float, float] = WORLD_UP) -> Tensor:
    """OpenCV cam2world matrices (B, 4, 4) for cameras at ``origins`` (B, 3) looking at ``target`` (B, 3) or (3,).

    The camera's x axis is horizontal (no roll) and its y axis points "down" relative to ``up``.
    Same construction as EG3D's ``create_cam2world_matrix``; undefined when looking straight along ``up``.
    """
    forward = torch.nn.functional.normalize(target.expand_as(origins) - origins, dim=-1)
    up_world = torch.tensor(up, device=origins.device, dtype=origins.dtype).expand_as(forward)
    right = -torch.nn.functional.normalize(torch.linalg.cross(up_world, forward), dim=-1)
    down = torch.nn.functional.normalize(torch.linalg.cross(forward, right), dim=-1)
    cam2world = torch.eye(4, device=origins.device, dtype=origins.dtype).repeat(origins.shape[0], 1, 1)
    cam2world[:, :3, :3] = torch.stack([right, down, forward], dim=-1)
    cam2world[:, :3, 3] = origins
    return cam2world


def _batch(value: float | Tensor, dtype: torch.dtype, device: torch.device | str | None) -> Tensor:
    return torch.as_tensor(value, dtype=dtype, device=device).reshape(-1)


def look_at(
    yaw: float | Tensor,
    pitch: float | Tensor,
    radius: float | Tensor = FACE_RADIUS,
    target: tuple[float, float, float] | Tensor = FACE_PIVOT,
    focal: float | Tensor = FACE_FOCAL,
    principal: tuple[float, float] = PRINCIPAL_POINT,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Cameras:
    """Cameras on a sphere of ``radius`` around the world origin, looking at ``target``.

    Args:
        yaw: (B,) or scalar azimuth in radians (0 = frontal, camera on +z; positive = camera on +x).
        pitch: (B,) or scalar elevation in radians (positive = camera above).
        radius: distance from the world origin (EG3D places cameras around the origin, not the pivot).
        target: the look-at point, (3,) or (B, 3).
        focal: normalised focal length, scalar or (B,).
    """
    if isinstance(yaw, Tensor):
        device = device or yaw.device
    yaw, pitch, radius = (_batch(v, dtype, device) for v in (yaw, pitch, radius))
    batch_size = max(yaw.shape[0], pitch.shape[0], radius.shape[0])
    yaw, pitch, radius = (v.expand(batch_size) for v in (yaw, pitch, radius))
    origins = radius[:, None] * torch.stack(
        [torch.cos(pitch) * torch.sin(yaw), torch.sin(pitch), torch.cos(pitch) * torch.cos(yaw)], dim=-1
    )
    target = torch.as_tensor(target, dtype=dtype, device=origins.device)
    cam2world = look_at_matrix(origins, target)
    return Cameras(cam2world, intrinsics_matrix(focal, principal, batch_size, origins.device, dtype))


def yaw_pitch(cameras: Cameras) -> Tensor:
    """Yaw and pitch (B, 2) of camera centres around the world origin (inverse of :func:`look_at`)."""
    x, y, z = cameras.origins.unbind(-1)
    radius = cameras.origins.norm(dim=-1)
    return torch.stack([torch.atan2(x, z), torch.asin((y / radius).clamp(-1.0, 1.0))], dim=-1)


def yaw_pitch_from_eg3d(horizontal: float | Tensor, vertical: float | Tensor) -> tuple[Tensor, Tensor]:
    """Convert EG3D ``LookAtPoseSampler`` angles (h, v) to our yaw and pitch.

    EG3D places the camera at azimuth ``h - pi/2`` and polar angle ``arccos(1 - 2 v / pi)``
    (with ``v`` clamped into (0, pi)), so ``pitch = arcsin(1 - 2 v / pi)``.
    """
    horizontal = torch.as_tensor(horizontal, dtype=torch.float64)
    vertical = torch.as_tensor(vertical, dtype=torch.float64).clamp(_EG3D_V_EPS, math.pi - _EG3D_V_EPS)
    return horizontal - math.pi / 2, torch.asin(1.0 - 2.0 * vertical / math.pi)


def eg3d_from_yaw_pitch(yaw: float | Tensor, pitch: float | Tensor) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`yaw_pitch_from_eg3d`: our yaw and pitch to EG3D's (h, v)."""
    yaw = torch.as_tensor(yaw, dtype=torch.float64)
    pitch = torch.as_tensor(pitch, dtype=torch.float64)
    return yaw + math.pi / 2, (1.0 - torch.sin(pitch)) * math.pi / 2


_MIRROR_X = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))


def flip_yaw(cameras: Cameras) -> Cameras:
    """Mirror cameras across the world's x = 0 plane, as EG3D does for x-flipped images.

    The mirrored camera sees the mirrored scene as the horizontally flipped image: a point that
    projects to ``(u, v)`` in the original projects, once mirrored, to ``(1 - u, v)`` (for a centred
    principal point). ``cam2world -> S cam2world S`` with ``S = diag(-1, 1, 1, 1)``; intrinsics unchanged.
    """
    mirror = _MIRROR_X.to(cameras.cam2world)
    return Cameras(mirror @ cameras.cam2world @ mirror, cameras.intrinsics.clone())


def mirror_yaw_pitch(yaw_pitch: Tensor) -> Tensor:
    """(yaw, pitch) (..., 2) of the mirrored views on a prior's sphere (its pivot lies on the x = 0 plane): the
    render there of the mirrored scene is the horizontally flipped image (:func:`flip_yaw`)."""
    return yaw_pitch * yaw_pitch.new_tensor([-1.0, 1.0])


@dataclass(frozen=True)
class PosePrior:
    """Distribution of camera yaw and pitch (radians) around the frontal view.

    ``kind="gaussian"``: yaw ~ N(yaw_mean, yaw_spread), pitch ~ N(pitch_mean, pitch_spread).
    ``kind="uniform"``: yaw ~ U(yaw_mean +- yaw_spread), pitch ~ U(pitch_mean +- pitch_spread).
    Defaults are the EG3D/FFHQ Gaussian prior (standard deviations 0.3 and 0.155 rad).
    """

    kind: Literal["gaussian", "uniform"] = "gaussian"
    yaw_mean: float = 0.0
    yaw_spread: float = 0.3
    pitch_mean: float = 0.0
    pitch_spread: float = 0.155
    radius: float = FACE_RADIUS
    target: tuple[float, float, float] = FACE_PIVOT
    focal: float = FACE_FOCAL

    def __post_init__(self) -> None:
        if self.kind not in ("gaussian", "uniform"):
            raise ValueError(f"unknown pose prior kind {self.kind!r}; use 'gaussian' or 'uniform'")
        numbers = {name: getattr(self, name) for name in ("yaw_mean", "yaw_spread", "pitch_mean", "pitch_spread")}
        numbers.update(radius=self.radius, focal=self.focal)
        if len(self.target) != 3:
            raise ValueError(f"the pose prior's target is a 3D point, got {self.target!r:.80}")
        numbers.update({f"target[{i}]": value for i, value in enumerate(self.target)})
        for name, value in numbers.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"pose prior {name} must be a finite number, got {value!r:.80}")
        if self.yaw_spread < 0 or self.pitch_spread < 0:
            raise ValueError("pose prior spreads must be non-negative")
        if self.radius <= 0 or self.focal <= 0:
            raise ValueError(f"the pose prior's radius and focal must be positive, got {self.radius} and {self.focal}")
        object.__setattr__(self, "target", tuple(float(v) for v in self.target))  # lists from YAML/JSON


FACE_PRIOR = PosePrior()
"""EG3D's FFHQ camera prior: Gaussian yaw (0.3 rad) and pitch (0.155 rad) around the frontal view."""


def sample_yaw_pitch(
    batch_size: int,
    prior: PosePrior = FACE_PRIOR,
    rng: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Draw (B, 2) yaw/pitch pairs from ``prior``; pitch is kept strictly inside (-pi/2, pi/2)."""
    if prior.kind == "gaussian":
        noise = torch.randn(batch_size, 2, generator=rng)
    else:
        noise = torch.rand(batch_size, 2, generator=rng) * 2.0 - 1.0
    mean = torch.tensor([prior.yaw_mean, prior.pitch_mean])
    spread = torch.tensor([prior.yaw_spread, prior.pitch_spread])
    angles = mean + noise * spread
    limit = math.pi / 2 - _EG3D_V_EPS
    angles[:, 1] = angles[:, 1].clamp(-limit, limit)
    return angles.to(device)


def sample_poses(
    batch_size: int,
    prior: PosePrior = FACE_PRIOR,
    rng: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Cameras:
    """Sample a batch of cameras from ``prior`` (deterministic for a seeded ``rng``)."""
    return prior_cameras(sample_yaw_pitch(batch_size, prior, rng, device), prior)


def prior_cameras(angles: Tensor, prior: PosePrior = FACE_PRIOR) -> Cameras:
    """Cameras at (yaw, pitch) angles (B, 2) with the prior's radius, target and focal length."""
    return look_at(angles[:, 0], angles[:, 1], prior.radius, prior.target, prior.focal, device=angles.device)


def pixel_centers(
    resolution: int | tuple[int, int], device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Normalised pixel-centre coordinates (H*W, 2), row-major (index = y * W + x), values in (0, 1)."""
    height, width = (resolution, resolution) if isinstance(resolution, int) else resolution
    ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) / width
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2)


def rays(cameras: Cameras, resolution: int | tuple[int, int]) -> tuple[Tensor, Tensor]:
    """World-space rays through every pixel centre.

    Args:
        cameras: B cameras.
        resolution: ``S`` for an S x S image or ``(H, W)``.

    Returns:
        origins: (B, R, 3) camera centres repeated per ray, R = H * W in row-major order.
        directions: (B, R, 3) unit directions.
    """
    uv = pixel_centers(resolution, cameras.device, cameras.cam2world.dtype)
    pixels = torch.cat([uv, torch.ones_like(uv[:, :1])], dim=-1)  # (R, 3) homogeneous
    camera_dirs = pixels @ torch.linalg.inv(cameras.intrinsics).transpose(1, 2)  # (B, R, 3)
    directions = camera_dirs @ cameras.cam2world[:, :3, :3].transpose(1, 2)
    directions = torch.nn.functional.normalize(directions, dim=-1)
    origins = cameras.origins[:, None, :].expand_as(directions)
    return origins, directions


def z_depth(distance: Tensor, directions: Tensor, cameras: Cameras) -> Tensor:
    """Convert distances along unit rays (B, R, 1) into depth along each camera's z axis (B, R, 1)."""
    cos_angle = (directions * cameras.forward[:, None, :]).sum(dim=-1, keepdim=True)
    return distance * cos_angle
