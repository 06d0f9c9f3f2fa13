"""Training objectives: adversarial, R1, density regularisation, pose regression."""

from pix2nerf.losses.adversarial import (
    discriminator_loss,
    generator_loss,
    r1_penalty,
)
from pix2nerf.losses.regularizers import density_regularization, pose_loss

__all__ = ["density_regularization", "discriminator_loss", "generator_loss", "pose_loss", "r1_penalty"]
