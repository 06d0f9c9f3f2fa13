"""End to end: a checkpoint trained in the test -> export -> tools/novel_view.py on a synthetic head."""

import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from pix2nerf.data import SyntheticHeads
from pix2nerf.data.images import write_image
from pix2nerf.inference import InputError, load_model
from pix2nerf.inference.mesh import density_grid
from pix2nerf.inference.pipeline import NovelViewOptions, novel_views
from tests.factories import tiny_face_model

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "configs" / "train"
TOOL = ROOT / "tools" / "novel_view.py"
NUM_FRAMES = 6


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"WANDB_MODE": "disabled", "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A tiny Pix2NeRF run (Lightning CLI), its exported bundle and a held-out synthetic head image."""
    root = tmp_path_factory.mktemp("run")
    configs = ["pix2nerf_synthetic_heads_64.yaml", "tiny.yaml", "pix2nerf_tiny.yaml"]
    options = [item for name in configs for item in ("-c", str(TRAIN / name))]
    fit = run("-m", "pix2nerf.cli", "fit", *options, "--trainer.max_steps=3", cwd=root)
    assert fit.returncode == 0, fit.stderr[-3000:]
    checkpoint = root / "runs" / "tiny" / "version_0" / "checkpoints" / "last.ckpt"
    bundle = root / "model.safetensors"
    export = run("-m", "pix2nerf.cli", "export", str(checkpoint), str(bundle), cwd=root)
    assert export.returncode == 0, export.stderr[-3000:]
    image = root / "head.png"
    write_image(image, SyntheticHeads("test", resolution=48, num_identities=1)[0]["image"])
    return {"root": root, "checkpoint": checkpoint, "bundle": bundle, "image": image}


def mesh_level(bundle: Path) -> float:
    """A density level the tiny model's field crosses (an untrained field has no EG3D-like surface)."""
    model = load_model(bundle)
    w = model.w_avg[None, None].expand(1, model.generator.num_ws, -1)
    grid, _ = density_grid(model.generator, model.generator.field_params(w, noise_mode="const"), 16)
    return float(grid.min() + grid.max()) / 2


def test_novel_view_tool_writes_every_output(trained, tmp_path):
    out = tmp_path / "out"
    args = [
        str(TOOL),
        f"input={trained['image']}",
        f"checkpoint={trained['bundle']}",
        f"output_dir={out}",
        f"num_frames={NUM_FRAMES}",
        "refine.steps=3",
        "mesh_resolution=24",
        f"mesh_level={mesh_level(trained['bundle'])}",
        "progress=false",
    ]
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = out / "head"
    assert iio.imread(folder / "orbit.mp4").shape[0] == NUM_FRAMES
    assert iio.imread(folder / "orbit.gif").shape[0] == NUM_FRAMES
    assert iio.imread(folder / "depth.mp4").shape[0] == NUM_FRAMES
    assert len(list((folder / "depth").glob("*.png"))) == NUM_FRAMES
    assert np.load(folder / "depth.npy").shape[0] == NUM_FRAMES
    grid = iio.imread(folder / "grid.png")
    assert grid.ndim == 3 and grid.shape[1] > grid.shape[0]  # 5 yaws wide, 3 pitches high
    report = json.loads((folder / "report.json").read_text())
    assert report["frames"] == NUM_FRAMES and np.isfinite(report["psnr_reconstruction"])
    assert report["mesh"]["vertices"] > 0 and report["mesh"]["faces"] > 0
    header = (folder / "mesh.ply").read_bytes()[:400].decode("ascii", errors="replace")
    assert f"element vertex {report['mesh']['vertices']}" in header
    obj = (folder / "mesh.obj").read_text().splitlines()
    assert sum(line.startswith("f ") for line in obj) == report["mesh"]["faces"]
    latent = torch.load(folder / "latent.pt", weights_only=True)
    assert latent["w"].ndim == 3 and latent["yaw_pitch"].shape == (1, 2)
    camera = json.loads((folder / "camera.json").read_text())
    assert len(camera["label"]) == 25


def test_lightning_checkpoint_works_directly(trained, tmp_path):
    model_ckpt, model_bundle = load_model(trained["checkpoint"]), load_model(trained["bundle"])
    image = torch.zeros(1, 3, model_ckpt.image_resolution, model_ckpt.image_resolution)
    a, b = model_ckpt.encode(image), model_bundle.encode(image)
    assert torch.allclose(a.w, b.w, atol=1e-2)  # the bundle holds fp16 weights


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_image", "does not exist"),
        ("corrupt_image", "cannot decode image"),
        ("tiny_image", "at least 32x32"),
        ("missing_checkpoint", "does not exist"),
        ("foreign_checkpoint", "no generator_ema"),
    ],
)
def test_bad_input_exits_with_a_clear_message(trained, tmp_path, case, message):
    image, checkpoint = trained["image"], trained["bundle"]
    if case == "missing_image":
        image = tmp_path / "nope.png"
    elif case == "corrupt_image":
        image = tmp_path / "corrupt.png"
        image.write_bytes(trained["image"].read_bytes()[:40])
    elif case == "tiny_image":
        image = tmp_path / "tiny.png"
        iio.imwrite(image, np.zeros((20, 20, 3), np.uint8))
    elif case == "missing_checkpoint":
        checkpoint = tmp_path / "nope.ckpt"
    elif case == "foreign_checkpoint":
        checkpoint = tmp_path / "foreign.ckpt"
        torch.save({"state_dict": {"layer.weight": torch.zeros(1)}}, checkpoint)
    args = [str(TOOL), f"input={image}", f"checkpoint={checkpoint}", f"output_dir={tmp_path / 'out'}"]
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_folder_run_survives_a_bad_image_and_a_field_that_misses_the_mesh_level(trained, tmp_path):
    """The default EG3D level (10) is never crossed by the tiny field: the mesh is cut at the middle of its range
    and the report says so; a corrupt image in the folder is reported while the good one completes."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "good.png").write_bytes(trained["image"].read_bytes())
    (photos / "broken.png").write_bytes(trained["image"].read_bytes()[:40])
    out = tmp_path / "out"
    args = [str(TOOL), f"input={photos}", f"checkpoint={trained['bundle']}", f"output_dir={out}"]
    args += ["num_frames=2", "refine.steps=0", "mesh_resolution=16", "gif=false", "progress=false"]
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "1 of 2 images failed" in result.stderr and "broken.png" in result.stderr
    report = json.loads((out / "good" / "report.json").read_text())
    assert report["mesh"]["faces"] > 0 and report["mesh"]["level"] != 10.0
    assert "never crosses mesh_level 10.0" in report["mesh"]["warning"]
    reports = json.loads((out / "reports.json").read_text())
    assert [("error" in entry) for entry in reports] == [True, False]  # broken.png sorts first


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: a read-only one, or sysfs for root (who ignores permissions)."""
    if os.geteuid() == 0:
        if not Path("/sys").is_dir():
            pytest.skip("root ignores folder permissions and there is no /sys to stand in")
        return Path("/sys")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    return locked


@pytest.mark.parametrize("case", ["under_a_file", "not_writable", "default_under_a_file"])
def test_an_unusable_output_folder_ends_the_tool_before_the_model_loads(tmp_path, case):
    """Checked before Hydra makes its run folder inside output_dir, or (for the default output_dir, when Hydra's
    run folder is elsewhere) before the model loads: the missing checkpoint is never reached."""
    (tmp_path / "taken").write_text("a file, not a folder")
    image = tmp_path / "head.png"
    image.write_bytes(b"")  # never decoded
    args = [str(TOOL), f"input={image}", f"checkpoint={tmp_path / 'missing.safetensors'}"]
    fix = "; pass output_dir=<a folder you can write to>"
    if case == "under_a_file":
        output = tmp_path / "taken" / "out"
        message = f"output_dir={output} lies under {tmp_path / 'taken'}, which is a file, not a folder{fix}"
        args.append(f"output_dir={output}")
    elif case == "not_writable":
        folder = unwritable_folder(tmp_path)
        output = folder / "pix2nerf_out"
        message = f"output_dir={output} cannot be written: {folder} is not writable ("
        args.append(f"output_dir={output}")
    else:
        (tmp_path / "outputs").write_text("a file where the default output_dir would go")
        message = f"output_dir=outputs/novel_view lies under outputs, which is a file, not a folder{fix}"
        args.append(f"hydra.run.dir={tmp_path / 'hydra'}")
    before = sorted(tmp_path.rglob("*"))
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"novel_view: error: {message}")
    created = set(tmp_path.rglob("*")) - set(before)
    assert all(tmp_path / "hydra" in (path, *path.parents) for path in created)  # only Hydra's own run log


def test_novel_views_refuses_an_output_folder_under_a_file(tmp_path):
    (tmp_path / "photos").write_text("a file, not a folder")
    with pytest.raises(InputError, match="lies under .*photos, which is a file"):
        novel_views(tiny_face_model(), tmp_path / "missing.png", tmp_path / "photos" / "head", NovelViewOptions())


def load_tool(path: Path):
    """Import a tool script as a module (which registers its config schema)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"tool_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_defaults_come_from_the_option_dataclasses():
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    from pix2nerf.inference.invert import RefineOptions

    tool = load_tool(TOOL)
    with initialize_config_dir(config_dir=str(ROOT / "configs" / "infer"), version_base=None):
        cfg = compose("novel_view", overrides=["input=a.png", "checkpoint=b", "refine.steps=200", "yaws=[0.1,0.2]"])
        with pytest.raises(ConfigCompositionException):
            compose("novel_view", overrides=["input=a.png", "checkpoint=b", "refine.unknown=1"])
    assert cfg.input == "a.png" and cfg.output_dir == "outputs/novel_view"
    assert tool.options_from_config(cfg) == NovelViewOptions(yaws=(0.1, 0.2), refine=RefineOptions(steps=200))
