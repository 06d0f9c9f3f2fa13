"""Loading trained models for inference, and exporting them as small, safe bundles.

A bundle is one ``.safetensors`` file: the generator's EMA weights, the encoder's and the plane residual's
(the hybrid encoder's stage 2, when the model has one), optionally in fp16,
plus, in its metadata, the network specs (class + constructor arguments), the camera prior, a digest of
the weights and free-form provenance. Nothing in it is executable; loading it cannot run code.
Lightning ``.ckpt`` files load too (with ``weights_only=True``), so a run can be used before it is exported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from pix2nerf.cameras import FACE_PRIOR, PosePrior
from pix2nerf.checkpoint_keys import CAMERA_PRIOR, INFERENCE_PREFIXES, NETWORK_SPECS
from pix2nerf.errors import InputError
from pix2nerf.inference.model import FaceModel
from pix2nerf.networks import Encoder, Generator, PlaneResidual
from pix2nerf.networks.specs import build_network, network_spec
from pix2nerf.precision import resolve_precision

BUNDLE_FORMAT = "pix2nerf-bundle"
BUNDLE_VERSION = 2
"""2: the digest covers the metadata too (1: the weights only; still read)."""
DIGEST_KEY = "sha256"
LEGACY_DIGEST_KEY = "weights_sha256"
NETWORK_NAMES = ("generator", "encoder", "residual")
NEW_FILE_PERMISSIONS = 0o666
"""What ``open`` asks for a new file; the umask then removes some (0o644 with the usual 022)."""


def weights_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of the tensors, in name order (detects tampering)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def bundle_digest(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str:
    """SHA-256 over the weights (:func:`weights_digest`) and every metadata entry but the digest itself, so an
    edited spec, camera prior or version is detected like edited weights."""
    described = {key: value for key, value in metadata.items() if key not in (DIGEST_KEY, LEGACY_DIGEST_KEY)}
    payload = json.dumps({"weights": weights_digest(tensors), "metadata": described}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def save_bundle(
    model: FaceModel,
    path: str | Path,
    half_precision: bool = True,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` as a bundle at ``path`` (``.safetensors``) and its config beside it (``.yaml``, for people).

    ``half_precision`` stores floating-point weights as fp16 (they load back as fp32); ``info`` is JSON
    provenance (data, steps, metrics) kept in the metadata.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise InputError(f"a bundle is a .safetensors file; got {path}")
    specs, tensors = {}, {}
    for name in NETWORK_NAMES:
        network = getattr(model, name)
        if network is None:
            continue
        specs[name] = network_spec(network)
        for key, value in network.state_dict().items():
            value = value.detach().cpu()
            if half_precision and value.is_floating_point():
                value = value.half()
            tensors[f"{name}.{key}"] = value.contiguous()
    metadata = {
        "format": BUNDLE_FORMAT,
        "version": str(BUNDLE_VERSION),
        "networks": json.dumps(specs),
        "camera_prior": json.dumps(dataclasses.asdict(model.prior)),
        "info": json.dumps(dict(info or {})),
    }
    metadata[DIGEST_KEY] = bundle_digest(tensors, metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    path.chmod(_new_file_mode())  # safetensors writes through a private (0600) temporary file
    readable = {"networks": specs, "camera_prior": dataclasses.asdict(model.prior), "info": dict(info or {})}
    path.with_suffix(".yaml").write_text(yaml.safe_dump(readable, sort_keys=False))
    return path


def _new_file_mode() -> int:
    """The permissions ``open`` gives a new file: read-write for everyone, less the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return NEW_FILE_PERMISSIONS & ~umask


def load_model(path: str | Path, device: str | torch.device = "cpu", precision: str = "fp32") -> FaceModel:
    """A :class:`FaceModel` from a bundle (``.safetensors``) or a Lightning checkpoint (``.ckpt``).

    ``precision``: ``"fp32"``, ``"bf16"`` or ``"auto"`` (bf16 where the hardware runs it faster, see
    :func:`~pix2nerf.precision.resolve_precision`). Weights stay float32; bf16 is autocast at run time.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist; pass a .safetensors bundle or a Lightning .ckpt")
    if path.suffix == ".safetensors":
        specs, prior, state = _read_bundle(path)
    elif path.suffix == ".ckpt":
        specs, prior, state = _read_lightning_checkpoint(path)
    else:
        raise InputError(f"{path} is neither a bundle (.safetensors) nor a Lightning checkpoint (.ckpt)")
    model = _assemble(path, specs, prior, state).to(device).eval().requires_grad_(False)
    model.precision = resolve_precision(precision, device)
    return model


def _read_bundle(path: Path) -> tuple[dict, PosePrior, dict[str, torch.Tensor]]:
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
            state = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118 (safe_open has no iterator)
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError(f"{path} is not a readable safetensors file ({error}); re-export or re-download it") from error
    if metadata.get("format") != BUNDLE_FORMAT:
        raise InputError(
            f"{path} is a safetensors file but not a pix2nerf bundle (no '{BUNDLE_FORMAT}' metadata); "
            "export one with `pix2nerf export RUN.ckpt OUT.safetensors`"
        )
    version = metadata.get("version", "")
    if version not in [str(number) for number in range(1, BUNDLE_VERSION + 1)]:
        raise InputError(f"{path} is bundle version {version!r:.20}; this pix2nerf reads 1 to {BUNDLE_VERSION}")
    if version == "1":
        intact = weights_digest(state) == metadata.get(LEGACY_DIGEST_KEY)
    else:
        intact = bundle_digest(state, metadata) == metadata.get(DIGEST_KEY)
    if not intact:
        raise InputError(
            f"{path}: its weights or metadata do not match the digest recorded at export; the file was "
            "modified (re-export or re-download it)"
        )
    try:
        specs = json.loads(metadata["networks"])
        prior = PosePrior(**json.loads(metadata["camera_prior"]))
        if not isinstance(specs, dict):
            raise TypeError(f"networks is {type(specs).__name__}, not a mapping")
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"{path} has unreadable bundle metadata ({error}); re-export it") from error
    return specs, prior, {key: value.float() if value.is_floating_point() else value for key, value in state.items()}


def _read_lightning_checkpoint(path: Path) -> tuple[dict, PosePrior, dict[str, torch.Tensor]]:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise InputError(
            f"{path} contains objects other than tensors and plain containers, so it was not loaded "
            f"(safe loading refused: {str(error).splitlines()[0]}); only load checkpoints you trust and made"
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile) as error:
        raise InputError(f"{path} is not a readable PyTorch checkpoint ({error}); it may be truncated") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise InputError(f"{path} is not a Lightning checkpoint (no state_dict); pass a pix2nerf run's .ckpt")
    weights = checkpoint["state_dict"]
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise InputError(f"{path}: its state_dict is not a mapping of names to tensors; the checkpoint is damaged")
    state = {}
    for name, prefix in INFERENCE_PREFIXES.items():
        state.update({f"{name}.{k[len(prefix) :]}": v for k, v in weights.items() if k.startswith(prefix)})
    if not any(key.startswith("generator.") for key in state):
        raise InputError(f"{path} holds no generator_ema weights: not a pix2nerf GAN/Pix2NeRF checkpoint")
    specs = checkpoint.get(NETWORK_SPECS) or _specs_from_run_config(path)
    hyper_parameters = checkpoint.get("hyper_parameters")
    prior_fields = checkpoint.get(CAMERA_PRIOR) or (
        hyper_parameters.get("novel_prior") if isinstance(hyper_parameters, dict) else None
    )
    try:
        if not isinstance(specs, dict):
            raise TypeError(f"network_specs is {type(specs).__name__}, not a mapping")
        if prior_fields is not None and not isinstance(prior_fields, dict):
            raise TypeError(f"camera_prior is {type(prior_fields).__name__}, not a mapping")
        prior = PosePrior(**prior_fields) if prior_fields else FACE_PRIOR
    except (TypeError, ValueError) as error:
        raise InputError(f"{path} has unreadable model metadata ({error}); the checkpoint is damaged") from error
    return specs, prior, state


def _specs_from_run_config(path: Path) -> dict:
    """Specs of checkpoints written before they carried them: the run's saved CLI config (``config.yaml``)."""
    config_path = path.parent.parent / "config.yaml"
    if not config_path.is_file():
        raise InputError(f"{path} carries no network specs and {config_path} (its run's config) is missing")
    try:
        model = yaml.safe_load(config_path.read_text())["model"]["init_args"]
        specs = {}
        for name in NETWORK_NAMES:
            if name in model:
                entry = model[name]
                arguments = entry.get("init_args", {})
                specs[name] = {"class": entry["class_path"].rsplit(".", 1)[-1], "init_args": arguments}
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as error:
        raise InputError(
            f"{path} carries no network specs and its run's {config_path} is unreadable ({type(error).__name__}: "
            f"{error}); restore the config.yaml the run wrote"
        ) from error
    return specs


def _assemble(path: Path, specs: dict, prior: PosePrior, state: dict[str, torch.Tensor]) -> FaceModel:
    if "generator" not in specs:
        raise InputError(f"{path} describes no generator; it is not a pix2nerf model")
    try:
        networks = {name: build_network(spec) for name, spec in specs.items() if name in NETWORK_NAMES}
    except ValueError as error:
        raise InputError(f"{path}: {error}") from error
    broken = [key for key, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if broken:
        raise InputError(
            f"{path}: weights {broken[:3]} hold NaN or infinite values; the model is broken (retrain it "
            "from its last good checkpoint)"
        )
    for name, network in networks.items():
        prefix = f"{name}."
        own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        try:
            network.load_state_dict(own)
        except RuntimeError as error:
            summary = str(error).splitlines()[0]
            raise InputError(f"{path}: the {name} weights do not fit its recorded architecture ({summary})") from error
    generator, encoder, residual = networks["generator"], networks.get("encoder"), networks.get("residual")
    if not (
        isinstance(generator, Generator)
        and isinstance(encoder, Encoder | None)
        and isinstance(residual, PlaneResidual | None)
    ):
        kinds = ", ".join(f"{name}: {type(network).__name__}" for name, network in networks.items())
        raise InputError(f"{path}: its specs build networks of the wrong classes ({kinds}); the file is damaged")
    try:
        return FaceModel(generator, encoder, prior, residual=residual)
    except ValueError as error:
        raise InputError(f"{path}: {error}") from error


def export_bundle(
    checkpoint: str | Path, output: str | Path, half_precision: bool = True, info: Mapping[str, Any] | None = None
) -> Path:
    """Export a Lightning checkpoint (or re-export a bundle) as a bundle; returns the bundle's path."""
    model = load_model(checkpoint)
    return save_bundle(model, output, half_precision, {"source": Path(checkpoint).name, **dict(info or {})})
