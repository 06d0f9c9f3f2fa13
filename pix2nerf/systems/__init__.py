"""LightningModules: the training logic around the plain networks."""

from pix2nerf.systems.callbacks import AdaptiveThreads, SampleGrids
from pix2nerf.systems.fenerf import FENeRF
from pix2nerf.systems.gan import GAN3D
from pix2nerf.systems.pix2nerf import Pix2NeRF

__all__ = ["AdaptiveThreads", "FENeRF", "GAN3D", "Pix2NeRF", "SampleGrids"]
