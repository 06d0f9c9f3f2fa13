"""Stage 2 of the hybrid encoder: per-image tri-plane offsets for the detail the generator's latent space misses.

The stage-1 encoder inverts an image into a latent w and a pose; its render at that pose shows what the latent
can express. :class:`PlaneResidual` reads the input, that render and their difference, and predicts offsets that
are added to the generator's tri-planes (as in GOAE and TriPlaneNet), so the face is still rendered by the
generator's own decoder and volume renderer. Its last layer starts at zero: an untrained residual changes nothing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pix2nerf.layers import CHANNELS_LAST, resize
from pix2nerf.networks.generator import Generator
from pix2nerf.networks.specs import init_arguments

NUM_PLANES = 3
INPUT_CHANNELS = 9
"""Input image, stage-1 render and their difference, RGB each."""
BOTTLENECK_RESOLUTION = 4
"""The spatial size at which one fully connected layer mixes all positions: tri-planes are not aligned with the
input view (only the xy plane roughly is), so every plane position must be able to read every image position."""
LEAKY_SLOPE = 0.2


def _conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1), nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
    )


class PlaneResidual(nn.Module):
    """A U-Net from (input, stage-1 render) to tri-plane offsets, with a global fully connected bottleneck.

    Args:
        img_resolution: working size of the images (power of two >= 8); other sizes are resized.
        plane_resolution: the generator's tri-plane size (power of two >= ``img_resolution`` / 8).
        plane_channels: channels per plane the offsets cover (geometry + appearance planes for decoupled
            generators: ``Generator.plane_channels + Generator.appearance_channels``).
        channels: width at ``img_resolution``; it doubles with every halving up to ``channel_max``.
        channel_max: widest layer.
    """

    def __init__(
        self,
        img_resolution: int = 64,
        plane_resolution: int = 256,
        plane_channels: int = 32,
        channels: int = 32,
        channel_max: int = 128,
    ) -> None:
        arguments = init_arguments(locals())
        super().__init__()
        self.init_args = arguments
        for name, size in (("img_resolution", img_resolution), ("plane_resolution", plane_resolution)):
            if size < BOTTLENECK_RESOLUTION or size & (size - 1):
                raise ValueError(f"{name} must be a power of two >= {BOTTLENECK_RESOLUTION}, got {size}")
        self.img_resolution, self.plane_resolution, self.plane_channels = (
            img_resolution,
            plane_resolution,
            plane_channels,
        )
        levels = int(math.log2(img_resolution // BOTTLENECK_RESOLUTION))
        widths = [min(channels * 2**level, channel_max) for level in range(levels + 1)]
        self.widths = widths
        self.stem = _conv(INPUT_CHANNELS, widths[0])
        self.down = nn.ModuleList(_conv(widths[i], widths[i + 1], stride=2) for i in range(levels))
        bottleneck = widths[-1] * BOTTLENECK_RESOLUTION**2
        self.mix = nn.Sequential(nn.Linear(bottleneck, bottleneck), nn.LeakyReLU(LEAKY_SLOPE, inplace=True))
        up_levels = int(math.log2(plane_resolution // BOTTLENECK_RESOLUTION))
        self.up = nn.ModuleList()
        width = widths[-1]
        for level in range(1, up_levels + 1):
            resolution = BOTTLENECK_RESOLUTION * 2**level
            out = self._width_at(resolution)
            skip = out if resolution <= img_resolution else 0
            self.up.append(_conv(width + skip, out))
            width = out
        self.out = nn.Conv2d(width, NUM_PLANES * plane_channels, 1)
        nn.init.zeros_(self.out.weight)
        assert self.out.bias is not None  # nn.Conv2d has a bias by default
        nn.init.zeros_(self.out.bias)

    def _width_at(self, resolution: int) -> int:
        """Channels of the features at ``resolution``: the encoder's there, the stem's above the image size."""
        if resolution >= self.img_resolution:
            return self.widths[0]
        return self.widths[int(math.log2(self.img_resolution // resolution))]

    def forward(self, image: Tensor, render: Tensor) -> Tensor:
        """image, render (B, 3, H, W) in [-1, 1] -> offsets (B, 3, plane_channels, P, P) for the tri-planes."""
        if image.shape != render.shape or image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(
                f"the plane residual takes an RGB image and its stage-1 render of the same shape (B, 3, H, W), got "
                f"{tuple(image.shape)} and {tuple(render.shape)}"
            )
        if image.shape[-1] != self.img_resolution:
            image, render = resize(image, self.img_resolution), resize(render, self.img_resolution)
        x = torch.cat([image, render, image - render], dim=1).contiguous(memory_format=CHANNELS_LAST)
        skips = {self.img_resolution: self.stem(x)}
        x = skips[self.img_resolution]
        for layer in self.down:
            x = layer(x)
            skips[x.shape[-1]] = x
        x = self.mix(x.flatten(1)).reshape(x.shape)
        for layer in self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            if x.shape[-1] in skips:
                x = torch.cat([x, skips[x.shape[-1]]], dim=1)
            x = layer(x)
        offsets = self.out(x)
        return offsets.reshape(offsets.shape[0], NUM_PLANES, self.plane_channels, *offsets.shape[-2:])


def check_residual_fits(residual: PlaneResidual, generator: Generator) -> None:
    """Raise a ValueError naming the fix unless ``residual``'s offsets have the shape of ``generator``'s planes."""
    if generator.backbone.synthesis is None:
        raise ValueError(
            "a plane residual offsets tri-planes, but this generator uses the hash-grid head, whose grid is shared by "
            "all latents (no per-image planes); use field='triplane' or drop the residual"
        )
    resolution = generator.backbone.synthesis.img_resolution
    channels = generator.plane_channels + generator.appearance_channels
    if (residual.plane_resolution, residual.plane_channels) != (resolution, channels):
        raise ValueError(
            f"the plane residual predicts {residual.plane_channels} channels at {residual.plane_resolution}^2 but the "
            f"generator's planes have {channels} at {resolution}^2; set the residual's plane_resolution={resolution} "
            f"and plane_channels={channels}"
        )
