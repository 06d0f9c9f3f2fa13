"""Start training from a bundle's networks (e.g. an imported EG3D model) instead of a Lightning checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pix2nerf.errors import InputError
from pix2nerf.inference import load_model
from pix2nerf.networks import Encoder, Generator, PlaneResidual
from pix2nerf.networks.specs import network_spec
from pix2nerf.networks.synthesis import ToRGBLayer


def differing_arguments(
    configured: nn.Module, bundled: nn.Module, ignored: frozenset[str] = frozenset()
) -> dict[str, tuple[Any, Any]]:
    """The constructor arguments (beyond ``ignored``) in which two networks differ: name -> (configured, bundled)."""
    own, spec = network_spec(configured)["init_args"], network_spec(bundled)["init_args"]
    names = sorted((set(own) | set(spec)) - ignored)
    return {name: (own.get(name), spec.get(name)) for name in names if own.get(name) != spec.get(name)}


def _copy_matching(path: str | Path, what: str, source: nn.Module, targets: tuple[nn.Module, ...]) -> None:
    """Copy ``source``'s weights into each target after checking that their specs are equal, so a config that
    builds another architecture fails here with the differing arguments named."""
    for target in targets:
        differing = differing_arguments(target, source)
        if differing:
            raise InputError(
                f"the {what} configured for training differs from the one in {path} in {differing} "
                f"(configured, bundle); copy the bundle's {what} init_args (its .yaml) into the config"
            )
    for target in targets:
        target.load_state_dict(source.state_dict())


SUPERRESOLUTION_ARGS = frozenset(
    {"image_resolution", "sr_channels", "sr_antialias", "sr_noise_mode", "sr_input_resolution", "sr_conv_clamp"}
)
"""Generator arguments that shape only the super-resolution; growing may change them."""


def load_generator_bundle(path: str | Path, *generators: Generator, grow_superresolution: bool = False) -> None:
    """Copy the generator weights of bundle ``path`` into each of ``generators`` (a system's G and its EMA).

    With ``grow_superresolution`` the bundle's generator has no super-resolution and the generators have one
    (a larger ``image_resolution``, progressive growing): everything else is copied and must match, and the new
    super-resolution's ToRGB layers start at zero, so a grown generator first renders the bundle's image bilinearly
    upsampled (but for a two-pixel border, where the StyleGAN upsampling pads with zeros).
    """
    source = load_model(path).generator
    if not grow_superresolution:
        _copy_matching(path, "generator", source, generators)
        return
    if source.superresolution is not None:
        raise InputError(
            f"{path} already has a super-resolution ({source.image_resolution}^2 output); grow_superresolution "
            "starts one only on a generator that renders at its output size; drop grow_superresolution"
        )
    for target in generators:
        if target.superresolution is None:
            raise InputError(
                "grow_superresolution needs a generator configured with a super-resolution: set image_resolution "
                f"above neural_resolution ({target.neural_resolution}) and sr_channels"
            )
        differing = differing_arguments(target, source, ignored=SUPERRESOLUTION_ARGS)
        if differing:
            raise InputError(
                f"the generator configured for training differs from the one in {path} in {differing} (configured, "
                "bundle) beyond its super-resolution; copy the bundle's generator init_args (its .yaml) into the "
                "config and change only image_resolution and the sr_ arguments"
            )
        missing, unexpected = target.load_state_dict(source.state_dict(), strict=False)
        assert not unexpected and all(key.startswith("superresolution.") for key in missing), (missing, unexpected)
        with torch.no_grad():
            for module in target.superresolution.modules():
                if isinstance(module, ToRGBLayer):
                    module.weight.zero_()
                    module.bias.zero_()


def load_encoder_bundle(path: str | Path, encoder: Encoder, residual: PlaneResidual | None = None) -> None:
    """Copy the encoder weights of bundle ``path`` into ``encoder`` (the bundle must have an encoder; a w encoder
    also starts a w+ ``encoder``, see :meth:`Encoder.to_w_plus`), and its plane residual's into ``residual`` when
    both exist (a stage-1 bundle leaves a new residual as it is)."""
    model = load_model(path)
    if model.encoder is None:
        raise InputError(f"{path} has no encoder to start from; drop encoder_bundle to train the encoder from scratch")
    source = model.encoder
    if encoder.w_plus and not source.w_plus:  # a trained w encoder starts a w+ one, predicting the same at first
        source = source.to_w_plus()
    _copy_matching(path, "encoder", source, (encoder,))
    if residual is not None and model.residual is not None:
        _copy_matching(path, "plane residual", model.residual, (residual,))
