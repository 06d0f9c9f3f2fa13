"""Viewer test fixtures: tiny models (saved and loaded as bundles), a synthetic head image, running servers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pix2nerf.data import SyntheticHeads
from pix2nerf.data.images import write_image
from pix2nerf.inference import FaceModel, load_model, save_bundle
from pix2nerf.networks import Encoder
from pix2nerf.viewer import ViewerOptions, ViewerServer, ViewerSession, make_server
from tests.factories import tiny_face_model, tiny_generator

HEAD_RESOLUTION = 32
TINY_IMAGE_RESOLUTION = 16
SEMANTIC_CLASSES = 5
OPTIONS = ViewerOptions(video_frames=4, video_fps=4, mesh_resolution=16)
"""Small exports so every test stays fast."""


def tiny_editing_model() -> FaceModel:
    """A tiny model with semantic maps and decoupled geometry/appearance latents (FENeRF-style)."""
    generator = tiny_generator(
        image_resolution=TINY_IMAGE_RESOLUTION,
        sr_channels=(8, 8),
        decoupled_latents=True,
        num_semantic_classes=SEMANTIC_CLASSES,
    )
    encoder = Encoder(
        img_resolution=TINY_IMAGE_RESOLUTION, num_ws=generator.num_ws, w_dim=8, channel_base=64, channel_max=8
    )
    return FaceModel(generator, encoder).eval().requires_grad_(False)


@pytest.fixture(scope="session")
def head_png(tmp_path_factory) -> Path:
    """A held-out synthetic head, as a user would upload it."""
    path = tmp_path_factory.mktemp("inputs") / "head.png"
    write_image(path, SyntheticHeads("test", resolution=HEAD_RESOLUTION, num_identities=1)[0]["image"])
    return path


def serve(model: FaceModel, folder: Path) -> Iterator[ViewerServer]:
    """Save ``model`` as a bundle, load it back and serve it on a free port of 127.0.0.1 in a thread."""
    bundle = save_bundle(model, folder / "model.safetensors")
    server = make_server(ViewerSession(load_model(bundle), OPTIONS), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def viewer(tmp_path_factory) -> Iterator[ViewerServer]:
    """A server for the plain tiny model (no semantics, one latent for shape and appearance)."""
    yield from serve(tiny_face_model(), tmp_path_factory.mktemp("viewer"))


@pytest.fixture(scope="module")
def editing_viewer(tmp_path_factory) -> Iterator[ViewerServer]:
    """A server for the tiny semantic model with decoupled latents."""
    yield from serve(tiny_editing_model(), tmp_path_factory.mktemp("editing_viewer"))
