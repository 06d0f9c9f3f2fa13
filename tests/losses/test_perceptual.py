import logging
from urllib.error import URLError

import pytest
import torch
import torchvision

from pix2nerf.losses.perceptual import LPIPS, PerceptualWeightsMissing, backbone_cache_path


def test_offline_mode_warns_and_measures_distance(caplog):
    with caplog.at_level(logging.WARNING):
        lpips = LPIPS(offline_random_backbone=True)
    assert "RANDOMLY INITIALISED" in caplog.text
    a = torch.rand(2, 3, 32, 32) * 2 - 1
    assert lpips(a, a).abs().max() < 1e-6
    assert (lpips(a, -a) > 0).all()
    assert not any(p.requires_grad for p in lpips.parameters())


def test_missing_weights_offline_is_a_clear_error(tmp_path, monkeypatch):
    def no_network(url, *args, **kwargs):
        raise URLError(f"no network in tests: {url}")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    original = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        assert not backbone_cache_path("alex").exists()
        with pytest.raises(PerceptualWeightsMissing, match="alexnet-owt-7be5be79.pth") as error:
            LPIPS("alex")
        assert str(tmp_path) in str(error.value) and "offline_random_backbone=True" in str(error.value)
    finally:
        torch.hub.set_dir(original)
