"""Pix2NeRF: the GAN system plus an encoder that inverts images into the generator, trained jointly."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import kornia
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from pix2nerf.cameras import (
    FACE_PRIOR,
    Cameras,
    PosePrior,
    look_at,
    mirror_yaw_pitch,
    prior_cameras,
    sample_yaw_pitch,
)
from pix2nerf.data import FaceBatch, TeacherCache
from pix2nerf.data.semantics import resize_labels
from pix2nerf.evaluation import HEADLINE_OFFSET_DEG, NOVEL_OFFSETS_DEG, SourceViews, score_inversions
from pix2nerf.inference import FaceModel
from pix2nerf.inference.bundle import weights_digest
from pix2nerf.io import load_encoder_bundle, load_generator_bundle
from pix2nerf.layers import resize
from pix2nerf.losses import generator_loss
from pix2nerf.losses.perceptual import LPIPS
from pix2nerf.metrics import mean_iou, ssim
from pix2nerf.networks.discriminator import Discriminator
from pix2nerf.networks.encoder import Encoder, EncoderOutput
from pix2nerf.networks.generator import Generator, GeneratorOutput
from pix2nerf.networks.residual import PlaneResidual, check_residual_fits
from pix2nerf.networks.specs import network_spec
from pix2nerf.precision import Precision
from pix2nerf.systems.gan import GAN3D

GENERATOR_MODES = ("train", "freeze", "reconstruct")
TEACHER_OPACITY = 0.5
"""A teacher render's pixel is foreground (for the depth and silhouette losses) above this opacity."""
FULL_COVERAGE = 0.999
"""A neural-resolution pixel is foreground for the depth loss when the exact mask covers all of it."""


def encoder_augmentation(probability: float) -> kornia.augmentation.AugmentationSequential | None:
    """Small shifts, scale, in-plane roll and colour jitter of encoder inputs, so imperfect crops invert."""
    if probability <= 0:
        return None
    augment = kornia.augmentation
    return augment.AugmentationSequential(
        augment.RandomAffine(
            degrees=5.0, translate=(0.05, 0.05), scale=(0.95, 1.05), padding_mode="border", p=probability
        ),
        augment.ColorJiggle(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.02, p=probability),
    )


@dataclass
class TeacherViews:
    """Renders of B latents of a teacher generator, each from 1 + K cameras of the prior.

    Attributes:
        batch: a multi-view batch as the synthetic heads give it (``image``, ``camera``, ``yaw_pitch``, ``depth``,
            ``mask`` and ``target_*`` (B, K, ...)); depth and mask at the neural rendering size.
        ws: (B, num_ws, w_dim) the latents. params: the teacher's field parameters of ws (tri-planes (B, 3, C, H, W)
            or ws for the hash grid).
    """

    batch: FaceBatch
    ws: Tensor
    params: Tensor


class Pix2NeRF(GAN3D):
    """Pix2NeRF objective on top of :class:`GAN3D` (whose G and D steps it reuses unchanged).

    Each training step runs the GAN steps, then an encoder step with
    (2) inversion of generated images (latent and pose regression),
    (3) reconstruction of real images at the predicted pose (MSE + (1 - SSIM) + LPIPS),
    (4) a conditional adversarial loss on novel views of the inverted latents,
    (4b) optionally a mirror-symmetry prior for the unseen side (the view at the mirrored pose must look like the
    mirrored input; faces are roughly symmetric), which single-view real data has nothing else to constrain.
    During ``warmup_steps`` the encoder's outputs are detached in (3) and (4), so only (2) trains it.

    With exact multi-view data (synthetic heads with ``data.target_views`` K > 0) it adds (5) multi-view
    supervision (LP3D-style distillation from ground truth): the inverted latent is rendered at the source's and
    the K targets' exact cameras and compared with the exact views (L1, LPIPS), depths and foreground masks, and
    the encoder's pose is regressed on the exact source pose; semantic generators also get the cross-entropy of
    their rendered class maps against the exact label maps. (5) is supervised and well posed, so it trains the
    encoder from the first step.

    With ``generator_teacher_views`` K > 0 it adds (6) distillation from a generator (LP3D-style; any trained or
    imported one, e.g. a frozen EG3D model): the EMA generator renders B fresh latents from 1 + K cameras of the
    prior, and the encoder's inversion of the first view gets (5)'s losses against all of them (colour, depth and
    silhouette of the renders, the teacher's most likely classes for semantic generators, the exact pose) plus L1
    to the teacher's tri-planes. It works on any data, real photos included.

    With a ``residual`` (the hybrid encoder's stage 2, GOAE/TriPlaneNet-style) the encoder's latent is rendered at
    its pose, and the residual turns the input and that render into tri-plane offsets; (3) to (5) then render the
    offset planes through the generator's own decoder and renderer. Stage 2 is usually trained on a trained stage 1
    with ``freeze_encoder``.

    Args:
        encoder: the image encoder.
        optimizer_e: optimizer factory for the encoder.
        latent_weight, pose_weight: weights of (2).
        mse_weight, ssim_weight, lpips_weight: weights of (3).
        adversarial_weight: weight of (4).
        symmetry_weight: weight of (4b), the MSE between the render at the mirrored pose and the flipped input.
        warmup_steps: training steps before (3) and (4) reach the encoder.
        generator_mode: ``"train"`` (G keeps its GAN training and also learns from (3) to (5)), ``"freeze"``
            (a pretrained G stays fixed; only D and the encoder train) or ``"reconstruct"`` (no GAN steps: G and
            the encoder learn from the encoder's losses only, as an autoencoder with exact 3D supervision; D is
            neither trained nor used, so set ``adversarial_weight`` to 0).
        gan_checkpoint: a GAN3D Lightning checkpoint to start G, its EMA and D from.
        generator_bundle: an inference bundle (e.g. an EG3D model imported with ``tools/import_eg3d.py``) to start
            G and its EMA from; its generator spec must equal ``generator``'s. Exclusive with ``gan_checkpoint``.
        encoder_bundle: an inference bundle with an encoder (e.g. a previous run's export) to start the encoder
            from; its encoder spec must equal ``encoder``'s. These three files are read when fitting starts
            (:meth:`setup`), not by the constructor, so a mismatch is reported then.
        grow_superresolution: ``generator_bundle`` renders at its output size and ``generator`` adds a
            super-resolution to a larger ``image_resolution`` (progressive growing, e.g. a 32^2 model to 64^2):
            the rest is copied and the new super-resolution first upsamples the bundle's image (see
            :func:`~pix2nerf.io.load_generator_bundle`).
        lpips_net, lpips_offline_random: LPIPS backbone; the offline random backbone is for tests only.
        encoder_augment_p: probability of each encoder-input augmentation.
        novel_prior: camera prior of the novel views in (4) and of the generated images in (2): a
            :class:`PosePrior` or its fields as a mapping. The CLI passes a ``PosePrior``, but the hyperparameters it
            saves in checkpoints hold the parsed config, where the prior is a plain dict: rebuilding a system from
            them without jsonargparse (``Pix2NeRF(**hyper_parameters)``, or ``load_from_checkpoint`` on a checkpoint
            without Lightning's ``_instantiator``) passes that dict.
        inversion_truncation_psi: truncation of the generated images the encoder learns to invert in (2).
        multiview_weight, multiview_lpips_weight: L1 and LPIPS of (5)'s renders against the exact views.
        depth_weight: L1 of (5)'s z-depth against the exact depth on foreground pixels (world units).
        opacity_weight: L1 of (5)'s opacity against the exact foreground coverage.
        semantic_weight: cross-entropy of (5)'s rendered class maps against the exact label maps (semantic
            generators only; the batch must carry ``semantics``).
        exact_pose_weight: MSE of the encoder's (yaw, pitch) on real images against exact labels, when the batch
            has them (synthetic heads).
        residual: stage 2 of the hybrid encoder (tri-plane generators only), trained by the encoder optimizer;
            ``encoder_bundle`` starts it too when the bundle has one.
        freeze_encoder: keep the (stage-1) encoder fixed and train the residual only (needs ``residual``).
        generator_teacher_views: K extra views per teacher latent in (6) (0: no generator teacher). The weights of
            (5) apply to (6)'s terms too (logged as ``teacher_*``).
        teacher_field_weight: L1 between the inversion's field parameters (tri-planes, with the residual's offsets)
            and the teacher's, in (6).
        teacher_cache: a folder where (6)'s samples are kept (:class:`~pix2nerf.data.TeacherCache`), for slow
            teachers such as imported EG3D models: the first ``teacher_cache_size`` samples are rendered and saved,
            later steps (and later runs with the same teacher and settings) draw from them. Needs
            ``generator_mode="freeze"`` (a training teacher's samples go stale). Memory: the cache stays in RAM.
        teacher_cache_size: samples the cache holds.
        **gan_kwargs: :class:`GAN3D` arguments.
    """

    NOT_HYPERPARAMETERS = (*GAN3D.NOT_HYPERPARAMETERS, "encoder", "residual", "optimizer_e")

    def __init__(
        self,
        generator: Generator,
        discriminator: Discriminator,
        encoder: Encoder,
        optimizer_g: OptimizerCallable,
        optimizer_d: OptimizerCallable,
        optimizer_e: OptimizerCallable,
        latent_weight: float = 1.0,
        pose_weight: float = 1.0,
        mse_weight: float = 1.0,
        ssim_weight: float = 1.0,
        lpips_weight: float = 1.0,
        adversarial_weight: float = 0.1,
        warmup_steps: int = 1000,
        generator_mode: Literal["train", "freeze", "reconstruct"] = "train",
        gan_checkpoint: str | None = None,
        generator_bundle: str | None = None,
        encoder_bundle: str | None = None,
        grow_superresolution: bool = False,
        lpips_net: Literal["alex", "vgg", "squeeze"] = "alex",
        lpips_offline_random: bool = False,
        encoder_augment_p: float = 0.5,
        novel_prior: PosePrior | Mapping[str, Any] = FACE_PRIOR,
        inversion_truncation_psi: float = 1.0,
        multiview_weight: float = 0.0,
        multiview_lpips_weight: float = 0.0,
        depth_weight: float = 0.0,
        opacity_weight: float = 0.0,
        semantic_weight: float = 0.0,
        symmetry_weight: float = 0.0,
        exact_pose_weight: float = 0.0,
        residual: PlaneResidual | None = None,
        freeze_encoder: bool = False,
        generator_teacher_views: int = 0,
        teacher_field_weight: float = 0.0,
        teacher_cache: str | None = None,
        teacher_cache_size: int = 4096,
        **gan_kwargs: Any,
    ) -> None:
        super().__init__(generator, discriminator, optimizer_g, optimizer_d, **gan_kwargs)
        if (encoder.num_ws, encoder.w_dim) != (generator.num_ws, generator.w_dim):
            layout = f"num_ws={generator.num_ws}, w_dim={generator.w_dim}"
            raise ValueError(
                f"the encoder predicts {encoder.num_ws} x {encoder.w_dim} latents but the generator takes "
                f"{generator.num_ws} x {generator.w_dim}; set the encoder's {layout}"
            )
        if residual is not None:
            check_residual_fits(residual, generator)
        if freeze_encoder and residual is None:
            raise ValueError("freeze_encoder trains the plane residual only; pass a residual (or drop freeze_encoder)")
        if generator_mode not in GENERATOR_MODES:
            raise ValueError(f"generator_mode must be one of {GENERATOR_MODES}, got {generator_mode!r}")
        if generator_mode == "reconstruct" and adversarial_weight > 0:
            raise ValueError("generator_mode='reconstruct' trains no discriminator: set adversarial_weight to 0")
        if teacher_cache is not None and (generator_mode != "freeze" or generator_teacher_views == 0):
            raise ValueError(
                "teacher_cache keeps a frozen teacher's samples: set generator_mode='freeze' and "
                "generator_teacher_views > 0 (or drop teacher_cache)"
            )
        if semantic_weight > 0 and generator.num_semantic_classes == 0:
            raise ValueError(
                "semantic_weight needs a generator that renders semantics: set its num_semantic_classes "
                "(or semantic_weight: 0)"
            )
        self.encoder = encoder
        self.residual = residual
        self.optimizer_e = optimizer_e
        self.novel_prior = novel_prior if isinstance(novel_prior, PosePrior) else PosePrior(**novel_prior)
        self.lpips: LPIPS | None = None
        if lpips_weight > 0 or multiview_lpips_weight > 0:
            self.lpips = LPIPS(lpips_net, offline_random_backbone=lpips_offline_random)
        self.encoder_augmentation = encoder_augmentation(encoder_augment_p)
        self._teacher_weights: str | None = None
        self._teacher_cache: TeacherCache | None = None
        if gan_checkpoint and generator_bundle:
            raise ValueError("pass gan_checkpoint or generator_bundle, not both")
        if grow_superresolution and not generator_bundle:
            raise ValueError("grow_superresolution grows the generator of generator_bundle: pass one")
        self._starting_weights_loaded = False
        if freeze_encoder:
            self.encoder.requires_grad_(False)
        if generator_mode == "freeze":
            self.generator.requires_grad_(False)

    def setup(self, stage: str) -> None:
        """Start from ``gan_checkpoint``, ``generator_bundle`` and ``encoder_bundle`` when fitting starts (once per
        system): the constructor reads no files, so rebuilding a trained system (``load_from_checkpoint``, export,
        validate/test) needs none of them. Lightning restores a resumed run's checkpoint after this, over these
        weights."""
        if stage != "fit" or self._starting_weights_loaded:
            return
        hparams = self.hparams
        if hparams.gan_checkpoint:
            self.load_gan(hparams.gan_checkpoint)
        if hparams.generator_bundle:
            load_generator_bundle(
                hparams.generator_bundle,
                self.generator,
                self.generator_ema,
                grow_superresolution=hparams.grow_superresolution,
            )
        if hparams.encoder_bundle:
            load_encoder_bundle(hparams.encoder_bundle, self.encoder, self.residual)
        self._starting_weights_loaded = True

    def load_gan(self, path: str) -> None:
        """Start G, its EMA and D from a GAN3D checkpoint (weights only; safe loading).

        A pose head that the GAN's discriminator did not have starts fresh; anything else must match.
        """
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        prefixes = ("generator.", "generator_ema.", "discriminator.")
        missing, unexpected = self.load_state_dict(
            {k: v for k, v in state.items() if k.startswith(prefixes)}, strict=False
        )
        wrong = [k for k in missing if k.startswith(prefixes) and not k.startswith("discriminator.pose.")]
        if wrong or unexpected:
            raise ValueError(
                f"{path} does not match this model's generator/discriminator (missing {wrong[:5]}, unexpected "
                f"{unexpected[:5]}); use the checkpoint of a GAN3D run with the same network configuration"
            )

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        trained = [] if self.hparams.freeze_encoder else list(self.encoder.parameters())
        if self.residual is not None:
            trained += list(self.residual.parameters())
        return [*super().configure_optimizers(), self.optimizer_e(trained)]

    def network_specs(self) -> dict[str, dict[str, Any]]:
        specs = {**super().network_specs(), "encoder": network_spec(self.encoder)}
        if self.residual is not None:
            specs["residual"] = network_spec(self.residual)
        return specs

    @property
    def camera_prior(self) -> PosePrior:
        return self.novel_prior

    @property
    def warming_up(self) -> bool:
        return int(self.step_count) < self.hparams.warmup_steps

    def encode(self, image: Tensor, augment: bool = False) -> EncoderOutput:
        if augment and self.encoder_augmentation is not None:
            image = (self.encoder_augmentation(image * 0.5 + 0.5) * 2 - 1).clamp(-1, 1)
        return self.encoder(image, self.generator.w_avg)

    def render(self, w: Tensor, angles: Tensor, plane_offsets: Tensor | None = None) -> GeneratorOutput:
        """Render latents (B, num_ws, w_dim) with tri-plane offsets (B, 3, C, P, P) or None from cameras at
        (yaw, pitch) (B, 2) on the prior's sphere, with the trained generator."""
        cameras = prior_cameras(angles.to(w.device), self.novel_prior)
        return self.generator.synthesis(
            w, cameras, neural_resolution=self.neural_resolution(), plane_offsets=plane_offsets
        )

    def plane_offsets(self, image: Tensor, encoded: EncoderOutput) -> Tensor | None:
        """Stage 2: tri-plane offsets (B, 3, C, P, P) from images (B, 3, H, W) and the stage-1 render of their
        encoding (an input only, so no gradient flows back through it); None without a residual."""
        if self.residual is None:
            return None
        with torch.no_grad():
            stage1 = self.render(encoded.w, encoded.yaw_pitch).image
        return self.residual(image, resize(stage1, image.shape[-1]))

    # -- losses ------------------------------------------------------------------------------------------------

    def inversion_loss(self, batch_size: int, device: torch.device) -> dict[str, Tensor]:
        """(2): regress the latent and pose of generated images (G is not updated by it)."""
        angles = sample_yaw_pitch(batch_size, self.novel_prior, device=device)
        with torch.no_grad():
            z = torch.randn(batch_size, self.generator.z_dim, device=device)
            frontal = look_at(torch.zeros(batch_size), torch.zeros(batch_size), device=device).label()
            ws = self.generator.mapping(z, frontal, truncation_psi=self.hparams.inversion_truncation_psi)
            fake = self.render(ws, angles)
        prediction = self.encode(fake.image, augment=True)
        return {
            "latent": F.mse_loss(prediction.w, ws),
            "pose": F.mse_loss(prediction.yaw_pitch, angles),
        }

    def reconstruction_loss(self, real: Tensor, recon: Tensor) -> dict[str, Tensor]:
        """(3): MSE + (1 - SSIM) + LPIPS between reconstructions and real images, both (B, 3, H, W)."""
        losses = {"mse": F.mse_loss(recon, real), "ssim": 1.0 - ssim(recon, real).mean()}
        if self.lpips is not None:
            losses["lpips"] = self.lpips(recon, real).mean()
        return losses

    def conditional_adversarial_loss(self, w: Tensor, plane_offsets: Tensor | None = None) -> Tensor:
        """(4): novel views of inverted latents (and plane offsets), at cameras from the prior, must fool D."""
        angles = sample_yaw_pitch(w.shape[0], self.novel_prior, device=w.device)
        novel = self.render(w, angles, plane_offsets=plane_offsets)
        c = prior_cameras(angles, self.novel_prior).label()
        return generator_loss(self.discriminate(novel.image, novel.image_raw, c).logits)

    def multiview_loss(
        self, w: Tensor, batch: FaceBatch, plane_offsets: Tensor | None = None, params: Tensor | None = None
    ) -> dict[str, Tensor]:
        """(5): render latents w (B, num_ws, w_dim) with plane offsets (B, 3, C, P, P) or None at the source's and
        the K targets' exact cameras and compare with the exact views: colour L1 (and LPIPS), z-depth L1 on fully
        covered pixels, opacity vs coverage, and for ``semantic_weight`` > 0 the cross-entropy of the class maps
        against ``semantics`` (B, H, W) / ``target_semantics`` (B, K, H, W). ``params``: the field parameters of w
        (with the offsets), when already computed."""
        h = self.hparams
        if "target_image" not in batch:
            raise ValueError(
                "multi-view losses need exact extra views: use synthetic heads with data.init_args.target_views > 0"
            )
        images = torch.cat([batch["image"][:, None], batch["target_image"]], dim=1).flatten(0, 1)
        labels = torch.cat([batch["camera"][:, None], batch["target_camera"]], dim=1).flatten(0, 1)
        depth = torch.cat([batch["depth"][:, None], batch["target_depth"]], dim=1).flatten(0, 1)
        mask = torch.cat([batch["mask"][:, None], batch["target_mask"]], dim=1).flatten(0, 1)
        views = images.shape[0] // w.shape[0]
        params = self.generator.field_params(w, plane_offsets=plane_offsets) if params is None else params
        params = params.repeat_interleave(views, dim=0)
        out = self.generator.synthesis(
            w.repeat_interleave(views, dim=0),
            Cameras.from_label(labels),
            neural_resolution=self.neural_resolution(),
            params=params,
        )
        if images.shape[-1] != out.image.shape[-1]:
            images = resize(images, out.image.shape[-1])
        losses = {"multiview_l1": (out.image - images).abs().mean()}
        if h.multiview_lpips_weight > 0:
            assert self.lpips is not None  # built when multiview_lpips_weight > 0
            losses["multiview_lpips"] = self.lpips(out.image, images).mean()
        size = out.depth.shape[-1]
        coverage = F.adaptive_avg_pool2d(mask.float(), size)
        covered = coverage > FULL_COVERAGE
        true_depth = F.adaptive_avg_pool2d(torch.where(mask, depth, 0.0), size) / coverage.clamp_min(1e-6)
        losses["depth"] = (out.depth - true_depth).abs()[covered].mean() if covered.any() else out.depth.sum() * 0
        losses["opacity"] = (out.opacity - coverage).abs().mean()
        if h.semantic_weight > 0:
            if "target_semantics" not in batch:
                raise ValueError("semantic_weight needs label maps in the batch: use synthetic heads (they have them)")
            labels = torch.cat([batch["semantics"][:, None], batch["target_semantics"]], dim=1).flatten(0, 1)
            assert out.semantics is not None  # semantic_weight > 0 needs a semantic generator (checked when built)
            losses["semantic"] = F.cross_entropy(out.semantics, resize_labels(labels, out.semantics.shape[-1]))
        return losses

    @torch.no_grad()
    def teacher_views(self, batch_size: int, device: torch.device) -> TeacherViews:
        """(6)'s data: fresh renders of the teacher (:meth:`render_teacher_views`), or with ``teacher_cache``
        rows of the on-disk cache once it holds ``teacher_cache_size`` of them (until then, fresh renders are
        added to it)."""
        cache = self.teacher_cache()
        if cache is not None and cache.full:
            batch, ws, params = cache.sample(batch_size, device=device)
            return TeacherViews(cast(FaceBatch, batch), ws, params)
        teacher = self.render_teacher_views(batch_size, device)
        if cache is not None:
            cache.add(cast(dict[str, Tensor], teacher.batch), teacher.ws, teacher.params)  # a FaceBatch holds tensors
        return teacher

    def teacher_cache(self) -> TeacherCache | None:
        """The cache of a frozen teacher's samples (None without ``teacher_cache``), fingerprinted by the
        teacher's weights and every setting its samples depend on."""
        h = self.hparams
        if h.teacher_cache is None:
            return None
        if self._teacher_weights is None:  # the teacher is frozen: hash its weights once
            self._teacher_weights = weights_digest(self.generator_ema.state_dict())
        settings = {
            "teacher": self._teacher_weights,
            "views": 1 + h.generator_teacher_views,
            "neural_resolution": self.neural_resolution(),
            "truncation_psi": h.inversion_truncation_psi,
            "prior": dataclasses.asdict(self.novel_prior),
            "opacity_threshold": TEACHER_OPACITY,
        }
        fingerprint = json.dumps(settings, sort_keys=True)
        if self._teacher_cache is None or self._teacher_cache.fingerprint != fingerprint:
            self._teacher_cache = TeacherCache(h.teacher_cache, h.teacher_cache_size, fingerprint)
        return self._teacher_cache

    @torch.no_grad()
    def render_teacher_views(self, batch_size: int, device: torch.device) -> TeacherViews:
        """B fresh latents of the EMA generator (frontal conditioning, ``inversion_truncation_psi``) rendered
        from 1 + ``generator_teacher_views`` cameras drawn from ``novel_prior``."""
        teacher, views = self.generator_ema, 1 + self.hparams.generator_teacher_views
        z = torch.randn(batch_size, teacher.z_dim, device=device)
        frontal = look_at(torch.zeros(batch_size), torch.zeros(batch_size), device=device).label()
        ws = teacher.mapping(z, frontal, truncation_psi=self.hparams.inversion_truncation_psi)
        params = teacher.field_params(ws, noise_mode="const")
        angles = sample_yaw_pitch(batch_size * views, self.novel_prior, device=device)
        cameras = prior_cameras(angles, self.novel_prior)
        out = teacher.synthesis(
            ws.repeat_interleave(views, dim=0),
            cameras,
            neural_resolution=self.neural_resolution(),
            params=params.repeat_interleave(views, dim=0),
        )
        fields = {
            "image": out.image,
            "camera": cameras.label(),
            "yaw_pitch": angles,
            "depth": out.depth,
            "mask": out.opacity > TEACHER_OPACITY,
        }
        if out.semantics is not None:
            fields["semantics"] = out.semantics.argmax(dim=1)
        batch: dict[str, Tensor] = {}
        for name, value in fields.items():
            value = value.unflatten(0, (batch_size, views))
            batch[name] = value[:, 0]
            if name != "yaw_pitch":
                batch[f"target_{name}"] = value[:, 1:]
        return TeacherViews(cast(FaceBatch, batch), ws, params)

    def teacher_loss(self, device: torch.device, batch_size: int) -> dict[str, Tensor]:
        """(6): invert the teacher's first views; (5)'s terms against all its views, exact pose, field L1."""
        teacher = self.teacher_views(batch_size, device)
        image = teacher.batch["image"]
        encoded = self.encode(image)
        offsets = self.plane_offsets(image, encoded)
        params = self.generator.field_params(encoded.w, plane_offsets=offsets)
        terms = self.multiview_loss(encoded.w, teacher.batch, offsets, params)
        terms["exact_pose"] = F.mse_loss(encoded.yaw_pitch, teacher.batch["yaw_pitch"])
        terms["field"] = (params - teacher.params).abs().mean()
        return {f"teacher_{name}": value for name, value in terms.items()}

    # -- training ---------------------------------------------------------------------------------------------

    def training_step(self, batch: FaceBatch, batch_idx: int) -> None:
        opt_g, opt_d, opt_e = self.optimizer_list()
        h = self.hparams
        losses: dict[str, Tensor] = {}
        if h.generator_mode == "train":
            losses["train/loss_g"] = self.generator_step(batch, opt_g)
        if h.generator_mode != "reconstruct":
            losses.update(self.discriminator_step(batch, opt_d))

        real = batch["image"]
        inversion = self.inversion_loss(real.shape[0], real.device)
        encoded = self.encode(real)
        w, angles = encoded.w, encoded.yaw_pitch
        offsets = self.plane_offsets(real, encoded)
        supervised: dict[str, Tensor] = {}
        if h.exact_pose_weight > 0 and "yaw_pitch" in batch:
            supervised["exact_pose"] = F.mse_loss(angles, batch["yaw_pitch"])
        multiview = h.multiview_weight > 0 or h.multiview_lpips_weight > 0 or h.depth_weight > 0 or h.opacity_weight > 0
        if multiview and ("target_image" in batch or h.generator_teacher_views == 0):  # (6) alone needs no targets
            supervised.update(self.multiview_loss(w, batch, offsets))
        if h.generator_teacher_views > 0:
            supervised.update(self.teacher_loss(real.device, real.shape[0]))
        if self.warming_up:  # the residual's offsets carry no encoder gradient (their stage-1 input is detached)
            w, angles = w.detach(), angles.detach()
        if h.symmetry_weight > 0:  # one render of the input and the mirrored pose
            both = self.render(
                torch.cat([w, w]),
                torch.cat([angles, mirror_yaw_pitch(angles)]),
                plane_offsets=None if offsets is None else torch.cat([offsets, offsets]),
            ).image
            recon_image, mirrored = both.chunk(2)
            supervised["symmetry"] = F.mse_loss(mirrored, real.flip(-1))
        else:
            recon_image = self.render(w, angles, plane_offsets=offsets).image
        reconstruction = self.reconstruction_loss(real, recon_image)
        zero = torch.zeros((), device=real.device)
        adversarial = zero
        if h.adversarial_weight > 0:
            self.discriminator.requires_grad_(False)
            adversarial = self.conditional_adversarial_loss(w, offsets)
            self.discriminator.requires_grad_(True)
        weights = {
            "latent": h.latent_weight,
            "pose": h.pose_weight,
            "mse": h.mse_weight,
            "ssim": h.ssim_weight,
            "lpips": h.lpips_weight,
            "exact_pose": h.exact_pose_weight,
            "multiview_l1": h.multiview_weight,
            "multiview_lpips": h.multiview_lpips_weight,
            "depth": h.depth_weight,
            "opacity": h.opacity_weight,
            "semantic": h.semantic_weight,
            "symmetry": h.symmetry_weight,
            "teacher_multiview_l1": h.multiview_weight,
            "teacher_multiview_lpips": h.multiview_lpips_weight,
            "teacher_depth": h.depth_weight,
            "teacher_opacity": h.opacity_weight,
            "teacher_semantic": h.semantic_weight,
            "teacher_exact_pose": h.exact_pose_weight,
            "teacher_field": h.teacher_field_weight,
        }
        terms = {**inversion, **reconstruction, **supervised}
        loss = sum((weights[name] * terms.get(name, zero) for name in weights), h.adversarial_weight * adversarial)
        trains_generator = h.generator_mode in ("train", "reconstruct")
        self.optimize([opt_e, opt_g] if trains_generator else [opt_e], loss, "train/loss_e")

        losses.update({f"train/{name}": value.detach() for name, value in terms.items()})
        losses["train/conditional_adversarial"] = adversarial.detach()
        losses["train/loss_e"] = loss.detach()
        self.finish_step(real.shape[0], losses)

    # -- validation and test ----------------------------------------------------------------------------------

    def face_model(self) -> FaceModel:
        """The EMA generator, the encoder (and residual) and the camera prior as an inference model: a view sharing
        the networks, so validation scores exactly what an exported bundle will do."""
        trainer = self._trainer
        precision: Precision = "bf16" if trainer is not None and "bf16" in str(trainer.precision) else "fp32"
        return FaceModel(self.generator_ema, self.encoder, self.novel_prior, precision, self.residual)

    def validation_step(self, batch: FaceBatch, batch_idx: int) -> None:
        """The held-out protocol (:mod:`pix2nerf.evaluation`) on validation images, novel views at +-30 degrees."""
        self.log_scores("val", batch, (HEADLINE_OFFSET_DEG,))

    def test_step(self, batch: FaceBatch, batch_idx: int) -> None:
        """The full held-out protocol: novel views at +-15/30/45 degrees, LPIPS when the system has its backbone,
        semantic mIoU when the generator renders semantics."""
        self.log_scores("test", batch, NOVEL_OFFSETS_DEG, self.lpips)

    def log_scores(
        self, stage: str, batch: FaceBatch, offsets_deg: tuple[int, ...], perceptual: LPIPS | None = None
    ) -> None:
        """Log the batch means of :func:`~pix2nerf.evaluation.score_inversions` under ``stage/``."""
        views = SourceViews.from_batch(batch)
        scores = score_inversions(
            self.face_model(), views, offsets_deg, neural_resolution=self.neural_resolution(), perceptual=perceptual
        )
        metrics = {f"{stage}/{name}": value.nanmean() for name, value in scores.per_image.items()}
        if scores.semantic_labels is not None and views.semantics is not None:
            classes = self.generator.num_semantic_classes
            metrics[f"{stage}/semantic_miou"] = mean_iou(scores.semantic_labels, views.semantics, classes)
        self.log_dict(metrics, batch_size=len(views.images), sync_dist=True)
