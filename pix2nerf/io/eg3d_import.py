"""Import an EG3D ``TriPlaneGenerator`` from a network pickle as a pix2nerf generator and inference bundle.

The pickle is read safely (:mod:`pix2nerf.io.eg3d_pickle`); EG3D's constructor arguments become
:class:`~pix2nerf.networks.Generator` arguments that reproduce EG3D's rendering (its plane projection,
importance sampling and raw image; see ``tests/networks/test_eg3d_exactness.py``), and its weights load under
the same names except the decoder, which pix2nerf keeps inside its radiance head (``head.decoder.``).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from pix2nerf.cameras import FACE_PRIOR, PosePrior
from pix2nerf.inference import FaceModel, InputError, save_bundle
from pix2nerf.io.eg3d_pickle import PersistentRecord, read_eg3d_pickle
from pix2nerf.networks import Generator
from pix2nerf.networks.specs import check_arguments

EG3D_PLANE_RESOLUTION = 256
"""EG3D's backbone always emits 3 planes of 32 channels at 256^2 (``img_resolution=256, img_channels=96``)."""

SUPERRESOLUTION = {
    "training.superresolution.SuperresolutionHybrid2X": (64, 128),
    "training.superresolution.SuperresolutionHybrid4X": (128, 256),
}
"""EG3D super-resolution modules pix2nerf's ``SuperResolution`` implements: (input, output) resolution.

Both are a non-upsampling block of 128 channels then an upsampling block of 64, as ``sr_channels=(128, 64)``.
EG3D's ``SuperresolutionHybrid8X`` and ``8XDC`` (its 512^2 FFHQ and AFHQ models) upsample in their first
block, which ``SuperResolution`` does not implement.
"""

_GENERATOR_KEYS = {
    "z_dim",
    "c_dim",
    "w_dim",
    "img_resolution",
    "img_channels",
    "sr_num_fp16_res",
    "mapping_kwargs",
    "rendering_kwargs",
    "sr_kwargs",
}
_SYNTHESIS_KEYS = {"channel_base", "channel_max", "num_fp16_res", "conv_clamp", "fused_modconv_default"}
_RENDERING_KEYS = ("box_warp", "ray_start", "ray_end", "depth_resolution", "depth_resolution_importance")
_SR_KWARGS_IGNORED = {"channel_base", "channel_max", "fused_modconv_default"}  # EG3D's SR modules ignore them


def _reject(problem: str, fix: str) -> InputError:
    return InputError(f"cannot import this EG3D generator: {problem}; {fix}")


def generator_arguments(record: PersistentRecord) -> tuple[dict[str, Any], list[str]]:
    """:class:`Generator` arguments equivalent to an EG3D ``TriPlaneGenerator`` record, and notes on what differs.

    Raises :class:`InputError` for settings pix2nerf cannot reproduce (naming the setting and what to do).
    """
    if record.class_name != "TriPlaneGenerator":
        raise _reject(f"the network is a {record.class_name}, not a TriPlaneGenerator", "import G_ema or G")
    kwargs = dict(zip(("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"), record.init_args, strict=False))
    kwargs.update(record.init_kwargs)
    rendering = dict(kwargs.get("rendering_kwargs") or {})
    _check_supported(kwargs, rendering)
    neural_resolution, image_resolution = SUPERRESOLUTION[rendering["superresolution_module"]]
    arguments = dict(
        z_dim=kwargs["z_dim"],
        c_dim=kwargs["c_dim"],
        w_dim=kwargs["w_dim"],
        mapping_layers=dict(kwargs.get("mapping_kwargs") or {}).get("num_layers", 8),
        plane_resolution=EG3D_PLANE_RESOLUTION,
        plane_channels=32,
        channel_base=kwargs.get("channel_base", 32768),
        channel_max=kwargs.get("channel_max", 512),
        plane_order="eg3d",
        box_warp=float(rendering["box_warp"]),
        feature_dim=32,
        decoder_hidden=64,
        decoder_lr_multiplier=float(rendering.get("decoder_lr_mul", 1.0)),
        neural_resolution=neural_resolution,
        image_resolution=image_resolution,
        sr_channels=[128, 64],
        sr_antialias=bool(rendering.get("sr_antialias", True)),
        sr_noise_mode=rendering.get("superresolution_noise_mode", "none"),
        ray_start=float(rendering["ray_start"]),
        ray_end=float(rendering["ray_end"]),
        num_coarse=int(rendering["depth_resolution"]),
        num_importance=int(rendering["depth_resolution_importance"]),
        importance_mode="eg3d",
        conditioning_scale=0.0 if rendering.get("c_gen_conditioning_zero") else float(rendering.get("c_scale", 0.0)),
        eg3d_raw_image=True,
    )
    return arguments, _differences(kwargs, record.state.get("neural_rendering_resolution", neural_resolution))


def _check_supported(kwargs: Mapping[str, Any], rendering: Mapping[str, Any]) -> None:
    """Raise :class:`InputError` for EG3D settings pix2nerf's generator cannot reproduce."""
    missing = [key for key in ("z_dim", "c_dim", "w_dim", "img_resolution") if key not in kwargs]
    missing += [f"rendering_kwargs.{key}" for key in _RENDERING_KEYS if key not in rendering]
    if missing:
        raise _reject(f"its constructor arguments lack {missing}", "the pickle is not a complete EG3D snapshot")
    if kwargs.get("img_channels", 3) != 3:
        raise _reject(f"img_channels={kwargs['img_channels']}", "pix2nerf renders RGB (3 channels) only")
    known = {*_GENERATOR_KEYS, *_SYNTHESIS_KEYS}
    if set(kwargs) - known:
        raise _reject(
            f"unknown constructor arguments {sorted(set(kwargs) - known)}",
            "this importer reads the TriPlaneGenerator of NVlabs/eg3d; a modified EG3D needs its own conversion",
        )
    mapping_extra = set(kwargs.get("mapping_kwargs") or {}) - {"num_layers"}
    if mapping_extra:
        raise _reject(f"mapping_kwargs {sorted(mapping_extra)}", "pix2nerf's mapping network sets only its depth")
    sr_extra = set(kwargs.get("sr_kwargs") or {}) - _SR_KWARGS_IGNORED
    if sr_extra:
        raise _reject(f"sr_kwargs {sorted(sr_extra)}", "only EG3D's default super-resolution blocks are supported")
    module = rendering.get("superresolution_module")
    if module not in SUPERRESOLUTION:
        raise _reject(
            f"its super-resolution module {module} is not implemented by pix2nerf.networks.SuperResolution "
            f"(supported: {', '.join(name.rsplit('.', 1)[1] for name in SUPERRESOLUTION)})",
            "use a 128^2 (2X) or 256^2 (4X) EG3D checkpoint, or add that module to pix2nerf",
        )
    if kwargs["img_resolution"] != SUPERRESOLUTION[module][1]:
        raise _reject(
            f"img_resolution={kwargs['img_resolution']} with {module}", f"it outputs {SUPERRESOLUTION[module][1]}^2"
        )
    if "auto" in (rendering["ray_start"], rendering["ray_end"]):
        raise _reject("ray_start/ray_end 'auto' (box-intersected rays)", "pix2nerf samples rays between fixed bounds")
    for key, expected in (("clamp_mode", "softplus"), ("disparity_space_sampling", False), ("white_back", False)):
        if rendering.get(key, expected) != expected:
            raise _reject(f"rendering_kwargs {key}={rendering[key]!r}", f"pix2nerf renders as {key}={expected!r}")
    if rendering.get("density_noise", 0) > 0:
        raise _reject("rendering_kwargs density_noise > 0", "pix2nerf adds no noise to densities")
    noise_mode = rendering.get("superresolution_noise_mode", "none")
    if noise_mode not in ("random", "const", "none"):
        raise _reject(f"superresolution_noise_mode={noise_mode!r}", "use 'random', 'const' or 'none'")


def _differences(kwargs: Mapping[str, Any], pickled_resolution: int) -> list[str]:
    """Notes on where the imported generator may render differently from EG3D (all are small or per-call)."""
    notes = []
    if kwargs.get("conv_clamp") is not None:
        notes.append(f"EG3D clamps synthesis activations to +-{kwargs['conv_clamp']}; pix2nerf does not clamp them")
    if kwargs.get("sr_num_fp16_res", 0) > 0:
        notes.append("EG3D clamps super-resolution activations to +-256 (sr_num_fp16_res > 0); pix2nerf does not")
    if kwargs.get("num_fp16_res", 0) > 0 or kwargs.get("sr_num_fp16_res", 0) > 0:
        notes.append("EG3D computes its highest resolutions in float16 on GPUs; pix2nerf computes in float32")
    neural_resolution = SUPERRESOLUTION[kwargs["rendering_kwargs"]["superresolution_module"]][0]
    if pickled_resolution != neural_resolution:
        notes.append(
            f"EG3D last rendered at {pickled_resolution}^2; the import renders at {neural_resolution}^2, "
            "the super-resolution input (pass another resolution per call)"
        )
    return notes


def eg3d_state_dict(record: PersistentRecord) -> dict[str, Tensor]:
    """The record's weights under pix2nerf's names (EG3D's ``decoder.*`` is pix2nerf's ``head.decoder.*``)."""
    return {("head." + key if key.startswith("decoder.") else key): value for key, value in record.state_dict().items()}


def eg3d_generator(record: PersistentRecord) -> tuple[Generator, list[str]]:
    """A pix2nerf :class:`Generator` with the weights of an EG3D ``TriPlaneGenerator`` record (eval mode)."""
    arguments, notes = generator_arguments(record)
    try:
        check_arguments("Generator", arguments)
    except ValueError as error:
        raise _reject(str(error), "the pickle is not one of EG3D's generators; import an official release") from error
    generator = Generator(**arguments)
    state = eg3d_state_dict(record)
    expected = generator.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise _reject(
            f"its weights do not fit the architecture its arguments describe (missing {missing[:4]}, unexpected "
            f"{unexpected[:4]}, wrong shape {wrong[:4]})",
            "the pickle may come from a modified EG3D; compare its module_src with NVlabs/eg3d",
        )
    generator.load_state_dict({key: value.float() for key, value in state.items()})
    return generator.eval(), notes


def camera_prior(record: PersistentRecord) -> PosePrior:
    """EG3D's average camera (radius and pivot) on the FFHQ pose prior."""
    rendering: Mapping[str, Any] = record.init_kwargs.get("rendering_kwargs") or {}
    radius = float(rendering.get("avg_camera_radius", FACE_PRIOR.radius))
    target = tuple(float(v) for v in rendering.get("avg_camera_pivot", FACE_PRIOR.target))
    return dataclasses.replace(FACE_PRIOR, radius=radius, target=target)


def import_eg3d(pkl_path: str | Path, out_path: str | Path, which: str = "G_ema", half_precision: bool = False) -> Path:
    """Convert network ``which`` of an EG3D pickle into a pix2nerf bundle at ``out_path`` (``.safetensors``).

    The bundle holds the generator (no encoder: inversion starts from ``w_avg``) and the camera prior; its
    info records the source and any ``notes`` on where rendering can differ from EG3D (also warned about).
    """
    content = read_eg3d_pickle(pkl_path)
    if which not in content:
        networks = [key for key, value in content.items() if isinstance(value, PersistentRecord)]
        raise InputError(f"{pkl_path} has no network {which!r}; it has {networks}; pass one of them")
    record = content[which]
    if not isinstance(record, PersistentRecord):
        raise InputError(f"{pkl_path}: {which!r} is a {type(record).__name__}, not an EG3D network")
    generator, notes = eg3d_generator(record)
    for note in notes:
        warnings.warn(f"EG3D import: {note}", stacklevel=2)
    info = {"source": Path(pkl_path).name, "network": which, "eg3d_class": record.class_name, "notes": notes}
    return save_bundle(FaceModel(generator, None, camera_prior(record)), out_path, half_precision, info)
