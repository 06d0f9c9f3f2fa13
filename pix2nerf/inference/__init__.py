"""Inference: load a trained model, invert images, render new views, depth, semantics and meshes."""

from pix2nerf.errors import InputError
from pix2nerf.inference.bundle import export_bundle, load_model, save_bundle
from pix2nerf.inference.errors import INPUT_ERROR_EXIT_CODE
from pix2nerf.inference.model import FaceModel

__all__ = ["INPUT_ERROR_EXIT_CODE", "FaceModel", "InputError", "export_bundle", "load_model", "save_bundle"]
