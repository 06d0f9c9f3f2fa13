"""Rendering many views of one inverted face, batched within a memory budget."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pix2nerf.cameras import Cameras
from pix2nerf.inference.model import FaceModel
from pix2nerf.networks.generator import Generator
from pix2nerf.rendering import samples_per_ray


@dataclass
class Views:
    """Rendered views (N of them): images (N, 3, H, W) in [-1, 1]; depth and opacity (N, 1, h, w) at the
    neural rendering size; semantics (N, K, h, w) logits or None."""

    images: Tensor
    depth: Tensor
    opacity: Tensor
    semantics: Tensor | None


def views_per_batch(neural_resolution: int, samples_per_ray: float, max_samples: int) -> int:
    """How many views of ``neural_resolution``^2 rays fit in one batch when at most ``max_samples`` ray samples are
    evaluated at once; ``samples_per_ray`` may be fractional (a coarse pass at a lower resolution)."""
    return max(1, int(max_samples // (neural_resolution * neural_resolution * samples_per_ray)))


@torch.no_grad()
def render_cameras(
    generator: Generator,
    w: Tensor,
    cameras: Cameras,
    neural_resolution: int | None = None,
    num_coarse: int | None = None,
    num_importance: int | None = None,
    max_samples: int = 2**22,
    plane_offsets: Tensor | None = None,
    coarse_stride: int | None = None,
) -> Views:
    """Render latent w (1, num_ws, w_dim), with tri-plane offsets (1, 3, C, P, P) or None, from every camera (N of
    them), in batches of at most ``max_samples`` ray samples (about 100 bytes each per feature channel on CPU). The
    field (tri-planes) is computed once.

    ``neural_resolution`` is the neural rendering size, ``coarse_stride`` the coarse pass's (see
    :class:`~pix2nerf.networks.Generator`); None: the generator's.
    """
    neural_resolution = neural_resolution or generator.neural_resolution
    coarse = generator.renderer.num_coarse if num_coarse is None else num_coarse
    fine = generator.renderer.num_importance if num_importance is None else num_importance
    stride = generator.coarse_stride if coarse_stride is None else coarse_stride
    batch = views_per_batch(neural_resolution, samples_per_ray(coarse, fine, stride), max_samples)
    params = generator.field_params(w, noise_mode="const", plane_offsets=plane_offsets)
    parts: list[Views] = []
    for start in range(0, len(cameras), batch):
        chunk = cameras[start : start + batch]
        size = len(chunk)
        out = generator.synthesis(
            w.expand(size, -1, -1),
            chunk,
            neural_resolution,
            num_coarse,
            num_importance,
            noise_mode="const",
            params=params.expand(size, *params.shape[1:]),
            coarse_stride=coarse_stride,
        )
        parts.append(Views(out.image, out.depth, out.opacity, out.semantics))
    return Views(
        images=torch.cat([p.images for p in parts]),
        depth=torch.cat([p.depth for p in parts]),
        opacity=torch.cat([p.opacity for p in parts]),
        semantics=torch.cat([p.semantics for p in parts if p.semantics is not None])
        if parts[0].semantics is not None
        else None,
    )


def render_views(
    model: FaceModel,
    w: Tensor,
    angles: Tensor,
    neural_resolution: int | None = None,
    num_coarse: int | None = None,
    num_importance: int | None = None,
    max_samples: int = 2**22,
    plane_offsets: Tensor | None = None,
    coarse_stride: int | None = None,
) -> Views:
    """Render latent w (1, num_ws, w_dim) with ``plane_offsets`` (1, 3, C, P, P) or None at each (yaw, pitch) of
    ``angles`` (N, 2) on the model's camera sphere with the model's generator (see :func:`render_cameras`); a
    face refined with PTI renders with its own model, ``inversion.model``. ``neural_resolution`` is the neural
    rendering size (default: the generator's)."""
    cameras = model.cameras(angles.to(w.device))
    with model.autocast():
        return render_cameras(
            model.generator,
            w,
            cameras,
            neural_resolution,
            num_coarse,
            num_importance,
            max_samples,
            plane_offsets,
            coarse_stride,
        )
