"""Semantic editing with a FENeRF-style generator: semantic maps from any view, appearance swaps and
interpolation, and mask-guided geometry edits.

Appearance operations need a generator with ``decoupled_latents``; they only touch the appearance rows
of ws (see :meth:`~pix2nerf.networks.Generator.split_ws`), so depth, opacity and semantics stay exactly
as they were. Mask-guided editing optimises the geometry rows only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from pix2nerf.cameras import Cameras
from pix2nerf.networks.generator import Generator

IGNORE_LABEL = -100
"""Pixels of a target mask with this label do not count in a mask-guided edit (PyTorch's ignore index)."""


def _require_semantics(generator: Generator) -> None:
    if not generator.num_semantic_classes:
        raise ValueError("this generator renders no semantics; build it with num_semantic_classes > 0")


@torch.no_grad()
def render_semantics(
    generator: Generator,
    ws: Tensor,
    cameras: Cameras,
    neural_resolution: int | None = None,
    num_coarse: int | None = None,
    num_importance: int | None = None,
) -> Tensor:
    """Semantic probabilities (B, K, h, w) of latents ws (B or 1, num_ws, w_dim) seen from ``cameras`` (B of them).

    A single latent is rendered from every camera (its field computed once). ``argmax(dim=1)`` gives the
    label maps (B, h, w) of class ids (CelebAMask-HQ ids for face generators). Rendering is deterministic
    (constant noise, no sample jitter) whatever the generator's mode.
    """
    _require_semantics(generator)
    was_training = generator.training
    generator.eval()
    try:
        params = generator.field_params(ws, noise_mode="const")
        if ws.shape[0] == 1:
            ws, params = ws.expand(len(cameras), *ws.shape[1:]), params.expand(len(cameras), *params.shape[1:])
        out = generator.synthesis(
            ws,
            cameras,
            neural_resolution=neural_resolution,
            num_coarse=num_coarse,
            num_importance=num_importance,
            noise_mode="const",
            params=params,
        )
    finally:
        generator.train(was_training)
    assert out.semantics is not None  # _require_semantics checked the generator
    return out.semantics.softmax(dim=1)


def swap_appearance(generator: Generator, ws: Tensor, appearance_source: Tensor) -> Tensor:
    """The geometry of ws (B, num_ws, w_dim) with the appearance of ``appearance_source`` (B or 1, num_ws, w_dim)."""
    geometry, _ = generator.split_ws(ws)
    _, appearance = generator.split_ws(appearance_source)
    return generator.join_ws(geometry, appearance.expand(geometry.shape[0], -1, -1))


def interpolate_appearance(generator: Generator, ws_a: Tensor, ws_b: Tensor, weights: Tensor | float) -> Tensor:
    """The geometry of ``ws_a`` with appearance ``lerp(a, b, t)`` for each weight t.

    Args:
        ws_a, ws_b: (B, num_ws, w_dim) latents (B may be 1 and broadcast against the weights).
        weights: a float or (T,) weights (0 keeps a's appearance, 1 takes b's); T must be B, or B must be 1.

    Returns:
        (max(B, T), num_ws, w_dim).
    """
    geometry, appearance_a = generator.split_ws(ws_a)
    _, appearance_b = generator.split_ws(ws_b)
    t = torch.as_tensor(weights, dtype=ws_a.dtype, device=ws_a.device).reshape(-1, 1, 1)
    appearance = appearance_a + t * (appearance_b - appearance_a)
    return generator.join_ws(geometry.expand(appearance.shape[0], -1, -1), appearance)


@dataclass
class GeometryEdit:
    """Result of :func:`edit_geometry`.

    Attributes:
        ws: (B, num_ws, w_dim) edited latents: new geometry rows, the original appearance rows.
        losses: the objective at every step (before each update), for inspection.
    """

    ws: Tensor
    losses: list[float]


def edit_geometry(
    generator: Generator,
    ws: Tensor,
    cameras: Cameras,
    target: Tensor,
    steps: int = 50,
    lr: float = 0.03,
    latent_space: Literal["w", "w+"] = "w+",
    latent_weight: float = 0.0,
    num_coarse: int | None = None,
    num_importance: int | None = None,
) -> GeometryEdit:
    """Mask-guided geometry editing: optimise the geometry latent so the rendered semantics match a target mask.

    The rendered semantic map at ``cameras`` (rendered at the target's resolution) is pulled toward
    ``target`` with cross-entropy; only the geometry rows of ws change (the appearance rows are returned
    unchanged) and the generator's weights are not touched. Because the edit lives in the latent of a 3D
    field, it shows in every view.

    Args:
        ws: (B, num_ws, w_dim) latents to edit (a generator with ``decoupled_latents``).
        cameras: B cameras of the views the target masks are drawn for.
        target: (B, H, W) or (H, W) int64 label maps, H == W; pixels labelled ``IGNORE_LABEL`` do not count.
        steps, lr: Adam iterations and learning rate.
        latent_space: ``"w+"`` optimises an offset per geometry w; ``"w"`` one offset shared by all of them
            (stays in the generator's W space when ws came from the mapping network: fewer, more global changes).
        latent_weight: weight of the mean squared distance of the geometry ws to their originals (keeps the
            rest of the shape; 0 disables it).
        num_coarse, num_importance: samples per ray while optimising (default: the generator's).
    """
    _require_semantics(generator)
    if latent_space not in ("w", "w+"):
        raise ValueError(f"latent_space must be 'w' or 'w+', got {latent_space!r}")
    target = target[None] if target.ndim == 2 else target
    if target.ndim != 3 or target.shape[0] != ws.shape[0] or target.shape[1] != target.shape[2]:
        raise ValueError(f"target must be square label maps (B, H, H) for {ws.shape[0]} latents, got {target.shape}")
    geometry, appearance = (part.detach() for part in generator.split_ws(ws))
    offset = torch.zeros(
        geometry.shape[0], 1 if latent_space == "w" else geometry.shape[1], geometry.shape[2], device=ws.device
    )
    offset.requires_grad_(True)
    optimizer = torch.optim.Adam([offset], lr=lr)
    losses = []
    was_training = generator.training
    generator.eval()
    try:
        for _ in range(steps):
            edited = generator.join_ws(geometry + offset, appearance)
            out = generator.synthesis(
                edited,
                cameras,
                neural_resolution=target.shape[-1],
                num_coarse=num_coarse,
                num_importance=num_importance,
                noise_mode="const",
            )
            assert out.semantics is not None  # _require_semantics checked the generator
            loss = F.cross_entropy(out.semantics, target, ignore_index=IGNORE_LABEL)
            if latent_weight > 0:
                loss = loss + latent_weight * offset.square().sum(-1).mean()
            (offset.grad,) = torch.autograd.grad(loss, [offset])
            optimizer.step()
            losses.append(loss.item())
    finally:
        generator.train(was_training)
    return GeometryEdit(ws=generator.join_ws(geometry + offset.detach(), appearance), losses=losses)
