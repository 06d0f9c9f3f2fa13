"""Radiance fields: functions from 3D points to density, colour features and semantic logits."""

from pix2nerf.fields.analytic import SpheresField
from pix2nerf.fields.base import (
    BACKGROUND_CLASS,
    FieldOutput,
    RadianceHead,
    density_activation,
    feature_activation,
)
from pix2nerf.fields.hashgrid import HashEncoding, HashGridHead
from pix2nerf.fields.triplane import DecoupledDecoder, FeatureDecoder, TriPlaneHead, sample_planes

__all__ = [
    "BACKGROUND_CLASS",
    "DecoupledDecoder",
    "FeatureDecoder",
    "FieldOutput",
    "HashEncoding",
    "HashGridHead",
    "RadianceHead",
    "SpheresField",
    "TriPlaneHead",
    "density_activation",
    "feature_activation",
    "sample_planes",
]
