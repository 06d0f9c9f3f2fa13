"""Pose-conditioned StyleGAN2 residual discriminator (EG3D's dual discriminator) with a pose head."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pix2nerf.layers import (
    CHANNELS_LAST,
    DEFAULT_FIR,
    Activation,
    FullyConnectedLayer,
    bias_act,
    conv2d_resample,
    resize,
    setup_filter,
)
from pix2nerf.networks.mapping import MappingNetwork
from pix2nerf.networks.specs import init_arguments

RESIDUAL_GAIN = math.sqrt(0.5)
"""Residual and skip branches are scaled so their sum keeps unit variance."""


@dataclass
class DiscriminatorOutput:
    """logits: (B, 1) real-vs-fake scores. pose: (B, 2) predicted (yaw, pitch), or None without a pose head."""

    logits: Tensor
    pose: Tensor | None = None


class Conv2dLayer(nn.Module):
    """Equalised-learning-rate convolution with optional FIR downsampling, bias and activation."""

    resample_filter: Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: Activation = "linear",
        down: int = 1,
        resample_filter: tuple[float, ...] = DEFAULT_FIR,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.activation, self.down, self.conv_clamp = activation, down, conv_clamp
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        weight = self.weight * self.weight_gain
        x = conv2d_resample(x, weight.to(x.dtype), self.resample_filter, down=self.down, padding=self.padding)
        act_gain = (math.sqrt(2.0) if self.activation == "lrelu" else 1.0) * gain
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, self.activation, gain=act_gain, clamp=clamp)


class DiscriminatorBlock(nn.Module):
    """Residual block: two 3x3 convolutions (the second downsamples) plus a 1x1 downsampling skip."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, img_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu")
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu")
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2)
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: Tensor | None, img: Tensor) -> Tensor:
        if self.in_channels == 0:
            x = self.fromrgb(img)
        y = self.skip(x, gain=RESIDUAL_GAIN)
        x = self.conv1(self.conv0(x), gain=RESIDUAL_GAIN)
        return y + x


class MinibatchStdLayer(nn.Module):
    """Append the standard deviation across groups of samples as extra channels (detects mode collapse)."""

    def __init__(self, group_size: int = 4, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        group = min(self.group_size, n)
        if n % group:
            raise ValueError(f"batch size {n} must be divisible by the minibatch-std group size {group}")
        f = self.num_channels
        y = x.reshape(group, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1)
        return torch.cat([x, y.repeat(group, 1, h, w)], dim=1)


def residual_layout(img_resolution: int, channel_base: int, channel_max: int) -> tuple[list[int], dict[int, int]]:
    """Block resolutions (img_resolution down to 8) and widths ``min(channel_base // res, channel_max)``
    of a residual trunk that ends at 4x4 (shared by the discriminator and the encoder)."""
    log2 = int(math.log2(img_resolution))
    if 2**log2 != img_resolution or img_resolution < 8:
        raise ValueError(f"img_resolution must be a power of two >= 8, got {img_resolution}")
    resolutions = [2**i for i in range(log2, 2, -1)]
    return resolutions, {res: min(channel_base // res, channel_max) for res in [*resolutions, 4]}


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator conditioned on the camera label by projection.

    With ``dual=True`` it sees the super-resolved image and the raw image (resized to match) as 6
    channels (EG3D's dual discrimination). ``pose_head`` adds a linear head on the final features
    that regresses (yaw, pitch), as Pix2NeRF's discriminator does.

    Args:
        c_dim: conditioning label size (25 for cameras; 0 = unconditional).
        img_resolution: input size (power of two).
        img_channels: channels of one image.
        dual: discriminate (image, image_raw) jointly.
        channel_base, channel_max: widths, ``min(channel_base // res, channel_max)``.
        cmap_dim: label projection size (default: the 4x4 width).
        mbstd_group_size, mbstd_num_channels: minibatch standard deviation.
        pose_head: add the (yaw, pitch) regression head.
    """

    def __init__(
        self,
        c_dim: int = 25,
        img_resolution: int = 64,
        img_channels: int = 3,
        dual: bool = False,
        channel_base: int = 32768,
        channel_max: int = 512,
        cmap_dim: int | None = None,
        mbstd_group_size: int = 4,
        mbstd_num_channels: int = 1,
        mapping_layers: int = 8,
        pose_head: bool = False,
    ) -> None:
        arguments = init_arguments(locals())
        super().__init__()
        self.init_args = arguments
        self.c_dim, self.img_resolution, self.dual = c_dim, img_resolution, dual
        self.block_resolutions, channels = residual_layout(img_resolution, channel_base, channel_max)
        cmap_dim = channels[4] if cmap_dim is None else cmap_dim
        self.cmap_dim = cmap_dim if c_dim > 0 else 0
        in_img = img_channels * (2 if dual else 1)
        for res in self.block_resolutions:
            in_channels = channels[res] if res < img_resolution else 0
            setattr(self, f"b{res}", DiscriminatorBlock(in_channels, channels[res], channels[res // 2], in_img))
        if c_dim > 0:
            self.mapping = MappingNetwork(0, c_dim, self.cmap_dim, num_ws=1, num_layers=mapping_layers)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        width = channels[4]
        self.conv = Conv2dLayer(width + mbstd_num_channels, width, 3, activation="lrelu")
        self.fc = FullyConnectedLayer(width * 16, width, activation="lrelu")
        self.out = FullyConnectedLayer(width, self.cmap_dim or 1)
        self.pose = FullyConnectedLayer(width, 2) if pose_head else None

    def forward(self, image: Tensor, c: Tensor | None = None, image_raw: Tensor | None = None) -> DiscriminatorOutput:
        """image (B, 3, H, W) in [-1, 1], c (B, c_dim), image_raw (B, 3, h, w) when ``dual``."""
        if image.shape[-1] != self.img_resolution or image.shape[-2] != self.img_resolution:
            size = f"{self.img_resolution}x{self.img_resolution}"
            raise ValueError(f"discriminator expects {size} images, got {tuple(image.shape[-2:])}")
        if self.dual:
            if image_raw is None:
                raise ValueError("a dual discriminator needs image_raw as well as image")
            raw = resize(image_raw, image.shape[-2:])
            image = torch.cat([image, raw], dim=1)
        image = image.contiguous(memory_format=CHANNELS_LAST)
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, image)
        if self.mbstd is not None:
            x = self.mbstd(x)
        features = self.fc(self.conv(x).flatten(1))
        logits = self.out(features)
        if self.cmap_dim > 0:
            if c is None:
                raise ValueError(f"this discriminator is conditioned: pass camera labels c (B, {self.c_dim})")
            cmap = self.mapping(torch.zeros(c.shape[0], 0, device=c.device), c)[:, 0]
            logits = (logits * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)
        pose = self.pose(features) if self.pose is not None else None
        return DiscriminatorOutput(logits=logits, pose=pose)
