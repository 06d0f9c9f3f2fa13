"""StyleGAN2 building blocks, written to reproduce NVIDIA's reference (non-CUDA) ops exactly.

Equalised learning rate: parameters are stored at unit scale and multiplied by their He gain (and an
optional learning-rate multiplier) at run time, so Adam sees every layer at the same scale. Resampling
uses separable FIR filters (``[1, 3, 3, 1]`` by default) as ``upfirdn2d`` does. These layers sit below
both ``fields`` (decoders) and ``networks`` (mapping, synthesis, discriminator), so both can share them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Activation = Literal["linear", "lrelu"]
LRELU_SLOPE = 0.2
ACTIVATION_GAIN = {"linear": 1.0, "lrelu": math.sqrt(2.0)}
"""Gains that keep activations at unit variance (StyleGAN's ``def_gain``)."""
DEFAULT_FIR = (1.0, 3.0, 3.0, 1.0)
CHANNELS_LAST = torch.channels_last
"""Memory format of the conv nets' activations: oneDNN's convolutions, depthwise FIR filters and 1x1 products
run 1.2-2x faster on (B, H, W, C) storage than on (B, C, H, W) on CPU, and tensor cores want it on GPU.
The networks convert their inputs once; every layer below keeps the format."""


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """Scale ``x`` to unit mean square along ``dim``."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def bias_act(
    x: Tensor,
    bias: Tensor | None = None,
    activation: Activation = "linear",
    gain: float | None = None,
    clamp: float | None = None,
) -> Tensor:
    """Add a per-channel bias (channel dim 1), apply the activation, scale by ``gain``, clamp."""
    if bias is not None:
        x = x + bias.reshape(1, -1, *([1] * (x.ndim - 2)))
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    gain = ACTIVATION_GAIN[activation] if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


class FullyConnectedLayer(nn.Module):
    """Equalised-learning-rate linear layer: ``act(x @ (W * lr / sqrt(in)).T + b * lr)``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: Activation = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., in_features) -> (..., out_features)."""
        weight = self.weight.to(x.dtype) * self.weight_gain
        bias = None if self.bias is None else self.bias.to(x.dtype) * self.bias_gain
        if self.activation == "linear" and bias is not None and x.ndim == 2:
            return torch.addmm(bias.unsqueeze(0), x, weight.t())
        x = x.matmul(weight.t())
        if bias is not None:
            x = x + bias
        if self.activation != "linear":
            x = F.leaky_relu(x, LRELU_SLOPE) * ACTIVATION_GAIN[self.activation]
        return x

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


def resize(x: Tensor, size: int | Sequence[int], antialias: bool = True) -> Tensor:
    """Bilinear resize of (B, C, H, W) to ``size`` (half-pixel centres, optionally antialiased), keeping the dtype.

    Computed in float32: the antialiased kernel has no bf16 CPU implementation, and the resize is cheap next to
    the convolutions it feeds.
    """
    height_width = (size, size) if isinstance(size, int) else tuple(size)
    out = F.interpolate(x.float(), size=height_width, mode="bilinear", align_corners=False, antialias=antialias)
    return out.to(x.dtype)


def setup_filter(taps: tuple[float, ...] = DEFAULT_FIR) -> Tensor:
    """A normalised 2D FIR filter (K, K): the outer product of ``taps`` with itself, summing to 1."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = f[:, None] * f[None, :]
    return f / f.sum()


def upfirdn2d(
    x: Tensor,
    f: Tensor,
    up: int = 1,
    down: int = 1,
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> Tensor:
    """Upsample by zero insertion, pad, convolve with FIR ``f`` (K, K), downsample by striding.

    The result equals NVIDIA's reference ``upfirdn2d`` but no zero is ever multiplied: upsampling is one
    depthwise transposed convolution of stride ``up`` (a quarter of the work of filtering the zero-inserted
    image), and downsampling a depthwise convolution of stride ``down`` (only the kept pixels are computed).

    Args:
        x: (B, C, H, W).
        padding: (x0, x1, y0, y1) of the upsampled image; negative values crop.
    """
    channels = x.shape[1]
    k = f.shape[0]
    kernel = (f * gain).to(x.dtype)[None, None].expand(channels, 1, k, k)
    px0, px1, py0, py1 = padding
    if up > 1:
        # A transposed convolution with ``f`` computes the full convolution of the zero-inserted image; its output
        # index o + K - 1 - p0 is NVIDIA's index o. Shared padding goes into the call, the rest into one pad/crop.
        x_start, y_start = k - 1 - px0, k - 1 - py0
        x_end, y_end = k - 1 - px1 - (up - 1), k - 1 - py1 - (up - 1)  # what is cut from the far end
        shared_x, shared_y = max(min(x_start, x_end), 0), max(min(y_start, y_end), 0)
        x = F.conv_transpose2d(x, kernel, stride=up, padding=(shared_y, shared_x), groups=channels)
        x = _pad(x, shared_x - x_start, shared_x - x_end, shared_y - y_start, shared_y - y_end)
        return x if down == 1 else x[:, :, ::down, ::down]
    shared_x, shared_y = max(min(px0, px1), 0), max(min(py0, py1), 0)
    x = _pad(x, px0 - shared_x, px1 - shared_x, py0 - shared_y, py1 - shared_y)
    return F.conv2d(x, kernel.flip([2, 3]), stride=down, padding=(shared_y, shared_x), groups=channels)


def _pad(x: Tensor, x0: int, x1: int, y0: int, y1: int) -> Tensor:
    """Zero-pad (positive) or crop (negative) the last two dimensions of (B, C, H, W); a no-op when all are 0."""
    return F.pad(x, [x0, x1, y0, y1]) if any((x0, x1, y0, y1)) else x


def upsample2d(x: Tensor, f: Tensor, up: int = 2) -> Tensor:
    """FIR upsampling by ``up`` (B, C, H, W) -> (B, C, up H, up W), preserving the mean."""
    k = f.shape[0]
    padding = ((k + up - 1) // 2, (k - up) // 2, (k + up - 1) // 2, (k - up) // 2)
    return upfirdn2d(x, f, up=up, padding=padding, gain=up * up)


def downsample2d(x: Tensor, f: Tensor, down: int = 2) -> Tensor:
    """FIR downsampling by ``down`` (B, C, H, W) -> (B, C, H / down, W / down)."""
    k = f.shape[0]
    padding = ((k - down + 1) // 2, (k - down) // 2, (k - down + 1) // 2, (k - down) // 2)
    return upfirdn2d(x, f, down=down, padding=padding)


def conv2d_resample(
    x: Tensor, weight: Tensor, f: Tensor | None = None, up: int = 1, down: int = 1, padding: int = 0
) -> Tensor:
    """Convolution fused with FIR resampling, as StyleGAN2's ``conv2d_resample`` (groups = 1).

    ``up = 2``: transposed stride-2 convolution, then FIR smoothing. ``down = 2``: FIR smoothing, then a
    stride-2 convolution. Otherwise a plain (correlation) convolution with symmetric ``padding``.
    """
    out_channels, in_channels, kh, kw = weight.shape
    if up > 1:
        assert f is not None, "upsampling needs the FIR filter f"
        k = f.shape[0]
        px0 = padding + (k + up - 1) // 2 - (kw - 1)
        px1 = padding + (k - up) // 2 - (kw - up)
        py0 = padding + (k + up - 1) // 2 - (kh - 1)
        py1 = padding + (k - up) // 2 - (kh - up)
        pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
        x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=up, padding=[pyt, pxt])
        return upfirdn2d(x, f, padding=(px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt), gain=up * up)
    if down > 1:
        assert f is not None, "downsampling needs the FIR filter f"
        k = f.shape[0]
        pad0, pad1 = padding + (k - down + 1) // 2, padding + (k - down) // 2
        if kw == 1 and kh == 1:
            return F.conv2d(upfirdn2d(x, f, down=down, padding=(pad0, pad1, pad0, pad1)), weight)
        return F.conv2d(upfirdn2d(x, f, padding=(pad0, pad1, pad0, pad1)), weight, stride=down)
    return F.conv2d(x, weight, padding=padding)


def modulated_conv2d(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    noise: Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: Tensor | None = None,
    demodulate: bool = True,
) -> Tensor:
    """StyleGAN2 modulated convolution: scale input channels by ``styles`` (B, I), convolve with the shared
    ``weight`` (O, I, k, k), then normalise each output channel by the norm of its modulated weights.

    Computed as a batched convolution of the modulated input (equal to NVIDIA's grouped-convolution form). A 1x1
    convolution (ToRGB, tri-plane outputs) is a batched matrix product with the styles folded into per-sample
    weights, which skips the full-size modulated copy of the input and is about 3x faster than a 1x1 conv2d.
    """
    batch = x.shape[0]
    dcoefs = None
    if demodulate:
        modulated = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)
        dcoefs = (modulated.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # (B, O)
    if weight.shape[2:] == (1, 1) and up == 1 and padding == 0:
        per_sample = weight[None, :, :, 0, 0] * styles[:, None, :]  # (B, O, I)
        if dcoefs is not None:
            per_sample = per_sample * dcoefs[:, :, None]
        height, width = x.shape[2:]
        if x.is_contiguous(memory_format=CHANNELS_LAST):  # (B, H, W, I) in memory: keep that layout
            pixels = x.permute(0, 2, 3, 1).reshape(batch, height * width, -1)
            x = torch.bmm(pixels, per_sample.to(x.dtype).transpose(1, 2))
            x = x.reshape(batch, height, width, -1).permute(0, 3, 1, 2)
        else:
            x = torch.bmm(per_sample.to(x.dtype), x.flatten(2)).reshape(batch, -1, height, width)
    else:
        x = x * styles.to(x.dtype).reshape(batch, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, padding=padding)
        if dcoefs is not None:
            x = x * dcoefs.to(x.dtype).reshape(batch, -1, 1, 1)
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x
