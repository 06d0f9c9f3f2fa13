"""Start training from a bundle's networks (e.g. an imported EG3D model) instead of a Lightning checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pix2nerf.errors import InputError
from pix2nerf.inference import load_model
from pix2nerf.networks import Encoder, Generator, PlaneResidual
from pix2nerf.networks.specs import network_spec
from pix2nerf.networks.synthesis import ToRGBLayer

SUPERRESOLUTION_ARGS = frozenset(
    {"image_resolution", "sr_channels", "sr_antialias", "sr_noise_mode", "sr_input_resolution", "sr_conv_clamp"}
)
"""Generator arguments that shape only the super-resolution; growing may change them."""


def _copy_matching(
    path: str | Path,
    what: str,
    source: nn.Module,
    targets: tuple[nn.Module, ...],
    new_module: str | None = None,
    new_module_args: frozenset[str] = frozenset(),
) -> None:
    """Copy ``source``'s weights into each target after checking that their specs are equal, so a config that
    builds another architecture fails here with the differing arguments named. The targets may add submodule
    ``new_module`` (shaped by ``new_module_args``, which may differ) that the source lacks; it keeps its weights."""
    spec = network_spec(source)["init_args"]
    for target in targets:
        own = network_spec(target)["init_args"]
        names = sorted((set(own) | set(spec)) - new_module_args)
        differing = {name: (own.get(name), spec.get(name)) for name in names if own.get(name) != spec.get(name)}
        if differing:
            allowed = f" beyond its {new_module}" if new_module else ""
            raise InputError(
                f"the {what} configured for training differs from the one in {path} in {differing} "
                f"(configured, bundle){allowed}; copy the bundle's {what} init_args (its .yaml) into the config"
            )
    for target in targets:
        missing, unexpected = target.load_state_dict(source.state_dict(), strict=new_module is None)
        assert not unexpected and all(key.startswith(f"{new_module}.") for key in missing), (missing, unexpected)


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
    grown: list[nn.Module] = []
    for target in generators:
        if target.superresolution is None:
            raise InputError(
                "grow_superresolution needs a generator configured with a super-resolution: set image_resolution "
                f"above neural_resolution ({target.neural_resolution}) and sr_channels"
            )
        grown.append(target.superresolution)
    _copy_matching(path, "generator", source, generators, "superresolution", SUPERRESOLUTION_ARGS)
    with torch.no_grad():
        for superresolution in grown:
            for module in superresolution.modules():
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
