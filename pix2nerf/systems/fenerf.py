"""FENeRF: the GAN system plus a semantic discriminator that makes the generator's semantic field realistic."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from pix2nerf.data import FaceBatch
from pix2nerf.data.semantics import one_hot_labels, resize_labels
from pix2nerf.layers import resize
from pix2nerf.losses import discriminator_loss, generator_loss, r1_penalty
from pix2nerf.networks.discriminator import Discriminator
from pix2nerf.networks.generator import Generator, GeneratorOutput
from pix2nerf.systems.gan import GAN3D

RGB_CHANNELS = 3


class FENeRF(GAN3D):
    """:class:`GAN3D` with FENeRF's second, semantic discriminator.

    The semantic discriminator sees [class map ⊕ RGB] (B, K + 3, r, r) at its resolution r: one-hot real
    label maps (``batch["semantics"]``) with the real image, or the generator's rendered class
    probabilities with its detached raw image, so its gradients reach the generator through the
    semantic field only. Class maps are scaled to [-1, 1] like images. The generator's loss adds the
    non-saturating semantic loss times ``semantic_weight``; the semantic discriminator has its own
    optimizer and its own lazy R1 (on both of its inputs).

    Args:
        generator: needs ``num_semantic_classes`` > 0 (decoupled latents are optional).
        discriminator, optimizer_g, optimizer_d: as :class:`GAN3D`.
        semantic_discriminator: a :class:`Discriminator` with ``img_channels = K + 3`` (not dual).
        optimizer_s: optimizer factory for the semantic discriminator.
        semantic_weight: weight of the semantic adversarial loss in the generator's objective (FENeRF: 0.1).
        semantic_r1_gamma, semantic_r1_interval: its R1 weight and interval (0 disables it).
        **gan_kwargs: :class:`GAN3D` arguments.
    """

    NOT_HYPERPARAMETERS = (*GAN3D.NOT_HYPERPARAMETERS, "semantic_discriminator", "optimizer_s")

    def __init__(
        self,
        generator: Generator,
        discriminator: Discriminator,
        semantic_discriminator: Discriminator,
        optimizer_g: OptimizerCallable,
        optimizer_d: OptimizerCallable,
        optimizer_s: OptimizerCallable,
        semantic_weight: float = 0.1,
        semantic_r1_gamma: float = 1.0,
        semantic_r1_interval: int = 16,
        **gan_kwargs: Any,
    ) -> None:
        super().__init__(generator, discriminator, optimizer_g, optimizer_d, **gan_kwargs)
        classes = generator.num_semantic_classes
        if classes <= 0:
            raise ValueError("FENeRF needs a generator with semantics: set num_semantic_classes (19 for CelebAMask-HQ)")
        channels = semantic_discriminator.init_args["img_channels"]
        if channels != classes + RGB_CHANNELS or semantic_discriminator.dual:
            raise ValueError(
                f"the semantic discriminator must take {classes} class channels + RGB = {classes + RGB_CHANNELS} "
                f"channels and not be dual; it takes img_channels={channels}, dual={semantic_discriminator.dual}"
            )
        self.semantic_discriminator = semantic_discriminator
        self.optimizer_s = optimizer_s

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [*super().configure_optimizers(), self.optimizer_s(self.semantic_discriminator.parameters())]

    # -- the semantic discriminator's inputs -------------------------------------------------------------------

    def semantic_input(self, probabilities: Tensor, rgb: Tensor) -> Tensor:
        """Class probabilities (B, K, h, w) in [0, 1] and RGB (B, 3, h', w') in [-1, 1] -> (B, K + 3, r, r)."""
        size = self.semantic_discriminator.img_resolution

        def resized(x: Tensor) -> Tensor:
            if x.shape[-1] == size and x.shape[-2] == size:
                return x
            return resize(x, size)

        return torch.cat([resized(probabilities) * 2.0 - 1.0, resized(rgb)], dim=1)

    def real_semantic_input(self, batch: FaceBatch) -> Tensor:
        """One-hot real label maps (nearest-resized, so they stay one-hot) with the real images."""
        if "semantics" not in batch:
            raise ValueError(
                "FENeRF trains on semantic label maps: the batch has no 'semantics' (use synthetic heads, or "
                "EG3D-format data with masks/ and data.with_semantics=true)"
            )
        labels = resize_labels(batch["semantics"], self.semantic_discriminator.img_resolution)
        return self.semantic_input(one_hot_labels(labels, self.generator.num_semantic_classes), batch["image"])

    @staticmethod
    def fake_semantic_input_parts(fake: GeneratorOutput) -> tuple[Tensor, Tensor]:
        """Rendered class probabilities (B, K, h, w) and the detached raw image (B, 3, h, w) of fakes."""
        assert fake.semantics is not None  # FENeRF's generator renders semantics (checked when it was built)
        return fake.semantics.softmax(dim=1), fake.image_raw.detach()

    # -- training -------------------------------------------------------------------------------------------------

    def training_step(self, batch: FaceBatch, batch_idx: int) -> None:
        opt_g, opt_d, opt_s = self.optimizer_list()
        losses = {"train/loss_g": self.generator_step(batch, opt_g)}
        with torch.no_grad():
            fake = self.generate(batch["camera"])
        losses.update(self.discriminator_step(batch, opt_d, fake))
        losses.update(self.semantic_discriminator_step(batch, opt_s, fake))
        self.finish_step(batch["camera"].shape[0], losses)

    def auxiliary_generator_loss(self, fake: GeneratorOutput, c: Tensor) -> Tensor:
        """The semantic adversarial loss of the G step's fakes, weighted by ``semantic_weight``."""
        self.semantic_discriminator.requires_grad_(False)
        logits = self.semantic_discriminator(self.semantic_input(*self.fake_semantic_input_parts(fake)), c).logits
        self.semantic_discriminator.requires_grad_(True)
        loss = generator_loss(logits)
        self.log("train/semantic_g", loss.detach())
        return self.hparams.semantic_weight * loss

    def semantic_discriminator_step(self, batch: FaceBatch, optimizer, fake: GeneratorOutput) -> dict[str, Tensor]:
        """One semantic-D update: real label maps vs the fakes' rendered class maps, plus its lazy R1."""
        h = self.hparams
        c = batch["camera"]
        fake_logits = self.semantic_discriminator(self.semantic_input(*self.fake_semantic_input_parts(fake)), c).logits
        run_r1 = h.semantic_r1_gamma > 0 and h.semantic_r1_interval > 0
        run_r1 = run_r1 and int(self.step_count) % h.semantic_r1_interval == 0
        real_input = self.real_semantic_input(batch).detach().requires_grad_(run_r1)
        with self.r1_precision(run_r1):
            real_logits = self.semantic_discriminator(real_input, c).logits
        loss = discriminator_loss(real_logits, fake_logits)
        losses = {}
        if run_r1:
            penalty = r1_penalty(real_logits, [real_input]).mean()
            losses["train/semantic_r1"] = penalty.detach()
            loss = loss + penalty * (h.semantic_r1_gamma / 2) * h.semantic_r1_interval
        self.optimize(optimizer, loss, "train/loss_semantic_d")
        losses.update(
            {
                "train/loss_semantic_d": loss.detach(),
                "train/semantic_d_real": real_logits.detach().mean(),
                "train/semantic_d_fake": fake_logits.detach().mean(),
            }
        )
        return losses

    # -- validation ------------------------------------------------------------------------------------------------

    def validation_step(self, batch: FaceBatch, batch_idx: int) -> dict[str, Any] | None:
        """GAN3D's validation plus the semantic discriminator's scores on real and EMA label maps."""
        outputs = super().validation_step(batch, batch_idx)
        c = batch["camera"]
        fake = self.generate(c, self.generator_ema)
        real_logits = self.semantic_discriminator(self.real_semantic_input(batch), c).logits
        fake_logits = self.semantic_discriminator(self.semantic_input(*self.fake_semantic_input_parts(fake)), c).logits
        self.log_dict(
            {"val/semantic_d_real": real_logits.mean(), "val/semantic_d_fake": fake_logits.mean()},
            batch_size=c.shape[0],
            sync_dist=True,
        )
        return outputs
