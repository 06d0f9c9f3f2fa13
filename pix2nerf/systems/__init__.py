"""LightningModules: the training logic around the plain networks."""

from pix2nerf.systems.gan import GAN3D

__all__ = ["GAN3D"]
