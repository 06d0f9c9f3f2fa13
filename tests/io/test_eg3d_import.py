"""Importing EG3D pickles: the reference generator renders EG3D's own outputs; unsupported models are refused."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from pix2nerf.cameras import Cameras
from pix2nerf.errors import InputError
from pix2nerf.inference import load_model
from pix2nerf.io import PersistentRecord, generator_arguments, import_eg3d
from pix2nerf.io.eg3d_import import camera_prior
from pix2nerf.networks import Generator
from tests.io.eg3d_fakes import Persistent, call_global, network_snapshot, write_pickle

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-4

TINY_RENDERING = {
    "image_resolution": 128,
    "disparity_space_sampling": False,
    "clamp_mode": "softplus",
    "superresolution_module": "training.superresolution.SuperresolutionHybrid2X",
    "c_gen_conditioning_zero": False,
    "c_scale": 1.0,
    "superresolution_noise_mode": "none",
    "sr_antialias": True,
    "depth_resolution": 4,
    "depth_resolution_importance": 4,
    "ray_start": 2.25,
    "ray_end": 3.3,
    "box_warp": 1,
    "avg_camera_radius": 2.7,
    "avg_camera_pivot": [0, 0, 0.2],
}
TINY_KWARGS = {
    "z_dim": 16,
    "c_dim": 25,
    "w_dim": 16,
    "img_resolution": 128,
    "img_channels": 3,
    "sr_num_fp16_res": 0,
    "mapping_kwargs": {"num_layers": 1},
    "rendering_kwargs": TINY_RENDERING,
    "sr_kwargs": {},
    "channel_base": 256,
    "channel_max": 4,
    "fused_modconv_default": "inference_only",
    "num_fp16_res": 0,
    "conv_clamp": None,
}


def _record(**changes) -> PersistentRecord:
    kwargs = {**TINY_KWARGS, **changes}
    kwargs["rendering_kwargs"] = {**TINY_RENDERING, **changes.get("rendering_kwargs", {})}
    return PersistentRecord("TriPlaneGenerator", (), kwargs, {})


def _tiny_snapshot(path: Path) -> Path:
    """An EG3D-structured pickle of a tiny (random) generator."""
    torch.manual_seed(0)
    state = Generator(**generator_arguments(_record())[0]).state_dict()
    state = {key.removeprefix("head."): value for key, value in state.items()}
    return write_pickle(path, network_snapshot(state, TINY_KWARGS))


def test_reference_generator_imports_and_renders_like_eg3d(tmp_path, eg3d_reference_dir):
    config = json.loads((eg3d_reference_dir / "generator_config.json").read_text())["init_kwargs"]
    state = load_file(str(eg3d_reference_dir / "generator_state_dict.safetensors"))
    ref = load_file(str(eg3d_reference_dir / "reference_outputs.safetensors"))
    pkl = write_pickle(tmp_path / "network-snapshot.pkl", network_snapshot(state, config))

    bundle = import_eg3d(pkl, tmp_path / "eg3d.safetensors")
    model = load_model(bundle)
    generator = model.generator
    assert generator.init_args["plane_order"] == "eg3d" and generator.init_args["importance_mode"] == "eg3d"
    assert (model.prior.radius, model.prior.target) == (2.7, (0.0, 0.0, 0.2))
    with torch.no_grad():
        ws = generator.mapping(ref["z"], ref["c"])
        out = generator.synthesis(ref["ws"], Cameras.from_label(ref["c"]), noise_mode="const")
    torch.testing.assert_close(ws, ref["ws"], atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(out.image_raw, ref["image_raw"], atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(out.image, ref["image"], atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"rendering_kwargs": {"superresolution_module": "training.superresolution.SuperresolutionHybrid16X"}},
            "SuperresolutionHybrid16X is not implemented",
        ),
        (
            {
                "img_resolution": 256,
                "rendering_kwargs": {"superresolution_module": "training.superresolution.SuperresolutionHybrid8XDC"},
            },
            "it outputs 512",
        ),
        ({"rendering_kwargs": {"ray_start": "auto"}}, "'auto'"),
        ({"rendering_kwargs": {"clamp_mode": "relu"}}, "clamp_mode='relu'"),
        ({"mapping_kwargs": {"num_layers": 2, "embed_features": 8}}, "embed_features"),
        ({"architecture": "resnet"}, "architecture"),
    ],
)
def test_unsupported_generators_are_refused(changes, message):
    with pytest.raises(InputError, match=message):
        generator_arguments(_record(**changes))


def test_approximations_are_noted_and_fp16_clamps_reproduced():
    arguments, notes = generator_arguments(_record(sr_num_fp16_res=4))
    assert arguments["sr_conv_clamp"] == 256 and any("float16" in note for note in notes)
    arguments, notes = generator_arguments(_record())
    assert arguments["sr_conv_clamp"] is None and notes == []


def test_import_names_missing_networks(tmp_path):
    pkl = _tiny_snapshot(tmp_path / "snapshot.pkl")
    with pytest.raises(InputError, match=r"no network 'G_emma'.*'G', 'D', 'G_ema'"):
        import_eg3d(pkl, tmp_path / "out.safetensors", which="G_emma")
    with pytest.raises(InputError, match="DualDiscriminator, not a TriPlaneGenerator"):
        import_eg3d(pkl, tmp_path / "out.safetensors", which="D")


def _run_tool(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "import_eg3d.py"), *overrides],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_tool_imports_a_pickle_and_refuses_a_malicious_one(tmp_path):
    pkl = _tiny_snapshot(tmp_path / "snapshot.pkl")
    result = _run_tool(f"pickle={pkl}", "output=tiny.safetensors", "half_precision=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "imported G_ema" in result.stdout and " s\n" in result.stdout
    model = load_model(tmp_path / "tiny.safetensors")
    assert model.encoder is None and model.generator.image_resolution == 128
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshot.pkl", "tiny.safetensors", "tiny.yaml"]

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(call_global("os", "system", f"touch {marker}"))
    result = _run_tool(f"pickle={evil}", "output=evil.safetensors", cwd=tmp_path)
    assert result.returncode == 2
    assert "import_eg3d: error: refused to load global 'os.system'" in result.stderr
    assert "Traceback" not in result.stderr and not marker.exists()


def _cyclic_list() -> list:
    items: list = [0.0, 0.0]
    items.append(items)
    return items


def _rendering(**changes) -> dict:
    return {**TINY_RENDERING, **changes}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rendering_kwargs": [("box_warp", 1)]}, "rendering_kwargs has type list, not a mapping"),
        ({"mapping_kwargs": 3}, "mapping_kwargs has type int, not a mapping"),
        ({"z_dim": "16"}, "z_dim has type str, not an integer"),
        ({"num_fp16_res": [4]}, "num_fp16_res has type list, not an integer"),
        ({"conv_clamp": "256"}, "conv_clamp has type str, not a number or None"),
        ({"rendering_kwargs": _rendering(avg_camera_pivot=_cyclic_list())}, "avg_camera_pivot has type list"),
        ({"rendering_kwargs": _rendering(box_warp=[1])}, "box_warp has type list, not a number"),
        ({"rendering_kwargs": _rendering(ray_start="near")}, "ray_start has type str, not a number or 'auto'"),
        ({"rendering_kwargs": _rendering(superresolution_module=["x"])}, "superresolution_module has type list"),
        ({"rendering_kwargs": _rendering(density_noise="0")}, "density_noise has type str, not a number"),
        ({"rendering_kwargs": _rendering(sr_antialias=np.ones(2))}, "sr_antialias has type ndarray, not True or"),
    ],
)
def test_wrongly_typed_arguments_are_refused(changes, message):
    record = _record()
    record.init_kwargs.update(changes)
    with pytest.raises(InputError, match=f"wrongly typed arguments .*{message}"):
        generator_arguments(record)
    with pytest.raises(InputError, match="wrongly typed arguments"):
        camera_prior(record)


def test_a_negative_camera_radius_is_refused():
    with pytest.raises(InputError, match="average camera is invalid .*radius"):
        camera_prior(_record(rendering_kwargs={"avg_camera_radius": -2.7}))


def _cyclic_generator() -> Persistent:
    generator = Persistent("TriPlaneGenerator", **TINY_KWARGS)
    loop = nn.Sequential()
    loop.add_module("again", loop)
    generator.add_module("renderer", loop)
    return generator


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("cyclic", "network G_ema: module renderer.again contains itself"),
        ("wrongly_typed", "rendering_kwargs has type list, not a mapping"),
        ("output_under_a_file", "output=taken/eg3d.safetensors lies under taken, which is a file"),
    ],
)
def test_tool_ends_malformed_pickles_and_unwritable_outputs_with_one_line(tmp_path, case, message):
    output = "eg3d.safetensors"
    pkl = tmp_path / "snapshot.pkl"
    if case == "cyclic":
        write_pickle(pkl, {"G_ema": _cyclic_generator()})
    elif case == "wrongly_typed":
        write_pickle(pkl, {"G_ema": Persistent("TriPlaneGenerator", **{**TINY_KWARGS, "rendering_kwargs": [1, 2]})})
    else:
        (tmp_path / "taken").write_text("a file, not a folder")
        output = "taken/eg3d.safetensors"  # checked before the (missing) pickle is read
    before = sorted(tmp_path.iterdir())
    result = _run_tool(f"pickle={pkl}", f"output={output}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()] and "Traceback" not in result.stderr
    assert result.stderr.startswith("import_eg3d: error: ") and message in result.stderr
    assert sorted(tmp_path.iterdir()) == before  # no bundle, no .yaml
