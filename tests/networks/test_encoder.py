import pytest
import torch

from pix2nerf.networks.encoder import Encoder


def test_shapes_bounds_and_w_plus():
    torch.manual_seed(0)
    encoder = Encoder(img_resolution=16, num_ws=5, w_dim=8, channel_base=128, channel_max=16, yaw_range=0.5)
    out = encoder(torch.randn(3, 3, 16, 16) * 10)
    assert out.w.shape == (3, 5, 8) and out.yaw_pitch.shape == (3, 2)
    torch.testing.assert_close(out.w[:, 0], out.w[:, 4])  # one w, repeated
    assert out.yaw_pitch[:, 0].abs().max() <= 0.5 and out.yaw_pitch[:, 1].abs().max() <= 0.6
    plus = Encoder(img_resolution=16, num_ws=5, w_dim=8, w_plus=True, channel_base=128, channel_max=16)
    w = plus(torch.randn(2, 3, 32, 32)).w  # other sizes are resized
    assert w.shape == (2, 5, 8) and not torch.allclose(w[:, 0], w[:, 4])


def test_w_avg_offsets_the_latent():
    encoder = Encoder(img_resolution=8, num_ws=2, w_dim=4, channel_base=64, channel_max=8)
    image = torch.randn(1, 3, 8, 8)
    w_avg = torch.arange(4.0)
    torch.testing.assert_close(encoder(image, w_avg).w, encoder(image).w + w_avg)
    with pytest.raises(ValueError, match="RGB images"):
        encoder(torch.randn(1, 1, 8, 8))


def test_a_w_encoder_widened_to_w_plus_predicts_the_same_and_then_trains_per_layer():
    torch.manual_seed(0)
    encoder = Encoder(img_resolution=8, num_ws=3, w_dim=4, channel_base=64, channel_max=8)
    widened = encoder.to_w_plus()
    image = torch.randn(2, 3, 8, 8)
    assert widened.w_plus and widened.w_head.out_features == 3 * 4
    torch.testing.assert_close(widened(image).w, encoder(image).w)
    widened(image).w[:, 0].sum().backward()  # each layer's latent has its own rows
    assert widened.w_head.weight.grad[:4].abs().sum() > 0 and widened.w_head.weight.grad[4:].abs().sum() == 0
    with pytest.raises(ValueError, match="already"):
        widened.to_w_plus()
