"""The held-out inversion protocol, shared by training validation, ``pix2nerf test`` and ``tools/evaluate.py``.

A :class:`~pix2nerf.inference.FaceModel` inverts source views of synthetic heads (encoder, then optionally
per-image refinement) and is scored per image: the reconstruction against the input (PSNR, SSIM, LPIPS, depth,
semantic labels), the estimated pose against the true one, and novel views at the *estimated* pose + yaw offsets
against the procedural heads' exact renders at the *true* pose + the same offsets (as a user would ask for a view
"30 degrees to the left"), with the multi-view consistency of the headline offset's views.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pix2nerf.cameras import Cameras, yaw_pitch
from pix2nerf.data.batch import FaceBatch
from pix2nerf.data.synthetic import HeadView, render_views
from pix2nerf.inference.invert import Inversion, RefineOptions, refine
from pix2nerf.inference.model import FaceModel
from pix2nerf.losses.perceptual import LPIPS
from pix2nerf.metrics import depth_errors, pose_error_degrees, psnr, reprojection_error, ssim
from pix2nerf.networks.generator import GeneratorOutput

NOVEL_OFFSETS_DEG = (15, 30, 45)
"""Novel views at +- each yaw offset (degrees) from the input pose."""
HEADLINE_OFFSET_DEG = 30
"""The offset of ``novel_psnr``, ``novel_ssim``, ``novel_lpips``, the novel depth errors and the reprojection error."""
DEPTH_ERRORS = ("mae", "rmse", "scaled_mae", "silog")
"""Fields of :class:`~pix2nerf.metrics.DepthErrors`, scored as ``recon_depth_<name>`` and ``novel_depth_<name>``."""


@dataclass
class SourceViews:
    """Views to invert and their ground truth.

    Attributes:
        images: (B, 3, H, W) in [-1, 1].
        yaw_pitch: (B, 2) true camera angles (radians) on the model's camera sphere.
        identities: (B,) synthetic-head seeds, or None for other data (no novel-view truth then).
        depth: (B, 1, H, W) exact z-depth (+inf on background), or None.
        semantics: (B, H, W) exact class ids, or None.
        random_light: whether the heads were rendered with per-identity light (their data set's setting).
    """

    images: Tensor
    yaw_pitch: Tensor
    identities: Tensor | None = None
    depth: Tensor | None = None
    semantics: Tensor | None = None
    random_light: bool = True

    @classmethod
    def from_batch(cls, batch: FaceBatch | Mapping[str, Tensor], random_light: bool = True) -> SourceViews:
        """From a data-set batch: ``image``, ``yaw_pitch`` (else the angles of the ``camera`` labels) and, for
        synthetic heads, ``identity``, ``depth``, ``semantics``."""
        angles = batch["yaw_pitch"] if "yaw_pitch" in batch else yaw_pitch(Cameras.from_label(batch["camera"]))
        return cls(
            images=batch["image"],
            yaw_pitch=angles,
            identities=batch.get("identity"),
            depth=batch.get("depth"),
            semantics=batch.get("semantics"),
            random_light=random_light,
        )


@dataclass
class InversionScores:
    """Per-image scores, each (B,), by name; and the reconstruction's semantic labels (B, H, W) or None."""

    per_image: dict[str, Tensor]
    semantic_labels: Tensor | None


class _Inversions:
    """A batch of inversions rendered together: consecutive ones that render with the same model (the inverting
    one, or a PTI view with a per-image generator) in one batch each."""

    def __init__(self, inversions: list[Inversion], neural_resolution: int | None) -> None:
        self.inversions, self.neural_resolution = inversions, neural_resolution
        self.yaw_pitch = torch.cat([inversion.yaw_pitch for inversion in inversions])

    def render(self, angles: Tensor) -> GeneratorOutput:
        """Each inversion at its row of ``angles`` (B, 2)."""
        groups = [list(group) for _, group in itertools.groupby(self.inversions, key=lambda i: id(i.model))]
        outputs, start = [], 0
        for group in groups:
            end = start + len(group)
            offsets = [i.plane_offsets for i in group]
            outputs.append(
                group[0].model.render(
                    torch.cat([i.w for i in group]),
                    angles[start:end],
                    neural_resolution=self.neural_resolution,
                    plane_offsets=_cat_optional(offsets),
                )
            )
            start = end
        if len(outputs) == 1:
            return outputs[0]
        fields = {name: [getattr(out, name) for out in outputs] for name in vars(outputs[0])}
        merged: dict[str, Any] = {name: _cat_optional(parts) for name, parts in fields.items()}
        return GeneratorOutput(**merged)


def _cat_optional(parts: Sequence[Tensor | None]) -> Tensor | None:
    """``torch.cat`` of tensors that are all there, or None when the first is None (then all are)."""
    if parts[0] is None:
        return None
    present = [part for part in parts if part is not None]
    if len(present) != len(parts):
        raise ValueError("cannot concatenate a mix of tensors and None")
    return torch.cat(present)


def invert(model: FaceModel, images: Tensor, refinement: RefineOptions | None = None) -> list[Inversion]:
    """Encoder inversions of images (B, 3, H, W), each refined with ``refinement`` when it is given."""
    with torch.no_grad():
        encoded = model.encode(images)
    inversions = [
        Inversion(
            w=encoded.w[i : i + 1],
            yaw_pitch=encoded.yaw_pitch[i : i + 1],
            model=model,
            plane_offsets=encoded.plane_offsets[i : i + 1] if encoded.plane_offsets is not None else None,
        )
        for i in range(len(images))
    ]
    if refinement is None or (refinement.steps == 0 and refinement.finetune_steps == 0):
        return inversions
    with torch.enable_grad():
        return [
            refine(model, image, start, refinement, progress=False)
            for image, start in zip(images, inversions, strict=True)
        ]


@torch.no_grad()
def score_inversions(
    model: FaceModel,
    views: SourceViews,
    offsets_deg: Sequence[int] = NOVEL_OFFSETS_DEG,
    refinement: RefineOptions | None = None,
    neural_resolution: int | None = None,
    perceptual: LPIPS | None = None,
) -> InversionScores:
    """Invert ``views`` with ``model`` and score every image (see the module docstring).

    Names: ``pose_error_deg``, ``recon_psnr``, ``recon_ssim``, ``recon_lpips`` (with ``perceptual``),
    ``recon_depth_<error>`` (with depth); with identities also ``novel_psnr_<d>`` and ``novel_ssim_<d>`` for each
    offset d (mean of the +d and -d views), and at ``HEADLINE_OFFSET_DEG`` (when among the offsets)
    ``novel_psnr``, ``novel_ssim``, ``novel_lpips``, ``novel_depth_<error>`` and ``reprojection_error``.
    ``neural_resolution``: volume-rendering size (default: the model's).
    """
    device = model.w_avg.device
    images, true_angles = views.images.to(device), views.yaw_pitch.to(device)
    inversions = _Inversions(invert(model, images, refinement), neural_resolution)
    estimate = inversions.yaw_pitch
    scores = {"pose_error_deg": pose_error_degrees(estimate, true_angles)}
    recon = inversions.render(estimate)
    scores.update(_image_scores("recon", recon.image, images, perceptual))
    if views.depth is not None:
        scores.update(_depth_scores("recon", recon.depth, views.depth.to(device)))
    labels = None
    if recon.semantics is not None and views.semantics is not None:
        size = views.semantics.shape[-2:]
        labels = F.interpolate(recon.semantics, size=size, mode="nearest").argmax(1)
    if views.identities is None:
        return InversionScores(scores, labels)

    seeds = [int(seed) for seed in views.identities]
    for degrees in offsets_deg:
        per_side: dict[str, list[Tensor]] = {}
        for offset in (-math.radians(degrees), math.radians(degrees)):
            shift = torch.tensor([offset, 0.0], device=device)
            heads = [
                HeadView(seed, *(angles + shift).tolist()) for seed, angles in zip(seeds, true_angles, strict=True)
            ]
            truth, _ = render_views(heads, images.shape[-1], model.prior, views.random_light)
            novel = inversions.render(estimate + shift)
            side = {
                f"novel_psnr_{degrees}": psnr(novel.image, truth.image.to(device)),
                f"novel_ssim_{degrees}": ssim(novel.image, truth.image.to(device)),
            }
            if degrees == HEADLINE_OFFSET_DEG:
                side.update(_image_scores("novel", novel.image, truth.image.to(device), perceptual))
                side.update(_depth_scores("novel", novel.depth, truth.depth.to(device)))
                side["reprojection_error"] = reprojection_error(
                    recon.image_raw,
                    recon.depth,
                    model.cameras(estimate),
                    novel.image_raw,
                    model.cameras(estimate + shift),
                    depth_b=novel.depth,
                )
            for name, value in side.items():
                per_side.setdefault(name, []).append(value)
        scores.update({name: torch.stack(sides).mean(0) for name, sides in per_side.items()})
    return InversionScores(scores, labels)


def _image_scores(part: str, prediction: Tensor, target: Tensor, perceptual: LPIPS | None) -> dict[str, Tensor]:
    scores = {f"{part}_psnr": psnr(prediction, target), f"{part}_ssim": ssim(prediction, target)}
    if perceptual is not None:
        scores[f"{part}_lpips"] = perceptual(prediction, target)
    return scores


def _depth_scores(part: str, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Depth rendered at neural resolution, upsampled (nearest) to the ground truth's size."""
    errors = depth_errors(F.interpolate(prediction, size=target.shape[-2:], mode="nearest"), target)
    return {f"{part}_depth_{name}": getattr(errors, name) for name in DEPTH_ERRORS}
