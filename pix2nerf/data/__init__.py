"""Data: EG3D-format data sets and procedural synthetic heads with exact cameras, depth and semantics."""

from pix2nerf.data.batch import BATCH_KEYS, FaceBatch
from pix2nerf.data.datamodule import FaceDataModule
from pix2nerf.data.eg3d import DatasetFormatError, EG3DDataset, read_labels
from pix2nerf.data.folder import ImageFolderDataset
from pix2nerf.data.heads import NUM_SEMANTIC_CLASSES, SEMANTIC_CLASSES, HeadImages, render_heads, sample_heads
from pix2nerf.data.images import ImageReadError, read_image, write_image
from pix2nerf.data.synthetic import EVAL_PITCHES, EVAL_YAWS, TEST_SEED_OFFSET, SyntheticHeads
from pix2nerf.data.teacher_cache import TeacherCache

__all__ = [
    "BATCH_KEYS",
    "EVAL_PITCHES",
    "EVAL_YAWS",
    "NUM_SEMANTIC_CLASSES",
    "SEMANTIC_CLASSES",
    "TEST_SEED_OFFSET",
    "DatasetFormatError",
    "EG3DDataset",
    "FaceDataModule",
    "ImageFolderDataset",
    "FaceBatch",
    "HeadImages",
    "ImageReadError",
    "SyntheticHeads",
    "TeacherCache",
    "read_image",
    "read_labels",
    "render_heads",
    "sample_heads",
    "write_image",
]
