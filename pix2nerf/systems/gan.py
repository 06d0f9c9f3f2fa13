"""Adversarial pretraining of the 3D-aware generator (EG3D's objective) as a thin LightningModule."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar, cast

import kornia
import lightning as L
import torch
from lightning.fabric.utilities.data import AttributeDict
from lightning.pytorch import Callback
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import Tensor
from torch.optim import Optimizer

from pix2nerf.cameras import FACE_PRIOR, Cameras, PosePrior, look_at, yaw_pitch
from pix2nerf.checkpoint_keys import CAMERA_PRIOR, NETWORK_SPECS, TRAINING_SECONDS
from pix2nerf.data import FaceBatch
from pix2nerf.layers import resize
from pix2nerf.losses import density_regularization, discriminator_loss, generator_loss, pose_loss, r1_penalty
from pix2nerf.metrics import reprojection_error
from pix2nerf.networks.discriminator import Discriminator, DiscriminatorOutput
from pix2nerf.networks.generator import Generator, GeneratorOutput
from pix2nerf.networks.specs import network_spec
from pix2nerf.precision import at_least_float32, full_precision
from pix2nerf.systems.callbacks import SAMPLES_KEY, SampleGrids

VALIDATION_YAWS = (-0.4, -0.2, 0.0, 0.2, 0.4)
"""Yaw sweep (radians) of the validation sample grid."""


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite loss or non-finite weights: the run stops rather than train on or save them."""


def make_augmentation(probability: float) -> kornia.augmentation.AugmentationSequential | None:
    """Differentiable augmentation of D's inputs (DiffAugment-style translation and colour), or None.

    Geometric changes stay small (translation only) because the discriminator is pose-conditioned.
    """
    if probability <= 0:
        return None
    augment = kornia.augmentation
    return augment.AugmentationSequential(
        augment.RandomAffine(degrees=0.0, translate=(0.125, 0.125), padding_mode="reflection", p=probability),
        augment.ColorJiggle(brightness=0.2, contrast=0.2, saturation=0.2, p=probability),
    )


def blur(images: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of (B, C, H, W) images (EG3D fades a blur of D's inputs out early in training)."""
    if sigma <= 0:
        return images
    size = 2 * math.floor(3 * sigma) + 1
    return kornia.filters.gaussian_blur2d(images, (size, size), (sigma, sigma), border_type="constant")


class GAN3D(L.LightningModule):
    """Train a :class:`Generator` against a pose-conditioned :class:`Discriminator`.

    Every training step alternates a generator step and a discriminator step (manual optimisation);
    lazy regularisation adds the density regulariser every ``density_reg_interval`` G steps and R1 every
    ``r1_interval`` D steps, scaled by the interval. The EMA copy of the generator is the one used for
    validation, sampling and export.

    A non-finite loss stops training before its optimizer step, and a checkpoint with non-finite weights or optimizer
    states is never written (:class:`TrainingDivergedError`). Validation draws from its own seeded RNG stream, so a
    run resumed from a checkpoint at an epoch boundary continues bit for bit, whether or not validation runs.

    Args:
        generator, discriminator: the networks.
        optimizer_g, optimizer_d: optimizer factories (e.g. Adam with betas (0, 0.99)).
        r1_gamma, r1_interval: R1 weight and how often it runs (0 interval disables it).
        density_reg, density_reg_interval, density_reg_p_dist: EG3D's density regulariser.
        pose_swap_prob: probability that the generator is conditioned on another sample's camera than
            the one it renders (EG3D's generator pose conditioning regularisation).
        blur_sigma, blur_fade_steps: initial blur of D's inputs and how many steps it takes to fade out.
        pose_loss_weight: weight of D's (yaw, pitch) regression on real images (needs ``pose_head``).
        augment_p: probability of each differentiable augmentation of D's inputs (0: off, the default).
        ema_half_life: images after which the EMA weights half-forget (EG3D: 10k images).
        neural_resolution_initial, neural_resolution_final, neural_resolution_fade_steps: the neural
            rendering resolution grows linearly from initial to final (None keeps it fixed).
        grad_clip: clip gradient norms of both networks (None: no clipping).
        truncation_psi: for validation samples.
        num_val_latents: fixed latents rendered at every validation.
        seed: for the fixed validation latents and validation's random draws (validation never consumes the
            training RNG stream, so a run resumed from a checkpoint continues as an uninterrupted one).
        compile_networks: ``torch.compile`` the tri-plane synthesis network (the bulk of a step) when training
            starts; weights and checkpoints are unchanged. Measured on a 2-core CPU at the synthetic_heads_64 sizes:
            its fwd+bwd runs 1.5x faster after a ~40 s first step, so it pays back after ~100 steps. The
            discriminator stays eager: R1 needs a double backward, which compiled graphs do not support.
    """

    NOT_HYPERPARAMETERS: ClassVar[tuple[str, ...]] = ("generator", "discriminator", "optimizer_g", "optimizer_d")
    """Constructor arguments that are networks or optimizer factories, not hyperparameters (networks are saved as
    weights); each subclass adds its own."""

    step_count: Tensor
    images_seen: Tensor
    val_z: Tensor

    def __init__(
        self,
        generator: Generator,
        discriminator: Discriminator,
        optimizer_g: OptimizerCallable,
        optimizer_d: OptimizerCallable,
        r1_gamma: float = 1.0,
        r1_interval: int = 16,
        density_reg: float = 0.25,
        density_reg_interval: int = 4,
        density_reg_p_dist: float = 0.004,
        pose_swap_prob: float = 0.5,
        blur_sigma: float = 10.0,
        blur_fade_steps: int = 5000,
        pose_loss_weight: float = 0.0,
        augment_p: float = 0.0,
        ema_half_life: float = 10_000.0,
        neural_resolution_initial: int | None = None,
        neural_resolution_final: int | None = None,
        neural_resolution_fade_steps: int = 0,
        grad_clip: float | None = None,
        truncation_psi: float = 1.0,
        num_val_latents: int = 4,
        seed: int = 0,
        compile_networks: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=list(self.NOT_HYPERPARAMETERS))
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.generator_ema = copy.deepcopy(generator).eval().requires_grad_(False)
        self.optimizer_g, self.optimizer_d = optimizer_g, optimizer_d
        self.augmentation = make_augmentation(augment_p)
        self._last_step_time: float | None = None
        # Wall-clock seconds of training (validation included) over all sessions of this run; kept in checkpoints.
        self.training_seconds = 0.0
        self._training_rng: dict[str, Any] | None = None  # the training stream's state while validation runs
        self.register_buffer("step_count", torch.zeros((), dtype=torch.long))
        self.register_buffer("images_seen", torch.zeros((), dtype=torch.long))
        fixed = torch.Generator().manual_seed(seed)
        self.register_buffer("val_z", torch.randn(num_val_latents, generator.z_dim, generator=fixed), persistent=False)

    @property
    def hparams(self) -> AttributeDict:
        """The saved hyperparameters, read as attributes (Lightning's annotation also admits a plain mapping)."""
        return cast(AttributeDict, super().hparams)

    # -- configuration ---------------------------------------------------------------------------------

    def configure_callbacks(self) -> list[Callback]:
        """:class:`~pix2nerf.systems.callbacks.SampleGrids` writes validation's sample grids (a trainer's own
        ``SampleGrids`` is replaced by this one, as Lightning does for every callback a module configures)."""
        return [SampleGrids()]

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer_g(self.generator.parameters()), self.optimizer_d(self.discriminator.parameters())]

    def optimizer_list(self) -> list[LightningOptimizer]:
        """The optimizers in :meth:`configure_optimizers` order (Lightning returns a lone optimizer unlisted)."""
        optimizers = self.optimizers()
        return optimizers if isinstance(optimizers, list) else [optimizers]

    def neural_resolution(self) -> int:
        """The neural rendering resolution at the current step."""
        h = self.hparams
        start = h.neural_resolution_initial or self.generator.neural_resolution
        end = h.neural_resolution_final or start
        if h.neural_resolution_fade_steps <= 0 or start == end:
            return end
        fraction = min(int(self.step_count) / h.neural_resolution_fade_steps, 1.0)
        return int(round((start + (end - start) * fraction) / 2) * 2)

    def blur_sigma(self) -> float:
        h = self.hparams
        if h.blur_fade_steps <= 0:
            return 0.0
        return max(1.0 - int(self.step_count) / h.blur_fade_steps, 0.0) * h.blur_sigma

    # -- the pieces of a step ----------------------------------------------------------------------------

    def conditioning(self, c: Tensor) -> Tensor:
        """Generator pose conditioning: with ``pose_swap_prob``, condition on another sample's camera."""
        swap = torch.rand(c.shape[0], 1, device=c.device) < self.hparams.pose_swap_prob
        return torch.where(swap, c.roll(1, dims=0), c)

    def generate(self, c: Tensor, generator: Generator | None = None) -> GeneratorOutput:
        """Fake images rendered at cameras c (B, 25) from random latents by ``generator`` (None: the trained one,
        ``self.generator``; validation passes the EMA copy)."""
        generator = self.generator if generator is None else generator
        z = torch.randn(c.shape[0], generator.z_dim, device=c.device)
        ws = generator.mapping(z, self.conditioning(c))
        return generator.synthesis(ws, Cameras.from_label(c), neural_resolution=self.neural_resolution())

    def discriminate(self, image: Tensor, image_raw: Tensor | None, c: Tensor) -> DiscriminatorOutput:
        """D's verdict on images after the fading blur and (in training) the augmentation."""
        sigma = self.blur_sigma()
        image = blur(image, sigma)
        raw = blur(image_raw, sigma) if image_raw is not None and self.discriminator.dual else None
        if self.augmentation is not None and self.training:
            image = (self.augmentation(image * 0.5 + 0.5) * 2 - 1).clamp(-1, 1)
        return self.discriminator(image, c, raw)

    def real_raw(self, image: Tensor) -> Tensor:
        """Real images seen as raw renderings: downsampled to the neural rendering resolution."""
        return resize(image, self.neural_resolution())

    # -- training --------------------------------------------------------------------------------------

    def training_step(self, batch: FaceBatch, batch_idx: int) -> None:
        optimizers = self.optimizer_list()
        losses = {"train/loss_g": self.generator_step(batch, optimizers[0])}
        losses.update(self.discriminator_step(batch, optimizers[1]))
        self.finish_step(batch["camera"].shape[0], losses)

    def generator_step(self, batch: FaceBatch, optimizer) -> Tensor:
        """One G update: fool D on fakes rendered at the batch's cameras, plus the lazy density regulariser."""
        h = self.hparams
        c = batch["camera"]
        self.discriminator.requires_grad_(False)
        fake = self.generate(c)
        loss = generator_loss(self.discriminate(fake.image, fake.image_raw, c).logits)
        auxiliary = self.auxiliary_generator_loss(fake, c)
        if auxiliary is not None:
            loss = loss + auxiliary
        if h.density_reg > 0 and h.density_reg_interval > 0 and int(self.step_count) % h.density_reg_interval == 0:
            ws = self.generator.mapping(torch.randn(c.shape[0], self.generator.z_dim, device=c.device), c)
            params = at_least_float32(self.generator.field_params(ws))
            with full_precision(c.device):  # a difference of nearby densities: bf16 would round it away
                reg = density_regularization(
                    lambda p: self.generator.query(p, params).sigma, c.shape[0], c.device, h.density_reg_p_dist
                )
            self.log("train/density_reg", reg)
            loss = loss + reg * h.density_reg * h.density_reg_interval
        self.optimize(optimizer, loss, "train/loss_g")
        self.discriminator.requires_grad_(True)
        return loss.detach()

    def auxiliary_generator_loss(self, fake: GeneratorOutput, c: Tensor) -> Tensor | None:
        """Extra generator objectives on the G step's fakes (rendered at cameras c (B, 25)); None in GAN3D."""
        return None

    def discriminator_step(self, batch: FaceBatch, optimizer, fake: GeneratorOutput | None = None) -> dict[str, Tensor]:
        """One D update: real vs detached fakes, plus pose regression on reals and the lazy R1 penalty.

        ``fake``: fakes rendered at the batch's cameras without gradients (generated here when None).
        """
        h = self.hparams
        real, c = batch["image"], batch["camera"]
        if fake is None:
            with torch.no_grad():
                fake = self.generate(c)
        fake_out = self.discriminate(fake.image, fake.image_raw, c)
        run_r1 = h.r1_gamma > 0 and h.r1_interval > 0 and int(self.step_count) % h.r1_interval == 0
        real_image = real.detach().requires_grad_(run_r1)
        real_raw = self.real_raw(real).detach().requires_grad_(run_r1)
        with self.r1_precision(run_r1):
            real_out = self.discriminate(real_image, real_raw, c)
        loss = discriminator_loss(real_out.logits, fake_out.logits)
        if real_out.pose is not None and h.pose_loss_weight > 0:
            target = batch["yaw_pitch"] if "yaw_pitch" in batch else yaw_pitch(Cameras.from_label(c))
            pose = pose_loss(real_out.pose, target)
            self.log("train/pose_loss", pose)
            loss = loss + h.pose_loss_weight * pose
        if run_r1:
            inputs = [real_image, real_raw] if self.discriminator.dual else [real_image]
            penalty = r1_penalty(real_out.logits, inputs).mean()
            self.log("train/r1", penalty)
            loss = loss + penalty * (h.r1_gamma / 2) * h.r1_interval
        self.optimize(optimizer, loss, "train/loss_d")
        return {
            "train/loss_d": loss.detach(),
            "train/d_real": real_out.logits.detach().mean(),
            "train/d_fake": fake_out.logits.detach().mean(),
        }

    def r1_precision(self, run_r1: bool) -> AbstractContextManager:
        """float32 for the real pass whose input gradients R1 penalises (a gradient of a gradient), else as is."""
        return full_precision(self.device) if run_r1 else nullcontext()

    def optimize(
        self,
        optimizers: Optimizer | LightningOptimizer | Sequence[Optimizer | LightningOptimizer],
        loss: Tensor,
        name: str = "loss",
    ) -> None:
        """Refuse a non-finite loss (``name`` in the error), then backward and, for each optimizer (one or several
        networks trained by the same loss), optional gradient clipping and a step."""
        optimizers = [optimizers] if isinstance(optimizers, Optimizer | LightningOptimizer) else list(optimizers)
        self.ensure_finite({name: loss})
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        for optimizer in optimizers:
            if self.hparams.grad_clip:
                clip = self.hparams.grad_clip
                # Lightning's manual-optimisation examples pass the LightningOptimizer; its annotation says Optimizer.
                self.clip_gradients(cast(Optimizer, optimizer), gradient_clip_val=clip, gradient_clip_algorithm="norm")
            optimizer.step()

    def ensure_finite(self, losses: dict[str, Tensor]) -> None:
        """Raise :class:`TrainingDivergedError` naming the step and the first non-finite loss: one check of all the
        losses, agreed on by every process (so that under DDP all of them stop, none waits for the others)."""
        values = {name: loss.detach().float() for name, loss in losses.items()}
        finite = bool(torch.stack(list(values.values())).isfinite().all())
        if self.trainer.strategy.reduce_boolean_decision(finite, all=True):
            return
        bad = next(((name, float(value)) for name, value in values.items() if not value.isfinite()), None)
        what = f"{bad[0]} is {bad[1]}" if bad is not None else "a loss of another process is not finite"
        raise TrainingDivergedError(
            f"training step {int(self.step_count) + 1} (global step {self.global_step}): {what}; "
            "training stopped, checkpoints saved before are kept"
        )

    def finish_step(self, batch_size: int, losses: dict[str, Tensor]) -> None:
        """Loss check (before a checkpoint can save this step), EMA update, counters, throughput and loss logging
        at the end of a training step."""
        self.ensure_finite(losses)
        self.update_ema(batch_size)
        self.step_count += 1
        self.images_seen += batch_size
        now = time.perf_counter()
        if self._last_step_time is not None:
            self.training_seconds += now - self._last_step_time
            self.log("train/images_per_second", batch_size / (now - self._last_step_time), prog_bar=True)
        self._last_step_time = now
        self.log_dict(
            {
                **losses,
                "train/neural_resolution": float(self.neural_resolution()),
                "train/blur_sigma": self.blur_sigma(),
                "train/hours": self.training_seconds / 3600,
                "train/images_seen": float(self.images_seen),
            }
        )

    @torch.no_grad()
    def update_ema(self, batch_size: int) -> None:
        """Exponential moving average of the generator's weights (buffers such as w_avg are copied)."""
        beta = 0.5 ** (batch_size / max(self.hparams.ema_half_life, 1e-8))
        for ema, live in zip(self.generator_ema.parameters(), self.generator.parameters(), strict=True):
            ema.lerp_(live, 1.0 - beta)
        for ema_buffer, live_buffer in zip(self.generator_ema.buffers(), self.generator.buffers(), strict=True):
            ema_buffer.copy_(live_buffer)

    # -- validation ----------------------------------------------------------------------------------------

    def on_validation_start(self) -> None:
        """Validation draws from its own stream, seeded alike every time: the training stream is set aside.

        Otherwise the draws of a validation between a checkpoint and the next step (which a resumed run skips)
        shift every later latent, pose swap and noise, and resuming is not exact.
        """
        self._training_rng = rng_state()
        torch.manual_seed(self.hparams.seed)

    def on_validation_end(self) -> None:
        if self._training_rng is not None:
            set_rng_state(self._training_rng)
        self._training_rng = None

    def validation_step(self, batch: FaceBatch, batch_idx: int) -> dict[str, Any] | None:
        """D's scores on real and EMA samples, and the multi-view consistency of EMA renders; the first batch
        returns the sample grid (under ``"samples"``) for :class:`~pix2nerf.systems.callbacks.SampleGrids`."""
        real, c = batch["image"], batch["camera"]
        fake = self.generate(c, self.generator_ema)
        d_real = self.discriminate(real, self.real_raw(real), c).logits.mean()
        d_fake = self.discriminate(fake.image, fake.image_raw, c).logits.mean()
        grid = self.sample_grid()
        views = grid["image_raw"].shape[1]
        first, second = slice(0, views - 1), slice(1, views)
        cams = grid["cameras"]
        errors = [
            reprojection_error(
                grid["image_raw"][i, first],
                grid["depth"][i, first],
                cams[first],
                grid["image_raw"][i, second],
                cams[second],
            ).mean()
            for i in range(grid["image_raw"].shape[0])
        ]
        self.log_dict(
            {"val/d_real": d_real, "val/d_fake": d_fake, "val/reprojection_error": torch.stack(errors).mean()},
            batch_size=c.shape[0],
            sync_dist=True,
        )
        return {SAMPLES_KEY: grid} if batch_idx == 0 else None

    @torch.no_grad()
    def sample_grid(self) -> dict[str, Any]:
        """EMA renders of the fixed validation latents over the yaw sweep: (N, V, C, h, w) tensors."""
        generator = self.generator_ema
        yaws = torch.tensor(VALIDATION_YAWS, device=self.device)
        cameras = look_at(yaws, torch.zeros_like(yaws), device=self.device)
        frontal = look_at(0.0, 0.0, device=self.device).label()
        images, raws, depths, labels = [], [], [], []
        for z in self.val_z:
            ws = generator.mapping(z[None], frontal, truncation_psi=self.hparams.truncation_psi)
            out = generator.synthesis(ws.expand(len(yaws), -1, -1), cameras, noise_mode="const")
            images.append(out.image)
            raws.append(out.image_raw)
            depths.append(out.depth)
            if out.semantics is not None:
                labels.append(out.semantics.argmax(dim=1))
        grid = {
            "image": torch.stack(images),
            "image_raw": torch.stack(raws),
            "depth": torch.stack(depths),
            "cameras": cameras,
        }
        if labels:
            grid["semantics"] = torch.stack(labels)  # (N, V, h, w) int64 class ids
        return grid

    # -- checkpoints ---------------------------------------------------------------------------------------

    def network_specs(self) -> dict[str, dict[str, Any]]:
        """Specs (class + constructor arguments) of the networks an inference model needs."""
        return {"generator": network_spec(self.generator)}

    @property
    def camera_prior(self) -> PosePrior:
        """The cameras the generator was trained for (GAN3D takes them from the data: the face prior)."""
        return FACE_PRIOR

    def on_fit_start(self) -> None:
        if self.hparams.compile_networks and self.generator.backbone.synthesis is not None:
            self.generator.backbone.synthesis.compile()

    def on_train_start(self) -> None:
        self._last_step_time = time.perf_counter()  # the first step's time counts too

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to write non-finite weights or optimizer states (the file on disk, e.g. ``last.ckpt``, stays as it
        was); keep the training RNG state (also when saved during validation) so a resumed run draws the same
        latents, swaps and noise, the network specs so inference can rebuild the networks from the checkpoint alone,
        and the training time so far."""
        bad = next((name for name, tensor in checkpoint_tensors(checkpoint) if not tensor.isfinite().all()), None)
        if bad is not None:
            raise TrainingDivergedError(
                f"training step {int(self.step_count)} (global step {self.global_step}): {bad} is not finite; "
                "refusing to save the checkpoint, checkpoints saved before are kept"
            )
        checkpoint[TRAINING_SECONDS] = self.training_seconds
        checkpoint[NETWORK_SPECS] = self.network_specs()
        checkpoint[CAMERA_PRIOR] = dataclasses.asdict(self.camera_prior)
        checkpoint["rng_state"] = self._training_rng or rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.training_seconds = float(checkpoint.get(TRAINING_SECONDS, 0.0))
        state = checkpoint.get("rng_state")
        if state is not None:
            set_rng_state(state)


def rng_state() -> dict[str, Any]:
    """The global torch RNG state: CPU, and every CUDA device when there are some."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a :func:`rng_state` (its CUDA part only where CUDA is available)."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_tensors(checkpoint: dict[str, Any]) -> Iterator[tuple[str, Tensor]]:
    """The floating-point tensors of a checkpoint's weights and optimizer states, with readable names."""
    for name, tensor in checkpoint["state_dict"].items():
        if tensor.is_floating_point():
            yield name, tensor
    for index, optimizer in enumerate(checkpoint.get("optimizer_states", [])):
        for param, state in optimizer["state"].items():
            for key, tensor in state.items():
                if torch.is_tensor(tensor) and tensor.is_floating_point():
                    yield f"optimizer {index} {key} of parameter {param}", tensor
