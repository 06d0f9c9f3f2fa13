"""Super-resolution (EG3D): StyleGAN2 blocks, modulated by the last w, from neural-rendering to output size."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from pix2nerf.layers import CHANNELS_LAST, resize, setup_filter
from pix2nerf.networks.synthesis import NoiseMode, SynthesisBlock

WS_PER_BLOCK = 3
"""Each block consumes conv0, conv1 and ToRGB styles."""


class SuperResolution(nn.Module):
    """Upsample the raw RGB (B, 3, r, r) with the help of the feature image (B, F, r, r).

    Block 0 refines at ``input_resolution`` without upsampling; every further block doubles the size, so
    ``output_resolution = input_resolution * 2 ** (len(block_channels) - 1)``. EG3D's
    ``SuperresolutionHybrid2X`` is ``SuperResolution(32, 64, 128, (128, 64))``.
    Inputs of another size are first resized (bilinear, optionally antialiased) to ``input_resolution``.
    """

    def __init__(
        self,
        feature_channels: int,
        input_resolution: int,
        output_resolution: int,
        block_channels: Sequence[int] = (128, 64),
        w_dim: int = 512,
        antialias: bool = True,
        img_channels: int = 3,
    ) -> None:
        super().__init__()
        expected = input_resolution * 2 ** (len(block_channels) - 1)
        if expected != output_resolution:
            raise ValueError(
                f"{len(block_channels)} blocks take {input_resolution}^2 to {expected}^2, not {output_resolution}^2; "
                "use one block per doubling plus the first (non-upsampling) block"
            )
        self.input_resolution, self.output_resolution, self.antialias = input_resolution, output_resolution, antialias
        self.num_blocks = len(block_channels)
        self.register_buffer("resample_filter", setup_filter())
        in_channels = feature_channels
        for index, channels in enumerate(block_channels):
            resolution = input_resolution * 2**index
            block = SynthesisBlock(in_channels, channels, w_dim, resolution, img_channels, upsample=index > 0)
            setattr(self, f"block{index}", block)
            in_channels = channels

    def forward(
        self, rgb: Tensor, features: Tensor, ws: Tensor, noise_mode: NoiseMode = "none"
    ) -> tuple[Tensor, Tensor]:
        """rgb (B, 3, r, r), features (B, F, r, r), ws (B, num_ws, w_dim).

        Returns the image (B, 3, R, R) and the running RGB after the first block (B, 3, r', r'), which
        EG3D's released code returns as its raw image (see ``Generator(eg3d_raw_image=...)``).
        """
        ws = ws[:, -1:].repeat(1, WS_PER_BLOCK, 1)
        if features.shape[-1] != self.input_resolution:
            features = resize(features, self.input_resolution, self.antialias)
            rgb = resize(rgb, self.input_resolution, self.antialias)
        x, rgb = self.block0(features.contiguous(memory_format=CHANNELS_LAST), rgb, ws, noise_mode)
        first = rgb
        for index in range(1, self.num_blocks):
            x, rgb = getattr(self, f"block{index}")(x, rgb, ws, noise_mode)
        return rgb, first
