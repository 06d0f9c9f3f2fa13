"""StyleGAN2 building blocks, written to reproduce NVIDIA's reference (non-CUDA) ops exactly.

Equalised learning rate: parameters are stored at unit scale and multiplied by their He gain (and an
optional learning-rate multiplier) at run time, so Adam sees every layer at the same scale. Resampling
uses separable FIR filters (``[1, 3, 3, 1]`` by default) as ``upfirdn2d`` does. These layers sit below
both ``fields`` (decoders) and ``networks`` (mapping, synthesis, discriminator), so both can share them.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Activation = Literal["linear", "lrelu"]
LRELU_SLOPE = 0.2
ACTIVATION_GAIN = {"linear": 1.0, "lrelu": math.sqrt(2.0)}
"""Gains that keep activations at unit variance (StyleGAN's ``def_gain``)."""
DEFAULT_FIR = (1.0, 3.0, 3.0, 1.0)


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


def resize(x: Tensor, size: int | tuple[int, int], antialias: bool = True) -> Tensor:
    """Bilinear resize of (B, C, H, W) to ``size`` (half-pixel centres, optionally antialiased), keeping the dtype.

    Computed in float32: the antialiased kernel has no bf16 CPU implementation, and the resize is cheap next to
    the convolutions it feeds.
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    out = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False, antialias=antialias)
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

    Args:
        x: (B, C, H, W).
        padding: (x0, x1, y0, y1); negative values crop.
    """
    batch, channels, height, width = x.shape
    if up > 1:
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(batch, channels, height * up, width * up)
    px0, px1, py0, py1 = padding
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    kernel = (f * gain).to(x.dtype).flip([0, 1])
    kernel = kernel[None, None].repeat(channels, 1, 1, 1)
    x = F.conv2d(x, kernel, groups=channels)
    return x[:, :, ::down, ::down]


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
        k = f.shape[0]
        px0 = padding + (k + up - 1) // 2 - (kw - 1)
        px1 = padding + (k - up) // 2 - (kw - up)
        py0 = padding + (k + up - 1) // 2 - (kh - 1)
        py1 = padding + (k - up) // 2 - (kh - up)
        pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
        x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=up, padding=[pyt, pxt])
        return upfirdn2d(x, f, padding=(px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt), gain=up * up)
    if down > 1:
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

    Computed as a batched convolution of the modulated input (equal to NVIDIA's grouped-convolution form).
    """
    batch = x.shape[0]
    x = x * styles.to(x.dtype).reshape(batch, -1, 1, 1)
    x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, padding=padding)
    if demodulate:
        modulated = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)
        dcoefs = (modulated.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
        x = x * dcoefs.to(x.dtype).reshape(batch, -1, 1, 1)
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x
