"""Inversion: an image -> the generator's latent and camera, by the encoder and optional per-image refinement."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from pix2nerf.cameras import mirror_yaw_pitch
from pix2nerf.inference.model import FaceModel
from pix2nerf.layers import resize
from pix2nerf.losses.perceptual import LPIPS


@dataclass
class Inversion:
    """One image's inversion.

    Attributes:
        w: (1, num_ws, w_dim) latent.
        yaw_pitch: (1, 2) estimated camera angles (radians) on the model's camera sphere.
        model: the model the face renders with: the inverting model, or after PTI its view with the per-image
            fine-tuned generator (:meth:`FaceModel.with_generator`; ``model.generator`` is then that copy).
        plane_offsets: (1, 3, C, P, P) tri-plane offsets from the model's plane residual, or None.
        losses: reconstruction loss after each refinement step (empty for encoder-only inversion).
    """

    w: Tensor
    yaw_pitch: Tensor
    model: FaceModel = field(repr=False, compare=False)
    plane_offsets: Tensor | None = None
    losses: list[float] = field(default_factory=list)


@dataclass
class RefineOptions:
    """Per-image refinement: optimise latent (and pose), then optionally fine-tune a generator copy (PTI).

    Attributes:
        steps: latent/pose optimisation steps (0 disables refinement).
        learning_rate, pose_learning_rate: Adam step sizes for w and for yaw/pitch.
        optimize_pose: refine the encoder's camera estimate too.
        finetune_steps, finetune_learning_rate: PTI: steps tuning a copy of the generator on the image
            with the refined latent fixed (0: off).
        mse_weight, lpips_weight: reconstruction losses on the input view (LPIPS needs its pretrained
            backbone unless ``lpips_offline_random``, which is for tests only).
        symmetry_weight: SPI-style prior for the unseen side: the view at the mirrored pose must look like
            the mirrored input (faces are roughly symmetric).
        latent_weight: keeps w near the encoder's estimate (squared distance), against overfitting.
        neural_resolution: neural rendering size while optimising (None: the model's). Lower is cheaper: about
            (model's / this)^2 fewer rays per step, e.g. 64 for a 512^2 EG3D model rendering 128^2; models with
            super-resolution still compare at the full image size, others at the rendered size.
        skip_super_resolution: fit the neural rendering (``image_raw``) to the input shrunk to its size, without
            running super-resolution: on 512^2 EG3D models the super-resolution network is most of a step's cost
            on a CPU. The result renders with super-resolution as usual.
        seed: makes refinement repeatable.
    """

    steps: int = 100
    learning_rate: float = 0.01
    pose_learning_rate: float = 0.003
    optimize_pose: bool = True
    finetune_steps: int = 0
    finetune_learning_rate: float = 3e-4
    mse_weight: float = 1.0
    lpips_weight: float = 0.0
    lpips_offline_random: bool = False
    symmetry_weight: float = 0.1
    latent_weight: float = 0.01
    neural_resolution: int | None = None
    skip_super_resolution: bool = False
    seed: int = 0

    @property
    def enabled(self) -> bool:
        """Whether these options refine at all (latent steps or PTI steps)."""
        return self.steps > 0 or self.finetune_steps > 0


@torch.no_grad()
def encode(model: FaceModel, image: Tensor, yaw_pitch: Tensor | None = None) -> Inversion:
    """Encoder-only inversion of one image (3, H, W) or (1, 3, H, W) in [-1, 1]. ``yaw_pitch`` (2,): a camera
    estimate (e.g. from landmarks) that becomes the pose of a model without an encoder (else frontal); an encoder's
    own estimate is kept."""
    image = image if image.ndim == 4 else image[None]
    encoded = model.encode(image.to(model.w_avg.device))
    angles = encoded.yaw_pitch.clone()
    if model.encoder is None and yaw_pitch is not None:
        angles = yaw_pitch.reshape(1, 2).to(angles)
    offsets = encoded.plane_offsets.clone() if encoded.plane_offsets is not None else None
    return Inversion(w=encoded.w.clone(), yaw_pitch=angles, model=model, plane_offsets=offsets)


class ReconstructionLoss:
    """Weighted MSE + LPIPS on the input view, plus the mirror-symmetry term."""

    def __init__(self, target: Tensor, options: RefineOptions, plane_offsets: Tensor | None = None) -> None:
        self.target, self.options, self.plane_offsets = target, options, plane_offsets
        self.mirrored = target.flip(-1)
        self._resized: dict[int, tuple[Tensor, Tensor]] = {}
        self.lpips = None
        if options.lpips_weight > 0:
            self.lpips = LPIPS(offline_random_backbone=options.lpips_offline_random).to(target.device)

    def __call__(self, model: FaceModel, w: Tensor, yaw_pitch: Tensor) -> Tensor:
        """w (1, num_ws, w_dim), yaw_pitch (1, 2) rendered by ``model`` -> scalar loss."""
        options = self.options
        angles = yaw_pitch
        if options.symmetry_weight > 0:
            angles = torch.cat([yaw_pitch, mirror_yaw_pitch(yaw_pitch)])
        offsets = self.plane_offsets
        if offsets is not None:
            offsets = offsets.expand(angles.shape[0], *offsets.shape[1:])
        views = w.expand(angles.shape[0], -1, -1)
        super_resolve = not options.skip_super_resolution
        images = model.render(
            views, angles, options.neural_resolution, plane_offsets=offsets, super_resolve=super_resolve
        ).image
        target, mirrored = self.targets(images.shape[-1])
        recon = images[:1]
        loss = options.mse_weight * F.mse_loss(recon, target)
        if self.lpips is not None:
            loss = loss + options.lpips_weight * self.lpips(recon, target).mean()
        if options.symmetry_weight > 0:
            loss = loss + options.symmetry_weight * F.mse_loss(images[1:], mirrored)
        return loss

    def targets(self, size: int) -> tuple[Tensor, Tensor]:
        """The input and its mirror image (1, 3, size, size), shrunk (antialiased) when renders are smaller."""
        if size == self.target.shape[-1]:
            return self.target, self.mirrored
        if size not in self._resized:
            self._resized[size] = (resize(self.target, size), resize(self.mirrored, size))
        return self._resized[size]


def refine(
    model: FaceModel, image: Tensor, start: Inversion, options: RefineOptions, progress: bool = True
) -> Inversion:
    """Refine an inversion of ``image`` (3, H, W) in [-1, 1] at the model's resolution; returns a new one.

    The stage-2 plane offsets of ``start`` (if any) are kept fixed: refinement tunes the latent, pose and
    (PTI) the generator under them. Refinement renders with ``model`` (not ``start.model``); the result renders
    with ``model``, or after PTI with its view over the tuned copy of ``model.generator``.
    """
    target = (image if image.ndim == 4 else image[None]).to(start.w.device)
    if target.shape[-1] != model.image_resolution:
        raise ValueError(f"refinement compares at the model's {model.image_resolution}^2; got {tuple(target.shape)}")
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(options.seed)
    loss_fn = ReconstructionLoss(target, options, start.plane_offsets)
    w = start.w.detach().clone().requires_grad_(True)
    yaw_pitch = start.yaw_pitch.detach().clone().requires_grad_(options.optimize_pose)
    groups = [{"params": [w], "lr": options.learning_rate}]
    if options.optimize_pose:
        groups.append({"params": [yaw_pitch], "lr": options.pose_learning_rate})
    optimizer = torch.optim.Adam(groups)
    losses: list[float] = []
    bar = tqdm(total=options.steps + options.finetune_steps, desc="refining", disable=not progress, leave=False)

    def minimise(optimizer: torch.optim.Optimizer, objective: Callable[[], Tensor], steps: int) -> None:
        for _ in range(steps):
            loss = objective()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.4f}")

    def latent_objective() -> Tensor:
        return loss_fn(model, w, yaw_pitch) + options.latent_weight * (w - start.w).square().mean()

    minimise(optimizer, latent_objective, options.steps)
    w, yaw_pitch = w.detach(), yaw_pitch.detach()
    tuned = model
    if options.finetune_steps > 0:
        tuned = model.with_generator(copy.deepcopy(model.generator).requires_grad_(True))
        tuner = torch.optim.Adam(tuned.generator.parameters(), lr=options.finetune_learning_rate)
        minimise(tuner, lambda: loss_fn(tuned, w, yaw_pitch), options.finetune_steps)
        tuned.generator.requires_grad_(False).eval()
    bar.close()
    torch.random.set_rng_state(generator_state)
    return Inversion(w=w, yaw_pitch=yaw_pitch, model=tuned, plane_offsets=start.plane_offsets, losses=losses)
