"""Non-saturating logistic GAN loss and the R1 gradient penalty."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def generator_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss ``softplus(-D(G(z)))``, averaged. fake_logits: (B, 1)."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Logistic discriminator loss ``softplus(D(fake)) + softplus(-D(real))``, averaged. Both (B, 1)."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(real_logits: Tensor, real_inputs: list[Tensor]) -> Tensor:
    """R1: squared norm of the gradient of D's real logits w.r.t. its real inputs, per sample (B,).

    ``real_inputs`` must require grad and be what produced ``real_logits`` (e.g. image and raw image
    for a dual discriminator; their squared gradient norms add up). Differentiable (create_graph).
    """
    gradients = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    norms = [g.square().flatten(1).sum(dim=1) for g in gradients]
    return sum(norms[1:], norms[0])
