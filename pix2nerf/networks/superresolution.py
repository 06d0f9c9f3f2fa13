"""Super-resolution (EG3D): StyleGAN2 blocks, modulated by the last w, from neural-rendering to output size."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from pix2nerf.layers import CHANNELS_LAST, resize, setup_filter
from pix2nerf.networks.synthesis import NoiseMode, SynthesisBlock

WS_PER_BLOCK = 3
"""Each block consumes conv0, conv1 and ToRGB styles."""


class SuperResolution(nn.Module):
    """Upsample the raw RGB (B, 3, r, r) with the help of the feature image (B, F, r, r).

    Every block but possibly the first doubles the size: block 0 refines at ``input_resolution`` without
    upsampling when ``output_resolution = input_resolution * 2 ** (len(block_channels) - 1)``, and upsamples too
    when ``output_resolution = input_resolution * 2 ** len(block_channels)``. EG3D's super-resolutions are
    ``SuperresolutionHybrid2X`` = ``SuperResolution(32, 64, 128, (128, 64))``, ``4X`` = ``(32, 128, 256, (128, 64))``,
    ``8X`` = ``(32, 128, 512, (128, 64))`` and ``8XDC`` = ``(32, 128, 512, (256, 128))``, with ``conv_clamp=256``
    when the release ran them in fp16 (``sr_num_fp16_res > 0``; the clamp applies in fp32 too).
    Inputs of another size are first resized (bilinear, optionally antialiased) to ``input_resolution``.
    """

    block0: SynthesisBlock
    resample_filter: Tensor  # only when the first block does not upsample

    def __init__(
        self,
        feature_channels: int,
        input_resolution: int,
        output_resolution: int,
        block_channels: Sequence[int] = (128, 64),
        w_dim: int = 512,
        antialias: bool = True,
        img_channels: int = 3,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        doublings = math.log2(output_resolution / input_resolution) if output_resolution >= input_resolution else -1
        if doublings not in (len(block_channels) - 1, len(block_channels)):
            raise ValueError(
                f"{len(block_channels)} blocks take {input_resolution}^2 to "
                f"{input_resolution * 2 ** (len(block_channels) - 1)}^2 (first block without upsampling) or "
                f"{input_resolution * 2 ** len(block_channels)}^2, not {output_resolution}^2; use one block per "
                "doubling (plus an optional first block that refines without upsampling)"
            )
        self.input_resolution, self.output_resolution, self.antialias = input_resolution, output_resolution, antialias
        self.num_blocks = len(block_channels)
        first_upsamples = doublings == len(block_channels)
        if not first_upsamples:  # EG3D's 2X and 4X modules carry this (unused) filter in their state; 8X ones do not
            self.register_buffer("resample_filter", setup_filter())
        in_channels = feature_channels
        for index, channels in enumerate(block_channels):
            upsample = index > 0 or first_upsamples
            resolution = input_resolution * 2 ** (index + first_upsamples)
            block = SynthesisBlock(
                in_channels, channels, w_dim, resolution, img_channels, upsample=upsample, conv_clamp=conv_clamp
            )
            setattr(self, f"block{index}", block)
            in_channels = channels

    def forward(
        self, rgb: Tensor, features: Tensor, ws: Tensor, noise_mode: NoiseMode = "none"
    ) -> tuple[Tensor, Tensor]:
        """rgb (B, 3, r, r), features (B, F, r, r), ws (B, num_ws, w_dim).

        Returns the image (B, 3, R, R) and the running RGB after the first block when that block does not upsample
        (B, 3, r', r'): EG3D's code adds to its raw image in place there and returns the result as its raw image (see
        ``Generator(eg3d_raw_image=...)``); when the first block upsamples, the raw image stays as it was.
        """
        ws = ws[:, -1:].repeat(1, WS_PER_BLOCK, 1)
        if features.shape[-1] != self.input_resolution:
            features = resize(features, self.input_resolution, self.antialias)
            rgb = resize(rgb, self.input_resolution, self.antialias)
        entering = rgb
        x, rgb = self.block0(features.contiguous(memory_format=CHANNELS_LAST), rgb, ws, noise_mode)
        first = entering if self.block0.upsample else rgb
        for index in range(1, self.num_blocks):
            x, rgb = getattr(self, f"block{index}")(x, rgb, ws, noise_mode)
        return rgb, first
