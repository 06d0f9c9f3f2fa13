"""Reading other projects' files safely: EG3D network pickles, and importing them as pix2nerf bundles."""

from pix2nerf.io.eg3d_import import eg3d_generator, generator_arguments, import_eg3d
from pix2nerf.io.eg3d_pickle import ModuleRecord, PersistentRecord, UnsafePickleError, read_eg3d_pickle
from pix2nerf.io.generator_bundle import load_encoder_bundle, load_generator_bundle

__all__ = [
    "ModuleRecord",
    "PersistentRecord",
    "UnsafePickleError",
    "eg3d_generator",
    "generator_arguments",
    "import_eg3d",
    "load_encoder_bundle",
    "load_generator_bundle",
    "read_eg3d_pickle",
]
