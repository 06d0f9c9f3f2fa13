"""Ray sampling and differentiable volume rendering."""

from pix2nerf.rendering.compositing import Composite, composite
from pix2nerf.rendering.renderer import FieldFn, Proposal, RayBundle, VolumeRenderer
from pix2nerf.rendering.samplers import (
    gather_samples,
    importance,
    merge_samples,
    ray_box_intersection,
    sample_pdf,
    samples_per_ray,
    smooth_weights,
    stratified,
    upsample_proposal,
)

__all__ = [
    "Composite",
    "FieldFn",
    "Proposal",
    "RayBundle",
    "VolumeRenderer",
    "composite",
    "gather_samples",
    "importance",
    "merge_samples",
    "ray_box_intersection",
    "sample_pdf",
    "samples_per_ray",
    "smooth_weights",
    "stratified",
    "upsample_proposal",
]
