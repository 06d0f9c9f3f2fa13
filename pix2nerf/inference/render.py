"""Rendering many views of one inverted face, batched within a memory budget."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pix2nerf.inference.model import FaceModel
from pix2nerf.networks.generator import Generator


@dataclass
class Views:
    """Rendered views (N of them): images (N, 3, H, W) in [-1, 1]; depth and opacity (N, 1, h, w) at the
    neural rendering size; semantics (N, K, h, w) logits or None."""

    images: Tensor
    depth: Tensor
    opacity: Tensor
    semantics: Tensor | None


def views_per_batch(resolution: int, samples_per_ray: int, max_samples: int) -> int:
    """How many views fit in one batch when at most ``max_samples`` ray samples are evaluated at once."""
    return max(1, max_samples // (resolution * resolution * samples_per_ray))


@torch.no_grad()
def render_views(
    model: FaceModel,
    w: Tensor,
    angles: Tensor,
    resolution: int | None = None,
    num_coarse: int | None = None,
    num_importance: int | None = None,
    max_samples: int = 2**22,
    generator: Generator | None = None,
) -> Views:
    """Render latent w (1, num_ws, w_dim) at each (yaw, pitch) of ``angles`` (N, 2).

    ``resolution`` is the neural rendering size (default: the generator's); views are rendered in
    batches of at most ``max_samples`` ray samples (about 100 bytes each per feature channel on CPU).
    """
    gen = generator or model.generator
    resolution = resolution or gen.neural_resolution
    coarse = gen.renderer.num_coarse if num_coarse is None else num_coarse
    fine = gen.renderer.num_importance if num_importance is None else num_importance
    batch = views_per_batch(resolution, coarse + fine, max_samples)
    parts: list[Views] = []
    for chunk in angles.to(w.device).split(batch):
        out = model.render(w.expand(len(chunk), -1, -1), chunk, resolution, num_coarse, num_importance, generator=gen)
        parts.append(Views(out.image, out.depth, out.opacity, out.semantics))
    return Views(
        images=torch.cat([p.images for p in parts]),
        depth=torch.cat([p.depth for p in parts]),
        opacity=torch.cat([p.opacity for p in parts]),
        semantics=torch.cat([p.semantics for p in parts]) if parts[0].semantics is not None else None,
    )
