"""The viewer's model side: one loaded face, rendered from any camera, exported as PNG, MP4 or PLY.

Everything here is independent of HTTP so it can be used (and tested) directly; :mod:`pix2nerf.viewer.server`
turns requests into calls on a :class:`ViewerSession`. Renders are serialised with the session's lock: one
model, one render at a time.
"""

from __future__ import annotations

import io
import math
import pickle
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import imageio.v3 as iio
import torch
from torch import Tensor

from pix2nerf.cameras import Cameras
from pix2nerf.inference import FaceModel, InputError, paths
from pix2nerf.inference.editing import interpolate_appearance
from pix2nerf.inference.inputs import FaceDetector, decode_face
from pix2nerf.inference.invert import Inversion, RefineOptions, encode, refine
from pix2nerf.inference.media import depth_frames, semantic_frames, to_frames, write_video
from pix2nerf.inference.mesh import EG3D_DENSITY_LEVEL, extract_mesh, write_ply
from pix2nerf.inference.render import render_cameras

Mode = Literal["rgb", "depth", "semantics"]
Quality = Literal["preview", "full"]
MODES: tuple[str, ...] = get_args(Mode)
QUALITIES: tuple[str, ...] = get_args(Quality)

LATENT_SUFFIXES = (".pt", ".pth")
"""Uploads with these names are latents saved by ``tools/novel_view.py`` (``latent.pt``); others are images."""
PITCH_LIMIT = 1.2
"""Largest |pitch| in radians the viewer allows (look-at cameras are undefined straight above or below)."""
ZOOM_RANGE = (0.5, 4.0)
"""Zoom multiplies the prior's focal length; this is the allowed range."""
PREVIEW_DIVISOR = 2
"""Default preview: the model's neural rendering size divided by this."""


@dataclass
class ViewerOptions:
    """How the viewer renders and exports (resolutions are neural rendering sizes; None: defaults).

    Attributes:
        preview_resolution: while the camera moves (default: the model's neural size / ``PREVIEW_DIVISOR``).
        full_resolution: once the camera rests, and for exports (default: the model's neural size).
        refine_steps, finetune_steps: per-image refinement after the encoder (latent steps, then PTI steps).
        video_frames, video_fps, video_yaw_amplitude, video_pitch_amplitude: the exported orbit (radians),
            centred on the current view.
        mesh_resolution, mesh_level: marching-cubes grid size and surface density of the exported mesh.
        max_samples: ray samples evaluated at once when rendering a video (memory budget).
        detector: how uploaded photos are framed (:data:`~pix2nerf.inference.inputs.FaceDetector`).
    """

    preview_resolution: int | None = None
    full_resolution: int | None = None
    refine_steps: int = 0
    finetune_steps: int = 0
    video_frames: int = 48
    video_fps: int = 24
    video_yaw_amplitude: float = 0.5
    video_pitch_amplitude: float = 0.15
    mesh_resolution: int = 128
    mesh_level: float = EG3D_DENSITY_LEVEL
    max_samples: int = 2**22
    detector: FaceDetector = "none"


@dataclass(frozen=True)
class View:
    """What to show: a camera (yaw/pitch in radians on the prior's sphere, zoom on its focal length), a display
    mode, a quality, the truncation psi (1: the face's latent, 0: the average face) and the appearance mix
    (0: the face's own appearance, 1: the appearance source's)."""

    yaw: float = 0.0
    pitch: float = 0.0
    zoom: float = 1.0
    mode: Mode = "rgb"
    quality: Quality = "full"
    truncation: float = 1.0
    appearance: float = 0.0

    @classmethod
    def from_query(cls, query: Mapping[str, list[str]]) -> View:
        """Parse URL query parameters (as from ``urllib.parse.parse_qs``); bad values raise :class:`InputError`."""

        def number(name: str, default: float, low: float = -math.inf, high: float = math.inf) -> float:
            text = query.get(name, [str(default)])[0]
            try:
                value = float(text)
            except ValueError:
                raise InputError(f"{name} must be a number; got {text!r}") from None
            if not math.isfinite(value):
                raise InputError(f"{name} must be finite; got {text!r}")
            return min(max(value, low), high)

        def choice(name: str, default: str, allowed: tuple[str, ...]) -> Any:
            value = query.get(name, [default])[0]
            if value not in allowed:
                raise InputError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
            return value

        return cls(
            yaw=number("yaw", 0.0),
            pitch=number("pitch", 0.0, -PITCH_LIMIT, PITCH_LIMIT),
            zoom=number("zoom", 1.0, *ZOOM_RANGE),
            mode=choice("mode", "rgb", MODES),
            quality=choice("quality", "full", QUALITIES),
            truncation=number("truncation", 1.0, 0.0, 1.0),
            appearance=number("appearance", 0.0, 0.0, 1.0),
        )


def png_bytes(image: Tensor) -> bytes:
    """(3, H, W) in [-1, 1] -> PNG file contents."""
    return iio.imwrite("<bytes>", to_frames(image[None])[0], extension=".png")


def load_latent(data: bytes, name: str, model: FaceModel) -> Inversion:
    """A ``latent.pt`` upload (``{"w": (1, num_ws, w_dim), "yaw_pitch": (1, 2)}`` and, from a model with a plane
    residual, ``"plane_offsets": (1, 3, C, P, P)``) read safely (tensors only)."""
    try:
        saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise InputError(f"{name} holds objects other than tensors, so it was not loaded (safe loading)") from error
    except Exception as error:  # torch raises many types for corrupt data
        raise InputError(f"{name} is not a readable PyTorch file ({error}); upload a latent.pt or an image") from error
    expected = (1, model.generator.num_ws, model.generator.w_dim)
    w = saved.get("w") if isinstance(saved, dict) else None
    if not isinstance(w, Tensor) or tuple(w.shape) != expected:
        shape = tuple(w.shape) if isinstance(w, Tensor) else None
        raise InputError(f"{name} has no latent 'w' of shape {expected} for this model (got {shape})")
    yaw_pitch = saved.get("yaw_pitch", torch.zeros(1, 2))
    if not isinstance(yaw_pitch, Tensor) or tuple(yaw_pitch.shape) != (1, 2):
        raise InputError(f"{name}: 'yaw_pitch' must be a (1, 2) tensor of radians")
    offsets = saved.get("plane_offsets")
    if offsets is not None:
        generator = model.generator
        synthesis = generator.backbone.synthesis
        if generator.field != "triplane" or synthesis is None:
            raise InputError(f"{name} holds tri-plane offsets, but this model has no tri-planes (a hash-grid head)")
        size = synthesis.img_resolution
        planes = (1, 3, generator.plane_channels + generator.appearance_channels, size, size)
        if not isinstance(offsets, Tensor) or tuple(offsets.shape) != planes:
            got = tuple(offsets.shape) if isinstance(offsets, Tensor) else type(offsets).__name__
            raise InputError(f"{name}: 'plane_offsets' must be {planes} for this model, got {got}")
        offsets = offsets.float().to(model.w_avg.device)
    device = model.w_avg.device
    return Inversion(w=w.float().to(device), yaw_pitch=yaw_pitch.float().to(device), model=model, plane_offsets=offsets)


class ViewerSession:
    """A model and the face being explored; thread-safe (renders hold :attr:`lock`).

    Args:
        model: the loaded model (its device is used for everything).
        options: rendering and export settings.
    """

    def __init__(self, model: FaceModel, options: ViewerOptions | None = None) -> None:
        self.model = model
        self.options = options or ViewerOptions()
        self.lock = threading.Lock()
        self.face: Inversion | None = None
        self.face_name: str | None = None
        self.appearance_source: Tensor | None = None

    @property
    def semantics_available(self) -> bool:
        return self.model.generator.num_semantic_classes > 0

    @property
    def appearance_swap_available(self) -> bool:
        return bool(self.model.generator.decoupled_latents)

    def neural_resolution(self, quality: Quality) -> int:
        """Neural rendering size for a quality level."""
        neural = self.model.generator.neural_resolution
        if quality == "preview":
            return self.options.preview_resolution or max(1, neural // PREVIEW_DIVISOR)
        return self.options.full_resolution or neural

    def info(self) -> dict[str, Any]:
        """What the page needs to set itself up (JSON)."""
        face = None
        if self.face is not None:
            yaw, pitch = self.face.yaw_pitch[0].tolist()
            face = {"name": self.face_name, "yaw": yaw, "pitch": pitch}
        return {
            "image_resolution": self.model.image_resolution,
            "preview_resolution": self.neural_resolution("preview"),
            "full_resolution": self.neural_resolution("full"),
            "semantics": self.semantics_available,
            "appearance_swap": self.appearance_swap_available,
            "appearance_source": self.appearance_source is not None,
            "pitch_limit": PITCH_LIMIT,
            "zoom_range": list(ZOOM_RANGE),
            "face": face,
        }

    def invert(self, data: bytes, name: str) -> Inversion:
        """An upload (image or ``latent.pt``) -> its inversion (encoder, then refinement when configured)."""
        if Path(name).suffix.lower() in LATENT_SUFFIXES:
            return load_latent(data, name, self.model)
        face = decode_face(data, name, self.model.image_resolution, self.options.detector, prior=self.model.prior)
        image = face.image.to(self.model.w_avg.device)
        inversion = encode(self.model, image, face.yaw_pitch)
        options = RefineOptions(steps=self.options.refine_steps, finetune_steps=self.options.finetune_steps)
        if options.enabled:
            inversion = refine(self.model, image, inversion, options, progress=False)
        return inversion

    def set_face(self, data: bytes, name: str) -> dict[str, Any]:
        """Make an upload the face being explored; returns :meth:`info`."""
        with self.lock:
            self.face, self.face_name = self.invert(data, name), name
            return self.info()

    def set_appearance_source(self, data: bytes, name: str) -> dict[str, Any]:
        """Use an upload's appearance for the appearance swap; returns :meth:`info`."""
        if not self.appearance_swap_available:
            raise InputError("this model has one latent for shape and appearance, so appearance cannot be swapped")
        with self.lock:
            self.appearance_source = self.invert(data, name).w
            return self.info()

    def _face(self) -> Inversion:
        if self.face is None:
            raise InputError("no face loaded yet: upload an image or a latent.pt first")
        return self.face

    def _face_model(self) -> FaceModel:
        """The model the face renders with: the session's, or its view with the face's PTI generator."""
        return self._face().model

    def latent(self, view: View) -> Tensor:
        """The face's latent with the view's appearance mix and truncation applied, (1, num_ws, w_dim)."""
        w = self._face().w
        if view.appearance > 0 and self.appearance_source is not None:
            w = interpolate_appearance(self._face_model().generator, w, self.appearance_source, view.appearance)
        return torch.lerp(self.model.w_avg.expand_as(w), w, view.truncation)

    def plane_offsets(self, view: View) -> Tensor | None:
        """The face's stage-2 tri-plane offsets (1, 3, C, P, P) scaled by the view's truncation, or None."""
        offsets = self._face().plane_offsets
        return offsets * view.truncation if offsets is not None else None

    def cameras(self, angles: Tensor, zoom: float) -> Cameras:
        """Cameras at yaw/pitch ``angles`` (N, 2) on the prior's sphere, on the model's device; zoom scales the
        focal length (see :meth:`FaceModel.cameras`)."""
        return self.model.cameras(angles.to(self.model.w_avg.device), zoom)

    def _check_mode(self, mode: Mode) -> None:
        if mode == "semantics" and not self.semantics_available:
            raise InputError("this model renders no semantic maps; choose rgb or depth")

    @torch.no_grad()
    def _render(self, view: View, angles: Tensor, neural_resolution: int) -> Tensor:
        """Display images (N, 3, H, W) in [-1, 1] of the view's mode at ``angles`` (N, 2), batched in memory."""
        cameras = self.cameras(angles, view.zoom)
        model, w = self._face_model(), self.latent(view)
        with model.autocast():
            views = render_cameras(
                model.generator,
                w,
                cameras,
                neural_resolution,
                max_samples=self.options.max_samples,
                plane_offsets=self.plane_offsets(view),
            )
        if view.mode == "depth":
            return depth_frames(views.depth, views.opacity)
        if view.mode == "semantics":
            assert views.semantics is not None  # _check_mode refused semantics for models without them
            return semantic_frames(views.semantics)
        return views.images

    def render(self, view: View, still_wanted: Callable[[], bool] = lambda: True) -> bytes | None:
        """The view as a PNG; None when ``still_wanted`` says, once the lock is held, that it is no longer wanted."""
        self._check_mode(view.mode)
        with self.lock:
            if not still_wanted():
                return None
            angles = torch.tensor([[view.yaw, view.pitch]])
            return png_bytes(self._render(view, angles, self.neural_resolution(view.quality))[0])

    def export_video(self, view: View) -> bytes:
        """An orbit around the view (its mode, zoom, truncation, appearance) at full resolution, as MP4."""
        self._check_mode(view.mode)
        options = self.options
        orbit = paths.orbit(options.video_frames, options.video_yaw_amplitude, options.video_pitch_amplitude)
        angles = paths.around(orbit, torch.tensor([view.yaw, view.pitch]))
        with self.lock:
            frames = self._render(view, angles, self.neural_resolution("full"))
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "orbit"
            write_video(path, frames, options.video_fps, gif=False)
            return path.with_suffix(".mp4").read_bytes()

    def export_mesh(self, view: View) -> bytes:
        """The face's surface (with the view's truncation and appearance) as a binary PLY with vertex colours."""
        with self.lock:
            try:
                mesh = extract_mesh(
                    self._face_model().generator,
                    self.latent(view),
                    self.options.mesh_resolution,
                    self.options.mesh_level,
                    self.plane_offsets(view),
                    fallback_to_range=True,
                )
            except ValueError as error:
                raise InputError(
                    f"no mesh: {error}: restart the viewer with mesh_level=<a value in that range>"
                ) from error
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "mesh.ply"
            write_ply(mesh, path)
            return path.read_bytes()
