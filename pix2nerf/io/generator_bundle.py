"""Start training from a bundle's generator (e.g. an imported EG3D model) instead of a Lightning checkpoint."""

from __future__ import annotations

from pathlib import Path

from pix2nerf.inference import InputError, load_model
from pix2nerf.networks import Generator
from pix2nerf.networks.specs import network_spec


def load_generator_bundle(path: str | Path, *generators: Generator) -> None:
    """Copy the generator weights of bundle ``path`` into each of ``generators`` (a system's G and its EMA).

    The bundle's generator spec must equal theirs, so a config that builds another architecture fails here
    with the differing arguments named, instead of training a silently different model.
    """
    source = load_model(path).generator
    spec = network_spec(source)["init_args"]
    for generator in generators:
        own = network_spec(generator)["init_args"]
        differing = {
            name: (own.get(name), spec.get(name))
            for name in sorted(set(own) | set(spec))
            if own.get(name) != spec.get(name)
        }
        if differing:
            raise InputError(
                f"the generator configured for training differs from the one in {path} in {differing} "
                "(configured, bundle); copy the bundle's generator init_args (its .yaml) into the config"
            )
    for generator in generators:
        generator.load_state_dict(source.state_dict())
