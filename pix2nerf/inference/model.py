"""The inference model: a generator (EMA weights), an optional encoder and the camera prior they were trained on."""

from __future__ import annotations

from contextlib import AbstractContextManager

from torch import Tensor, nn

from pix2nerf.cameras import FACE_PRIOR, Cameras, PosePrior, prior_cameras
from pix2nerf.networks.encoder import Encoder, EncoderOutput
from pix2nerf.networks.generator import Generator, GeneratorOutput
from pix2nerf.precision import Precision, autocast, check_precision
from pix2nerf.runtime import adapt_threads


class FaceModel(nn.Module):
    """What inference needs from a trained run, independent of Lightning.

    Args:
        generator: the generator (a run's EMA weights).
        encoder: the inversion encoder (None for a GAN without one: inversion then starts from w_avg).
        prior: the camera sphere and pose prior; yaw/pitch angles are turned into cameras on it.
        precision: ``"bf16"`` runs the networks under bf16 autocast (about twice as fast on CPUs with AMX and
            on recent GPUs; compositing stays float32), ``"fp32"`` in float32. Outputs are float32 either way.
    """

    def __init__(
        self,
        generator: Generator,
        encoder: Encoder | None = None,
        prior: PosePrior = FACE_PRIOR,
        precision: Precision = "fp32",
    ) -> None:
        super().__init__()
        self.generator = generator.eval().requires_grad_(False)
        self.encoder = encoder.eval().requires_grad_(False) if encoder is not None else None
        self.prior = prior
        self.precision = check_precision(precision)

    def autocast(self) -> AbstractContextManager:
        """The autocast context of the model's ``precision`` on its device; adapts the CPU threads to the load
        first (see :mod:`pix2nerf.runtime`), since every encode and render passes through here."""
        adapt_threads()
        return autocast(self.precision, self.w_avg.device)

    @property
    def resolution(self) -> int:
        """Size of the images the model renders and the encoder reads."""
        return self.generator.image_resolution

    @property
    def w_avg(self) -> Tensor:
        """(w_dim,) the generator's average latent."""
        return self.generator.backbone.mapping.w_avg

    def cameras(self, yaw_pitch: Tensor) -> Cameras:
        """Cameras at (yaw, pitch) (B, 2) radians on the prior's sphere, looking at its pivot."""
        return prior_cameras(yaw_pitch, self.prior)

    def encode(self, image: Tensor) -> EncoderOutput:
        """image (B, 3, H, W) in [-1, 1] -> latents and yaw/pitch; without an encoder: w_avg, frontal."""
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
        resolution: int | None = None,
        num_coarse: int | None = None,
        num_importance: int | None = None,
        generator: Generator | None = None,
    ) -> GeneratorOutput:
        """Render latents w (B, num_ws, w_dim) at (yaw, pitch) (B, 2); ``generator`` overrides the model's
        (a per-image fine-tuned copy). Resolution is the neural rendering size (default: the generator's)."""
        with self.autocast():
            return (generator or self.generator).synthesis(
                w,
                self.cameras(yaw_pitch.to(w.device)),
                neural_resolution=resolution,
                num_coarse=num_coarse,
                num_importance=num_importance,
                noise_mode="const",
            )
