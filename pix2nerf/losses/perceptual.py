"""LPIPS perceptual distance with explicit handling of its pretrained backbone weights.

The ``lpips`` package ships its calibrated linear layers but downloads the ImageNet backbone
(AlexNet, VGG16 or SqueezeNet) into torch's hub cache on first use. Without those weights and without
internet, construction fails with a message that says what is missing and where it must go. Tests and
offline smoke runs opt into ``offline_random_backbone=True``: a randomly initialised backbone whose
distances are *not* perceptual, announced by a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

BACKBONE_WEIGHTS = {
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "squeeze": "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
}


MIN_SIZE = 64
"""Smallest image side the LPIPS backbones take without their feature maps vanishing."""


class PerceptualWeightsMissing(RuntimeError):
    """LPIPS's pretrained backbone is neither cached nor downloadable."""


def backbone_cache_path(net: str) -> Path:
    """Where torch keeps the backbone weights of ``net`` (under ``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_WEIGHTS[net].rsplit("/", 1)[1]


class LPIPS(nn.Module):
    """LPIPS distance (B,) between images in [-1, 1]; frozen, always in eval mode.

    Args:
        net: backbone, ``"alex"`` (default, as in the LPIPS paper's loss use), ``"vgg"`` or ``"squeeze"``.
        offline_random_backbone: use a randomly initialised backbone (no download; values are not
            perceptual). For tests and offline smoke runs only.
    """

    def __init__(self, net: Literal["alex", "vgg", "squeeze"] = "alex", offline_random_backbone: bool = False) -> None:
        super().__init__()
        import lpips

        if net not in BACKBONE_WEIGHTS:
            raise ValueError(f"LPIPS backbone must be one of {sorted(BACKBONE_WEIGHTS)}, got {net!r}")
        if offline_random_backbone:
            log.warning(
                "LPIPS runs with a RANDOMLY INITIALISED %s backbone (offline_random_backbone=True): its distances "
                "are not perceptual. Use this for tests and offline smoke runs only.",
                net,
            )
            self.model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
        else:
            path = backbone_cache_path(net)
            try:
                self.model = lpips.LPIPS(net=net, verbose=False)
            except Exception as error:  # the download raises URLError, HTTPError, OSError, ...
                raise PerceptualWeightsMissing(
                    f"LPIPS needs the ImageNet {net} backbone weights {path.name}, which are not in torch's hub cache "
                    f"({path.parent}; set TORCH_HOME to move it) and could not be downloaded ({error}). Download "
                    f"{BACKBONE_WEIGHTS[net]} into that folder, or, for tests and offline smoke runs only, set "
                    "offline_random_backbone=True (LPIPS values are then not perceptual)."
                ) from error
        self.model.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> LPIPS:
        """LPIPS stays in eval mode (no dropout) whatever its parent does."""
        super().train(mode)
        self.model.eval()
        return self

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        """prediction, target: (B, 3, H, W) in [-1, 1] -> (B,) distances.

        Images smaller than ``MIN_SIZE`` are upsampled first: the backbones' strides and pooling need it.
        """
        if min(prediction.shape[-2:]) < MIN_SIZE:
            size = (MIN_SIZE, MIN_SIZE)
            prediction = F.interpolate(prediction, size=size, mode="bilinear", align_corners=False)
            target = F.interpolate(target, size=size, mode="bilinear", align_corners=False)
        return self.model(prediction, target, normalize=False).flatten()
