"""Single-image novel-view synthesis end to end: photo -> inversion -> videos, grids, depth, semantics, mesh.

:func:`novel_views` is what ``tools/novel_view.py`` runs for each input image; Python users call it directly.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor

from pix2nerf.inference import paths
from pix2nerf.inference.errors import check_output_folder
from pix2nerf.inference.inputs import Face, FaceDetector, load_face
from pix2nerf.inference.invert import Inversion, RefineOptions, encode, refine
from pix2nerf.inference.media import depth_frames, semantic_frames, to_frames, write_grid, write_video
from pix2nerf.inference.mesh import EG3D_DENSITY_LEVEL, extract_mesh, write_obj, write_ply
from pix2nerf.inference.model import FaceModel
from pix2nerf.inference.render import Views, render_views
from pix2nerf.metrics.image import psnr

LOGGER = logging.getLogger(__name__)


@dataclass
class NovelViewOptions:
    """What to render and write. Angles are radians; neural_resolution is the neural rendering size (None: the
    model's).

    Attributes:
        path, num_frames, yaw_amplitude, pitch_amplitude, yaws, pitches: the video's camera path
            (:func:`pix2nerf.inference.paths.camera_path`), centred on the estimated pose when
            ``follow_estimated_pose``, else on the frontal view.
        fps: video frame rate. grid_yaws, grid_pitches, grid_yaw_amplitude, grid_pitch_amplitude: the grid PNG.
        neural_resolution, num_coarse, num_importance, coarse_stride, max_samples: rendering quality and memory
            budget (None: the model's; see :class:`~pix2nerf.networks.Generator` for ``coarse_stride``).
        mesh_resolution, mesh_level: marching-cubes grid size and density level (0 resolution: no mesh).
        refine: per-image refinement (``refine.steps = 0``: encoder only).
        gif: also write GIFs of the videos.
        detector: ``"none"`` for pre-aligned crops, ``"haar"`` to find and crop the face first, ``"landmarks"``
            to align it from 5 landmarks (and start a model without an encoder at the landmarks' camera).
    """

    path: paths.PathKind = "orbit"
    num_frames: int = 48
    yaw_amplitude: float = 0.5
    pitch_amplitude: float = 0.15
    yaws: tuple[float, ...] = ()
    pitches: tuple[float, ...] = ()
    follow_estimated_pose: bool = False
    fps: int = 24
    grid_yaws: int = 5
    grid_pitches: int = 3
    grid_yaw_amplitude: float = 0.5
    grid_pitch_amplitude: float = 0.25
    neural_resolution: int | None = None
    num_coarse: int | None = None
    num_importance: int | None = None
    coarse_stride: int | None = None
    max_samples: int = 2**22
    mesh_resolution: int = 128
    mesh_level: float = EG3D_DENSITY_LEVEL
    refine: RefineOptions = field(default_factory=RefineOptions)
    gif: bool = True
    detector: FaceDetector = "none"


def camera_record(model: FaceModel, inversion: Inversion) -> dict[str, Any]:
    """The estimated camera as JSON: angles (radians and degrees) and the EG3D 25-d label."""
    yaw, pitch = inversion.yaw_pitch[0].tolist()
    return {
        "yaw": yaw,
        "pitch": pitch,
        "yaw_degrees": math.degrees(yaw),
        "pitch_degrees": math.degrees(pitch),
        "label": model.cameras(inversion.yaw_pitch.cpu()).label()[0].tolist(),
        "prior": asdict(model.prior),
    }


def novel_views(
    model: FaceModel, image_path: str | Path, output_dir: str | Path, options: NovelViewOptions, progress: bool = True
) -> dict[str, Any]:
    """Invert one image and write every output into ``output_dir``; returns the report (also ``report.json``).

    Outputs: ``input.png``, ``reconstruction.png``, ``orbit.mp4``/``.gif``, ``grid.png`` (yaw x pitch),
    ``depth.mp4``/``.gif`` + ``depth/*.png`` + ``depth.npy`` (z-depth, world units), ``semantics.mp4`` and
    ``semantics_grid.png`` for semantic models, ``mesh.ply``/``mesh.obj``, ``latent.pt`` (w, yaw_pitch),
    ``camera.json`` and ``report.json`` (timings in seconds, reconstruction PSNR).
    """
    out = check_output_folder(output_dir, "output_dir")
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    with timed(timings, "load"):
        face, image = load_input(model, image_path, options.detector, out)
    report: dict[str, Any] = {"input": str(image_path), "resolution": model.image_resolution, "detector": face.detector}
    if face.yaw_pitch is not None:
        report["landmark_yaw_pitch_degrees"] = [math.degrees(angle) for angle in face.yaw_pitch.tolist()]
    inversion, reconstruction, scores = invert_image(model, image, face.yaw_pitch, options.refine, progress, timings)
    report.update(scores)
    camera = write_inversion(out, model, inversion, reconstruction)
    num_frames, files = write_videos(out, inversion, options, timings)
    write_grids(out, inversion, options, timings)
    if options.mesh_resolution > 0:
        report["mesh"] = write_mesh(out, inversion, options, timings)
    report.update(
        {
            "camera": camera,
            "frames": num_frames,
            "refinement_losses": inversion.losses[:: max(1, len(inversion.losses) // 20)],
            "timings_seconds": timings,
            "files": files,
        }
    )
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


@contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Record the seconds the block takes (rounded to 0.1 ms) as ``timings[name]``, once it succeeds."""
    start = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - start, 4)


def load_input(model: FaceModel, image_path: str | Path, detector: FaceDetector, out: Path) -> tuple[Face, Tensor]:
    """The face of ``image_path`` at the model's image size (cropped or aligned by ``detector``) and its image
    (3, H, W) on the model's device; writes ``input.png``."""
    face = load_face(image_path, model.image_resolution, detector, prior=model.prior)
    image = face.image.to(model.w_avg.device)
    iio.imwrite(out / "input.png", to_frames(image[None])[0])
    return face, image


def reconstruct(inversion: Inversion) -> Tensor:
    """The inversion rendered at its own pose (1, 3, H, W) with its model."""
    with torch.no_grad():
        return inversion.model.render(inversion.w, inversion.yaw_pitch, plane_offsets=inversion.plane_offsets).image


def invert_image(
    model: FaceModel,
    image: Tensor,
    landmark_yaw_pitch: Tensor | None,
    options: RefineOptions,
    progress: bool,
    timings: dict[str, float],
) -> tuple[Inversion, Tensor, dict[str, float]]:
    """Encode ``image`` (3, H, W) (at the landmarks' pose, if any) and refine it unless ``options`` skip both
    refinement stages. Returns the inversion, its reconstruction and the PSNRs of the encoder's and the final
    reconstruction; times ``encode`` and ``refine``."""
    with timed(timings, "encode"):
        inversion = encode(model, image, landmark_yaw_pitch)
    reconstruction = reconstruct(inversion)
    scores = {"psnr_encoder": psnr(reconstruction, image[None]).item()}
    if options.enabled:
        with timed(timings, "refine"):
            inversion = refine(model, image, inversion, options, progress)
        reconstruction = reconstruct(inversion)
    scores["psnr_reconstruction"] = psnr(reconstruction, image[None]).item()
    return inversion, reconstruction, scores


def write_inversion(out: Path, model: FaceModel, inversion: Inversion, reconstruction: Tensor) -> dict[str, Any]:
    """Write ``reconstruction.png``, ``latent.pt`` (w, yaw_pitch and any plane offsets) and ``camera.json``;
    returns the camera record."""
    iio.imwrite(out / "reconstruction.png", to_frames(reconstruction)[0])
    latent = {"w": inversion.w.cpu(), "yaw_pitch": inversion.yaw_pitch.cpu()}
    if inversion.plane_offsets is not None:
        latent["plane_offsets"] = inversion.plane_offsets.cpu()
    torch.save(latent, out / "latent.pt")
    camera = camera_record(model, inversion)
    (out / "camera.json").write_text(json.dumps(camera, indent=2))
    return camera


def render_inversion(inversion: Inversion, camera_angles: Tensor, options: NovelViewOptions) -> Views:
    """The inverted face at each (yaw, pitch) of ``camera_angles`` (N, 2) at the options' quality."""
    return render_views(
        inversion.model,
        inversion.w,
        camera_angles,
        options.neural_resolution,
        options.num_coarse,
        options.num_importance,
        options.max_samples,
        inversion.plane_offsets,
        options.coarse_stride,
    )


def video_angles(options: NovelViewOptions, inversion: Inversion) -> Tensor:
    """(N, 2) yaw/pitch of the video's frames: the options' path, around the estimated pose if it is followed."""
    camera_angles = paths.camera_path(
        options.path, options.num_frames, options.yaw_amplitude, options.pitch_amplitude, options.yaws, options.pitches
    )
    if options.follow_estimated_pose:
        camera_angles = paths.around(camera_angles, inversion.yaw_pitch.cpu())
    return camera_angles


def write_videos(
    out: Path, inversion: Inversion, options: NovelViewOptions, timings: dict[str, float]
) -> tuple[int, list[str]]:
    """Render the camera path and write ``orbit``, ``depth`` (+ ``depth/*.png``, ``depth.npy``) and, for semantic
    models, ``semantics`` videos; times ``render_video``. Returns the number of frames and the video files."""
    with timed(timings, "render_video"):
        camera_angles = video_angles(options, inversion)
        video = render_inversion(inversion, camera_angles, options)
    files = write_video(out / "orbit", video.images, options.fps, options.gif)
    depth_images = depth_frames(video.depth, video.opacity)
    files += write_video(out / "depth", depth_images, options.fps, options.gif)
    (out / "depth").mkdir(exist_ok=True)
    for index, frame in enumerate(to_frames(depth_images)):
        iio.imwrite(out / "depth" / f"{index:04d}.png", frame)
    np.save(out / "depth.npy", video.depth[:, 0].cpu().numpy().astype(np.float32))
    if video.semantics is not None:
        files += write_video(out / "semantics", semantic_frames(video.semantics), options.fps, options.gif)
    return len(camera_angles), files


def write_grids(out: Path, inversion: Inversion, options: NovelViewOptions, timings: dict[str, float]) -> None:
    """Render the yaw x pitch grid and write ``grid.png`` (and ``semantics_grid.png`` for semantic models); times
    ``render_grid``."""
    with timed(timings, "render_grid"):
        grid_angles = paths.grid(
            options.grid_yaws, options.grid_pitches, options.grid_yaw_amplitude, options.grid_pitch_amplitude
        )
        grid = render_inversion(inversion, grid_angles, options)
    write_grid(out / "grid.png", grid.images, options.grid_yaws)
    if grid.semantics is not None:
        write_grid(out / "semantics_grid.png", semantic_frames(grid.semantics), options.grid_yaws)


def write_mesh(out: Path, inversion: Inversion, options: NovelViewOptions, timings: dict[str, float]) -> dict[str, Any]:
    """Extract the surface at ``mesh_level`` (or the middle of the field's range, with a warning, when the density
    never reaches it) and write ``mesh.ply`` and ``mesh.obj``; times ``mesh``. Returns the report's mesh entry."""
    with timed(timings, "mesh"):
        mesh = extract_mesh(
            inversion.model.generator,
            inversion.w,
            options.mesh_resolution,
            options.mesh_level,
            inversion.plane_offsets,
            fallback_to_range=True,
        )
        write_ply(mesh, out / "mesh.ply")
        write_obj(mesh, out / "mesh.obj")
    entry: dict[str, Any] = {"vertices": len(mesh.vertices), "faces": len(mesh.faces), "level": mesh.level}
    if mesh.level != options.mesh_level:
        entry["warning"] = (
            f"the density never crosses mesh_level {options.mesh_level}; the surface is at {mesh.level:.4g}, "
            "the middle of the field's range (set mesh_level to choose another)"
        )
        LOGGER.warning(entry["warning"])
    return entry
