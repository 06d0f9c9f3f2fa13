"""Camera paths for rendering: (N, 2) yaw/pitch angles in radians on the model's camera sphere.

Angles are absolute (0, 0 is frontal); :func:`around` re-centres a path on an estimated pose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

PathKind = Literal["orbit", "spiral", "sweep", "custom"]


def orbit(num_frames: int, yaw_amplitude: float = 0.5, pitch_amplitude: float = 0.15) -> Tensor:
    """A closed loop: yaw swings left-right once while pitch bobs once (an ellipse around frontal)."""
    phase = torch.arange(num_frames, dtype=torch.float32) * (2 * math.pi / num_frames)
    return torch.stack([yaw_amplitude * torch.sin(phase), pitch_amplitude * torch.cos(phase)], dim=-1)


def spiral(num_frames: int, yaw_amplitude: float = 0.5, pitch_amplitude: float = 0.15, turns: float = 2.0) -> Tensor:
    """A spiral out from frontal: ``turns`` loops whose radius grows linearly to the amplitudes."""
    progress = torch.linspace(0.0, 1.0, num_frames)
    phase = progress * (2 * math.pi * turns)
    return torch.stack([yaw_amplitude * progress * torch.sin(phase), pitch_amplitude * progress * torch.cos(phase)], -1)


def sweep(num_frames: int, yaw_amplitude: float = 0.5, pitch: float = 0.0) -> Tensor:
    """A frontal sweep: yaw from -amplitude to +amplitude at a fixed pitch."""
    yaw = torch.linspace(-yaw_amplitude, yaw_amplitude, num_frames)
    return torch.stack([yaw, torch.full_like(yaw, pitch)], dim=-1)


def custom(yaws: Sequence[float], pitches: Sequence[float]) -> Tensor:
    """Explicit views: one yaw and one pitch per frame (radians)."""
    if len(yaws) != len(pitches) or not yaws:
        raise ValueError(f"a custom path needs equally many yaws and pitches (>0); got {len(yaws)} and {len(pitches)}")
    return torch.tensor([list(yaws), list(pitches)], dtype=torch.float32).T.contiguous()


def grid(num_yaws: int, num_pitches: int, yaw_amplitude: float = 0.5, pitch_amplitude: float = 0.25) -> Tensor:
    """A yaw x pitch grid, row-major (rows: pitch from up to down; columns: yaw from left to right): (P*Y, 2)."""
    yaws = torch.linspace(-yaw_amplitude, yaw_amplitude, num_yaws)
    pitches = torch.linspace(pitch_amplitude, -pitch_amplitude, num_pitches)
    pitch, yaw = torch.meshgrid(pitches, yaws, indexing="ij")
    return torch.stack([yaw.flatten(), pitch.flatten()], dim=-1)


def camera_path(
    kind: PathKind,
    num_frames: int = 48,
    yaw_amplitude: float = 0.5,
    pitch_amplitude: float = 0.15,
    yaws: Sequence[float] = (),
    pitches: Sequence[float] = (),
) -> Tensor:
    """The path named by ``kind`` (see the functions above): (N, 2) yaw/pitch."""
    if kind == "orbit":
        return orbit(num_frames, yaw_amplitude, pitch_amplitude)
    if kind == "spiral":
        return spiral(num_frames, yaw_amplitude, pitch_amplitude)
    if kind == "sweep":
        return sweep(num_frames, yaw_amplitude)
    if kind == "custom":
        return custom(yaws, pitches)
    raise ValueError(f"unknown camera path {kind!r}; use orbit, spiral, sweep or custom")


def around(path: Tensor, center: Tensor) -> Tensor:
    """Shift a path (N, 2) so its frontal view becomes ``center`` (2,) or (1, 2), e.g. an estimated pose."""
    return path + center.reshape(1, 2).to(path)
