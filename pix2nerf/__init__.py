"""pix2nerf: one photo of a face in, an explorable 3D radiance field out."""

__version__ = "0.1.0"
