"""The fast StyleGAN2 primitives equal their plain definitions (zero insertion, padding, full convolutions)."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from pix2nerf.layers import CHANNELS_LAST, modulated_conv2d, resize, upfirdn2d


def reference_upfirdn2d(x, f, up=1, down=1, padding=(0, 0, 0, 0), gain=1.0):
    """NVIDIA's reference: insert zeros, pad (negative crops), convolve with the flipped filter, keep every down-th."""
    batch, channels, height, width = x.shape
    if up > 1:
        x = F.pad(x.reshape(batch, channels, height, 1, width, 1), [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(batch, channels, height * up, width * up)
    px0, px1, py0, py1 = padding
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    kernel = (f * gain).flip([0, 1])[None, None].repeat(channels, 1, 1, 1)
    return F.conv2d(x, kernel, groups=channels)[:, :, ::down, ::down]


@pytest.mark.parametrize("up, down", [(1, 1), (2, 1), (1, 2), (2, 2), (4, 1)])
def test_upfirdn2d_equals_the_reference_for_every_padding(up, down):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 7, dtype=torch.float64, generator=generator)
    f = torch.rand(4, 4, dtype=torch.float64, generator=generator)  # asymmetric: catches a flipped kernel
    checked = 0
    for padding in itertools.product((-2, -1, 0, 1, 3), repeat=4):
        try:
            expected = reference_upfirdn2d(x, f, up, down, padding, gain=1.5)
        except RuntimeError:  # the padded image is smaller than the filter
            continue
        torch.testing.assert_close(upfirdn2d(x, f, up, down, padding, gain=1.5), expected, rtol=0, atol=1e-12)
        checked += 1
    assert checked > 300


@pytest.mark.parametrize("demodulate", [False, True])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, CHANNELS_LAST])
def test_1x1_modulated_convolution_equals_a_convolution_of_the_modulated_input(demodulate, memory_format):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 6, 4, dtype=torch.float64, generator=generator).contiguous(memory_format=memory_format)
    weight = torch.randn(3, 5, 1, 1, dtype=torch.float64, generator=generator)
    styles = torch.randn(2, 5, dtype=torch.float64, generator=generator)
    expected = F.conv2d(x * styles[:, :, None, None], weight)
    if demodulate:
        norms = (weight[None] * styles[:, None, :, None, None]).square().sum(dim=[2, 3, 4]) + 1e-8
        expected = expected * norms.rsqrt()[:, :, None, None]
    out = modulated_conv2d(x, weight, styles, demodulate=demodulate)
    torch.testing.assert_close(out, expected)
    assert out.is_contiguous(memory_format=memory_format)  # the layout the network runs in is kept


def test_resize_keeps_bf16_and_matches_float32():
    x = torch.rand(1, 3, 32, 32)
    expected = F.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False, antialias=True)
    out = resize(x.bfloat16(), 8)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=1e-2, rtol=0)
