"""Networks: mapping, synthesis, super-resolution and the 3D-aware generator."""

from pix2nerf.networks.discriminator import Discriminator, DiscriminatorOutput
from pix2nerf.networks.encoder import Encoder, EncoderOutput
from pix2nerf.networks.generator import Backbone, Generator, GeneratorOutput
from pix2nerf.networks.mapping import DecoupledMapping, MappingNetwork
from pix2nerf.networks.residual import PlaneResidual
from pix2nerf.networks.superresolution import SuperResolution
from pix2nerf.networks.synthesis import SynthesisBlock, SynthesisLayer, SynthesisNetwork, ToRGBLayer

__all__ = [
    "Backbone",
    "DecoupledMapping",
    "Discriminator",
    "DiscriminatorOutput",
    "Encoder",
    "EncoderOutput",
    "Generator",
    "GeneratorOutput",
    "MappingNetwork",
    "PlaneResidual",
    "SuperResolution",
    "SynthesisBlock",
    "SynthesisLayer",
    "SynthesisNetwork",
    "ToRGBLayer",
]
