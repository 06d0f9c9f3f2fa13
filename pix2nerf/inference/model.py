"""The inference model: a generator (EMA weights), an optional encoder and the camera prior they were trained on."""

from __future__ import annotations

from contextlib import AbstractContextManager

from torch import Tensor, nn

from pix2nerf.cameras import FACE_PRIOR, Cameras, PosePrior, look_at
from pix2nerf.layers import resize
from pix2nerf.networks.encoder import Encoder, EncoderOutput
from pix2nerf.networks.generator import Generator, GeneratorOutput
from pix2nerf.networks.residual import PlaneResidual, check_residual_fits
from pix2nerf.precision import Precision, autocast, check_precision
from pix2nerf.runtime import adapt_threads


class FaceModel(nn.Module):
    """What inference needs from a trained run, independent of Lightning.

    A plain view over the networks: it copies and freezes nothing (a training system validates through one built
    over its own networks). :func:`~pix2nerf.inference.load_model` returns it in eval mode without gradients; call
    ``.eval()`` on one built from networks in training mode, or renders jitter their ray samples. It is the one seam
    for "render a trained face": a per-image fine-tuned generator (PTI) is another view,
    :meth:`with_generator`, that shares everything else.

    Args:
        generator: the generator (a run's EMA weights).
        encoder: the inversion encoder (None for a GAN without one: inversion then starts from w_avg).
        prior: the camera sphere and pose prior; yaw/pitch angles are turned into cameras on it.
        precision: ``"bf16"`` runs the networks under bf16 autocast (about twice as fast on CPUs with AMX and
            on recent GPUs; compositing stays float32), ``"fp32"`` in float32. Outputs are float32 either way.
        residual: the hybrid encoder's stage 2 (needs an encoder and a tri-plane generator): per-image plane
            offsets from the input and the stage-1 render, for detail outside the latent space.
    """

    def __init__(
        self,
        generator: Generator,
        encoder: Encoder | None = None,
        prior: PosePrior = FACE_PRIOR,
        precision: Precision = "fp32",
        residual: PlaneResidual | None = None,
    ) -> None:
        super().__init__()
        if residual is not None:
            if encoder is None:
                raise ValueError("a plane residual refines an encoder's inversion: it needs an encoder")
            check_residual_fits(residual, generator)
        self.generator, self.encoder, self.residual = generator, encoder, residual
        self.prior = prior
        self.precision = check_precision(precision)

    def autocast(self) -> AbstractContextManager:
        """The autocast context of the model's ``precision`` on its device; adapts the CPU threads to the load
        first (see :mod:`pix2nerf.runtime`), since every encode and render passes through here."""
        adapt_threads()
        return autocast(self.precision, self.w_avg.device)

    @property
    def image_resolution(self) -> int:
        """Size of the images the model renders and the encoder reads."""
        return self.generator.image_resolution

    @property
    def w_avg(self) -> Tensor:
        """(w_dim,) the generator's average latent."""
        return self.generator.w_avg

    def with_generator(self, generator: Generator) -> FaceModel:
        """A view of this model rendering with ``generator`` (e.g. a per-image fine-tuned copy, PTI) that shares
        the encoder, residual, prior and precision; nothing is copied. It starts in this model's mode."""
        view = FaceModel(generator, self.encoder, self.prior, self.precision, self.residual)
        view.training = self.training
        return view

    def cameras(self, yaw_pitch: Tensor, zoom: float = 1.0) -> Cameras:
        """Cameras at (yaw, pitch) (B, 2) radians on the prior's sphere, looking at its pivot, on the device of
        ``yaw_pitch``. ``zoom`` scales the prior's focal length (not the radius: that would move the volume out of
        the generator's fixed ray bounds)."""
        prior = self.prior
        return look_at(
            yaw_pitch[:, 0], yaw_pitch[:, 1], prior.radius, prior.target, prior.focal * zoom, device=yaw_pitch.device
        )

    def encode(self, image: Tensor) -> EncoderOutput:
        """image (B, 3, H, W) in [-1, 1] -> latents, yaw/pitch and, with a residual, plane offsets (rendering the
        stage-1 inversion at the input's size once); without an encoder: w_avg, frontal."""
        encoded = self.encode_stage1(image)
        if self.residual is None:
            return encoded
        stage1 = self.render(encoded.w, encoded.yaw_pitch).image
        with self.autocast():
            offsets = self.residual(image, resize(stage1, image.shape[-1])).float()
        return EncoderOutput(w=encoded.w, yaw_pitch=encoded.yaw_pitch, plane_offsets=offsets)

    def encode_stage1(self, image: Tensor) -> EncoderOutput:
        """image (B, 3, H, W) in [-1, 1] -> latents and yaw/pitch from the encoder alone, without the residual's
        render (all a pose estimate needs); without an encoder: w_avg, frontal."""
        if self.encoder is not None:
            with self.autocast():
                encoded = self.encoder(image, self.w_avg)
            return EncoderOutput(w=encoded.w.float(), yaw_pitch=encoded.yaw_pitch.float())
        batch = image.shape[0]
        w = self.w_avg.expand(batch, self.generator.num_ws, -1).clone()
        return EncoderOutput(w=w, yaw_pitch=image.new_zeros(batch, 2))

    def render(
        self,
        w: Tensor,
        yaw_pitch: Tensor,
        neural_resolution: int | None = None,
        num_coarse: int | None = None,
        num_importance: int | None = None,
        plane_offsets: Tensor | None = None,
        super_resolve: bool = True,
    ) -> GeneratorOutput:
        """Render latents w (B, num_ws, w_dim) with ``plane_offsets`` (B, 3, C, P, P) from :meth:`encode`, or
        None, at (yaw, pitch) (B, 2) with this model's generator (for a per-image fine-tuned one, render with
        :meth:`with_generator`'s view). ``neural_resolution`` is the neural rendering size (default: the generator's);
        ``super_resolve=False`` skips super-resolution (``image`` is the neural rendering)."""
        with self.autocast():
            return self.generator.synthesis(
                w,
                self.cameras(yaw_pitch.to(w.device)),
                neural_resolution=neural_resolution,
                num_coarse=num_coarse,
                num_importance=num_importance,
                noise_mode="const",
                plane_offsets=plane_offsets,
                super_resolve=super_resolve,
            )
