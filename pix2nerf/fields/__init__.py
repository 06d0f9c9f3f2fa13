"""Radiance fields: functions from 3D points to density and per-point values."""

from pix2nerf.fields.analytic import SpheresField

__all__ = ["SpheresField"]
