"""StyleGAN2 synthesis network (skip architecture) and its layers.

The tri-plane generator uses it to emit ``3 * C`` feature channels that are split into three planes;
super-resolution reuses its blocks. Module and parameter names follow NVIDIA's implementation so that
official checkpoints map onto it one to one.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from pix2nerf.layers import (
    CHANNELS_LAST,
    DEFAULT_FIR,
    FullyConnectedLayer,
    bias_act,
    modulated_conv2d,
    setup_filter,
    upsample2d,
)

NoiseMode = Literal["random", "const", "none"]


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally 2x upsampling), per-pixel noise, bias and leaky ReLU."""

    resample_filter: Tensor
    noise_const: Tensor  # only with use_noise

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        resample_filter: tuple[float, ...] = DEFAULT_FIR,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.resolution, self.up, self.use_noise, self.conv_clamp = resolution, up, use_noise, conv_clamp
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor, w: Tensor, noise_mode: NoiseMode = "random", gain: float = 1.0) -> Tensor:
        """x (B, I, H, W), w (B, w_dim) -> (B, O, up H, up W)."""
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(
            x, self.weight, styles, noise, up=self.up, padding=self.padding, resample_filter=self.resample_filter
        )
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), "lrelu", gain=math.sqrt(2.0) * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution without demodulation: features -> output channels."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the skip-architecture synthesis network.

    The first block (``in_channels = 0``) starts from a learned constant; later ones upsample 2x in
    ``conv0`` (unless ``upsample=False``, as in super-resolution's first block). Each block adds its
    ToRGB output to the (upsampled) running image.
    """

    resample_filter: Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        upsample: bool = True,
        resample_filter: tuple[float, ...] = DEFAULT_FIR,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.upsample = upsample and in_channels != 0
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim, resolution, up=2 if self.upsample else 1, conv_clamp=conv_clamp
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_torgb = 1

    def forward(
        self, x: Tensor | None, img: Tensor | None, ws: Tensor, noise_mode: NoiseMode = "random"
    ) -> tuple[Tensor, Tensor]:
        """ws: (B, num_conv + num_torgb, w_dim). Returns features and the running image."""
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1).contiguous(memory_format=CHANNELS_LAST)
        else:
            x = self.conv0(x, next(w_iter), noise_mode)
        x = self.conv1(x, next(w_iter), noise_mode)
        if img is not None and self.upsample:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter)).float()
        return x, (y if img is None else img + y)


class SynthesisNetwork(nn.Module):
    """Constant 4x4 input -> ``img_resolution`` output with ``img_channels`` channels.

    Channels per resolution are ``min(channel_base // res, channel_max)``.
    """

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        log2 = int(math.log2(img_resolution))
        if 2**log2 != img_resolution or img_resolution < 4:
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(in_channels, channels[res], w_dim, res, img_channels, conv_clamp=conv_clamp)
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1  # the last block's ToRGB

    def forward(self, ws: Tensor, noise_mode: NoiseMode = "random") -> Tensor:
        """ws (B, num_ws, w_dim) -> image (B, img_channels, img_resolution, img_resolution)."""
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must have shape (B, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")
        ws = ws.float()
        x = img = None
        w_index = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws.narrow(1, w_index, block.num_conv + block.num_torgb), noise_mode)
            w_index += block.num_conv
        assert img is not None, "the synthesis network has at least one block"
        return img
