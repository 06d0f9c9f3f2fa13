"""Image encoder for inversion: one image -> the generator's latent w and the camera's yaw and pitch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pix2nerf.layers import CHANNELS_LAST, FullyConnectedLayer, resize
from pix2nerf.networks.discriminator import DiscriminatorBlock, residual_layout
from pix2nerf.networks.specs import init_arguments


@dataclass
class EncoderOutput:
    """w: (B, num_ws, w_dim) latents. yaw_pitch: (B, 2) camera angles in radians, inside the encoder's bounds.
    plane_offsets: (B, 3, C, P, P) per-image tri-plane offsets from a hybrid encoder's stage 2, or None."""

    w: Tensor
    yaw_pitch: Tensor
    plane_offsets: Tensor | None = None


class Encoder(nn.Module):
    """Residual CNN (the discriminator's block design) with a latent head and a bounded pose head.

    Args:
        img_resolution: input size (power of two >= 8); other sizes are resized (bilinear, antialiased).
        num_ws, w_dim: the generator's latent layout.
        w_plus: predict one w per synthesis layer (w+) instead of one w repeated num_ws times.
        yaw_range, pitch_range: the pose head outputs ``range * tanh(.)`` so poses stay where the prior
            has mass (defaults: about 4 standard deviations of the FFHQ prior).
        channel_base, channel_max: widths ``min(channel_base // res, channel_max)``.
    """

    pose_range: Tensor

    def __init__(
        self,
        img_resolution: int = 64,
        num_ws: int = 14,
        w_dim: int = 512,
        w_plus: bool = False,
        yaw_range: float = 1.2,
        pitch_range: float = 0.6,
        channel_base: int = 16384,
        channel_max: int = 256,
    ) -> None:
        arguments = init_arguments(locals())
        super().__init__()
        self.init_args = arguments
        self.img_resolution, self.num_ws, self.w_dim, self.w_plus = img_resolution, num_ws, w_dim, w_plus
        self.register_buffer("pose_range", torch.tensor([yaw_range, pitch_range]))
        self.block_resolutions, channels = residual_layout(img_resolution, channel_base, channel_max)
        for res in self.block_resolutions:
            in_channels = channels[res] if res < img_resolution else 0
            setattr(self, f"b{res}", DiscriminatorBlock(in_channels, channels[res], channels[res // 2], 3))
        width = channels[4]
        self.fc = FullyConnectedLayer(width * 16, width, activation="lrelu")
        self.w_head = FullyConnectedLayer(width, w_dim * (num_ws if w_plus else 1))
        self.pose_head = FullyConnectedLayer(width, 2)

    def forward(self, image: Tensor, w_avg: Tensor | None = None) -> EncoderOutput:
        """image (B, 3, H, W) in [-1, 1] -> EncoderOutput. The latent is predicted as an offset from
        ``w_avg`` (w_dim,) when it is given, so an untrained encoder starts at the average face."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"the encoder takes RGB images (B, 3, H, W), got {tuple(image.shape)}")
        if image.shape[-2:] != (self.img_resolution, self.img_resolution):
            image = resize(image, self.img_resolution)
        image = image.contiguous(memory_format=CHANNELS_LAST)
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, image)
        assert x is not None, "the encoder has at least one block"
        features = self.fc(x.flatten(1))
        w = self.w_head(features).reshape(image.shape[0], -1, self.w_dim)
        if not self.w_plus:
            w = w.expand(-1, self.num_ws, -1)
        if w_avg is not None:
            w = w + w_avg
        return EncoderOutput(w=w, yaw_pitch=torch.tanh(self.pose_head(features)) * self.pose_range)

    @torch.no_grad()
    def to_w_plus(self) -> Encoder:
        """A w+ encoder that computes exactly what this one does (each layer's rows of the latent head are this
        head's), so a trained w encoder can start a w+ one: training then lets the layers' latents differ."""
        if self.w_plus:
            raise ValueError("the encoder already predicts w+")
        widened = Encoder(**{**self.init_args, "w_plus": True}).to(self.w_head.weight.device)
        state = self.state_dict()
        state["w_head.weight"] = state["w_head.weight"].repeat(self.num_ws, 1)
        state["w_head.bias"] = state["w_head.bias"].repeat(self.num_ws)
        widened.load_state_dict(state)
        return widened
