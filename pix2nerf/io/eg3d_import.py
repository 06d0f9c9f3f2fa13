"""Import an EG3D ``TriPlaneGenerator`` from a network pickle as a pix2nerf generator and inference bundle.

The pickle is read safely (:mod:`pix2nerf.io.eg3d_pickle`); EG3D's constructor arguments become
:class:`~pix2nerf.networks.Generator` arguments that reproduce EG3D's rendering (its plane projection,
importance sampling and raw image; see ``tests/networks/test_eg3d_exactness.py``), and its weights load under
the same names except the decoder, which pix2nerf keeps inside its radiance head (``head.decoder.``).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

from torch import Tensor

from pix2nerf.cameras import FACE_PRIOR, PosePrior
from pix2nerf.errors import InputError
from pix2nerf.inference import FaceModel, save_bundle
from pix2nerf.io.eg3d_pickle import PersistentRecord, read_eg3d_pickle
from pix2nerf.networks import Generator
from pix2nerf.networks.specs import check_arguments

EG3D_PLANE_RESOLUTION = 256
"""EG3D's backbone always emits 3 planes of 32 channels at 256^2 (``img_resolution=256, img_channels=96``)."""

SUPERRESOLUTION = {
    "training.superresolution.SuperresolutionHybrid2X": (64, 128, (128, 64)),
    "training.superresolution.SuperresolutionHybrid4X": (128, 256, (128, 64)),
    "training.superresolution.SuperresolutionHybrid8X": (128, 512, (128, 64)),
    "training.superresolution.SuperresolutionHybrid8XDC": (128, 512, (256, 128)),
}
"""EG3D's super-resolution modules as pix2nerf's ``SuperResolution``: (input, output) resolution and block channels.

2X and 4X refine at their input size, then upsample once; 8X and 8XDC (the 512^2 FFHQ and AFHQ releases) upsample
in both blocks. The neural rendering size defaults to the input size (64^2 renderings are resized to 128^2 for 8X).
"""
SR_FP16_CONV_CLAMP = 256.0
"""EG3D clamps super-resolution activations to +-256 when the release ran it in fp16 (``sr_num_fp16_res > 0``)."""

Check = tuple[Callable[[Any], bool], str]
"""A test of an argument's type, and what it expects in words."""


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_mapping(value: Any) -> bool:
    return value is None or (isinstance(value, Mapping) and all(isinstance(key, str) for key in value))


INTEGER: Check = (_is_integer, "an integer")
NUMBER: Check = (_is_number, "a number")
OPTIONAL_NUMBER: Check = (lambda value: value is None or _is_number(value), "a number or None")
RAY_BOUND: Check = (
    lambda value: value == "auto" if isinstance(value, str) else _is_number(value),
    "a number or 'auto'",
)
POINT: Check = (
    lambda value: isinstance(value, (list, tuple)) and len(value) == 3 and all(map(_is_number, value)),
    "3 numbers",
)
BOOLEAN: Check = (lambda value: isinstance(value, bool), "True or False")
TEXT: Check = (lambda value: isinstance(value, str), "a string")
MAPPING: Check = (_is_mapping, "a mapping with string names")
ANY: Check = (lambda value: True, "anything")

_GENERATOR_KEYS: dict[str, Check] = {
    "z_dim": INTEGER,
    "c_dim": INTEGER,
    "w_dim": INTEGER,
    "img_resolution": INTEGER,
    "img_channels": INTEGER,
    "sr_num_fp16_res": INTEGER,
    "mapping_kwargs": MAPPING,
    "rendering_kwargs": MAPPING,
    "sr_kwargs": MAPPING,
}
_SYNTHESIS_KEYS: dict[str, Check] = {
    "channel_base": INTEGER,
    "channel_max": INTEGER,
    "num_fp16_res": INTEGER,
    "conv_clamp": OPTIONAL_NUMBER,
    "fused_modconv_default": ANY,
}
_RENDERING_TYPES: dict[str, Check] = {
    "superresolution_module": TEXT,
    "box_warp": NUMBER,
    "ray_start": RAY_BOUND,
    "ray_end": RAY_BOUND,
    "depth_resolution": INTEGER,
    "depth_resolution_importance": INTEGER,
    "decoder_lr_mul": NUMBER,
    "sr_antialias": BOOLEAN,
    "superresolution_noise_mode": TEXT,
    "c_gen_conditioning_zero": BOOLEAN,
    "c_scale": NUMBER,
    "white_back": BOOLEAN,
    "clamp_mode": TEXT,
    "disparity_space_sampling": BOOLEAN,
    "density_noise": NUMBER,
    "avg_camera_radius": NUMBER,
    "avg_camera_pivot": POINT,
}
"""The rendering options the import reads, by type (EG3D's others, such as its regularisers, are ignored)."""
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
    kwargs = _constructor_arguments(record)
    rendering = dict(kwargs.get("rendering_kwargs") or {})
    _check_supported(kwargs, rendering)
    sr_input, image_resolution, sr_channels = SUPERRESOLUTION[rendering["superresolution_module"]]
    neural_resolution = neural_rendering_resolution(record, sr_input)
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
        sr_input_resolution=sr_input,
        image_resolution=image_resolution,
        sr_channels=list(sr_channels),
        sr_conv_clamp=SR_FP16_CONV_CLAMP if kwargs.get("sr_num_fp16_res", 0) > 0 else None,
        sr_antialias=bool(rendering.get("sr_antialias", True)),
        sr_noise_mode=rendering.get("superresolution_noise_mode", "none"),
        ray_start=float(rendering["ray_start"]),
        ray_end=float(rendering["ray_end"]),
        num_coarse=int(rendering["depth_resolution"]),
        num_importance=int(rendering["depth_resolution_importance"]),
        importance_mode="eg3d",
        conditioning_scale=0.0 if rendering.get("c_gen_conditioning_zero") else float(rendering.get("c_scale", 0.0)),
        eg3d_raw_image=True,
        white_background=bool(rendering.get("white_back", False)),
    )
    return arguments, _differences(kwargs)


def _constructor_arguments(record: PersistentRecord) -> dict[str, Any]:
    """The record's constructor arguments by name; :class:`InputError` if one the import reads is wrongly typed
    (so a crafted or damaged pickle cannot fail later with a ``TypeError`` or recurse through its own values)."""
    kwargs = dict(zip(("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"), record.init_args, strict=False))
    kwargs.update(record.init_kwargs)
    wrong = _wrongly_typed("", kwargs, {**_GENERATOR_KEYS, **_SYNTHESIS_KEYS})
    if not wrong:
        wrong = _wrongly_typed("rendering_kwargs.", kwargs.get("rendering_kwargs") or {}, _RENDERING_TYPES)
        wrong += _wrongly_typed("mapping_kwargs.", kwargs.get("mapping_kwargs") or {}, {"num_layers": INTEGER})
        wrong += _wrongly_typed("", record.state, {"neural_rendering_resolution": INTEGER})
    if wrong:
        raise _reject(f"wrongly typed arguments ({'; '.join(wrong)})", "the pickle is damaged or not from EG3D")
    return kwargs


def _wrongly_typed(prefix: str, values: Mapping[str, Any], checks: Mapping[str, Check]) -> list[str]:
    """What is wrong with each of ``values`` that ``checks`` names (absent ones are not checked)."""
    return [
        f"{prefix}{key} has type {type(values[key]).__name__}, not {expected}"
        for key, (check, expected) in checks.items()
        if key in values and not check(values[key])
    ]


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
            "use one of EG3D's released checkpoints (2X, 4X, 8X or 8XDC super-resolution), or add that module",
        )
    if kwargs["img_resolution"] != SUPERRESOLUTION[module][1]:
        raise _reject(
            f"img_resolution={kwargs['img_resolution']} with {module}", f"it outputs {SUPERRESOLUTION[module][1]}^2"
        )
    if "auto" in (rendering["ray_start"], rendering["ray_end"]):
        raise _reject("ray_start/ray_end 'auto' (box-intersected rays)", "pix2nerf samples rays between fixed bounds")
    for key, expected in (("clamp_mode", "softplus"), ("disparity_space_sampling", False)):
        if rendering.get(key, expected) != expected:
            raise _reject(f"rendering_kwargs {key}={rendering[key]!r}", f"pix2nerf renders as {key}={expected!r}")
    if rendering.get("density_noise", 0) > 0:
        raise _reject("rendering_kwargs density_noise > 0", "pix2nerf adds no noise to densities")
    noise_mode = rendering.get("superresolution_noise_mode", "none")
    if noise_mode not in ("random", "const", "none"):
        raise _reject(f"superresolution_noise_mode={noise_mode!r}", "use 'random', 'const' or 'none'")


def neural_rendering_resolution(record: PersistentRecord, sr_input: int) -> int:
    """The neural rendering size the release was trained and rendered at (its ``neural_rendering_resolution``, e.g.
    64 for ``ffhq512-64.pkl``, 128 for ``ffhq512-128.pkl``), or the super-resolution input where it records none or
    an unusable one."""
    pickled = record.state.get("neural_rendering_resolution", sr_input)
    usable = type(pickled) is int and 0 < pickled <= sr_input and pickled & (pickled - 1) == 0
    return pickled if usable else sr_input


def _differences(kwargs: Mapping[str, Any]) -> list[str]:
    """Notes on where the imported generator may render differently from EG3D (all are small or per-call)."""
    notes = []
    if kwargs.get("conv_clamp") is not None:
        notes.append(f"EG3D clamps synthesis activations to +-{kwargs['conv_clamp']}; pix2nerf does not clamp them")
    if kwargs.get("num_fp16_res", 0) > 0 or kwargs.get("sr_num_fp16_res", 0) > 0:
        notes.append("EG3D computes its highest resolutions in float16 on GPUs; pix2nerf computes in float32")
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
    rendering: Mapping[str, Any] = _constructor_arguments(record).get("rendering_kwargs") or {}
    radius = float(rendering.get("avg_camera_radius", FACE_PRIOR.radius))
    # Any length: PosePrior refuses a target that is not a 3D point.
    target = cast(
        tuple[float, float, float], tuple(float(v) for v in rendering.get("avg_camera_pivot", FACE_PRIOR.target))
    )
    try:
        return dataclasses.replace(FACE_PRIOR, radius=radius, target=target)
    except ValueError as error:
        raise _reject(f"its average camera is invalid ({error})", "the pickle is damaged or not from EG3D") from error


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
