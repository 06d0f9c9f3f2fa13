"""The command-line entry points run as a user runs them."""

import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run_tool(script: str, *overrides: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / script), *overrides, f"hydra.run.dir={cwd}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_cli_prints_help():
    result = subprocess.run([sys.executable, "-m", "pix2nerf.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "{fit,validate,test,predict}" in result.stdout


def test_render_test_scene_writes_images(tmp_path):
    stdout = run_tool(
        "render_test_scene.py", "resolution=16", "num_views=3", "num_coarse=16", "num_importance=8", cwd=tmp_path
    )
    assert "rays/s" in stdout
    rgb = iio.imread(tmp_path / "test_scene_rgb.png")
    opacity = iio.imread(tmp_path / "test_scene_opacity.png")
    assert rgb.shape[2] == 3 and rgb.shape[1] > rgb.shape[0]  # three views side by side
    # The head covers the image centre (opaque, skin-coloured) and not the corners (white background).
    centre = rgb[rgb.shape[0] // 2, 2 + 16 // 2]
    assert opacity[opacity.shape[0] // 2, 2 + 16 // 2, 0] == 255
    assert np.all(rgb[3, 3] == 255) and not np.all(centre == 255)


def test_fit_head_learns_held_out_views(tmp_path):
    output = tmp_path / "fit.json"
    overrides = [
        "resolution=16",
        "steps=200",
        "rays_per_step=512",
        "num_coarse=12",
        "num_importance=12",
        "lr_field=0.05",
    ]
    run_tool("fit_head.py", *overrides, "plane_resolution=32", f"output_json={output}", cwd=tmp_path)
    result = json.loads(output.read_text())
    assert result["test_psnr"] > result["background_only_psnr"] + 3.0
    assert result["reprojection_error"] < result["reprojection_error_wrong_depth"]
