"""The command-line entry points run as a user runs them."""

import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from pix2nerf.inference import InputError
from pix2nerf.inference.errors import check_command_line, check_output_file, check_output_folder

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


def run_failing_tool(script: str, *arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    """The tool's result, which must be a user error: exit code 2, one line on stderr, no traceback."""
    command = [sys.executable, str(ROOT / "tools" / script), *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()] and "Traceback" not in result.stderr
    return result


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["input=my", "photo.png", "checkpoint=model.safetensors"],
            "'photo.png' is not a key=value setting: a value with spaces must be quoted as a whole, "
            "input=\"my photo.png\" or 'input=my photo.png'",
        ),
        (
            ["+output=my", "new", "model.safetensors"],
            "'new' is not a key=value setting: a value with spaces must be quoted as a whole, "
            "+output=\"my new model.safetensors\" or '+output=my new model.safetensors'",
        ),
        (
            ["photo.png"],
            "'photo.png' is not a key=value setting; quote a value with spaces as a whole: "
            "input=\"my photo.png\" or 'input=my photo.png'",
        ),
        (["input=a["], "cannot parse the setting 'input=a[' (extraneous input '[' expecting <EOF>; See https://"),
    ],
)
def test_unparsable_command_lines_end_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        check_command_line("tool", argv=argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"tool: error: {message}") and error.count("\n") == 1


def test_command_lines_hydra_accepts_pass(tmp_path):
    argv = ["--cfg", "job", "-m", "input=my photo.png", "~refine", "+seed=1", "output_dir=a,b"]
    check_command_line("tool", output_folders=("output_dir",), argv=[*argv, f"output_dir={tmp_path}"])


def test_output_checks_name_the_path_and_the_fix(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("a file, not a folder")
    with pytest.raises(InputError, match=r"output_dir=.*taken is a file, not a folder; pass output_dir=<a folder"):
        check_output_folder(taken, "output_dir")
    with pytest.raises(InputError, match=r"output_dir=.*taken/a/b lies under .*taken, which is a file, not a"):
        check_output_folder(taken / "a" / "b", "output_dir")
    with pytest.raises(InputError, match=r"output_json=.*taken/r.json lies under .*taken, which is a file"):
        check_output_file(taken / "r.json", "output_json")
    with pytest.raises(InputError, match=r"output_json=.* is a folder, not a file; pass output_json=<a file path"):
        check_output_file(tmp_path, "output_json")
    assert check_output_folder(tmp_path / "new" / "deeper", "output_dir") == tmp_path / "new" / "deeper"
    assert check_output_file(tmp_path / "new" / "r.json", "output_json") == tmp_path / "new" / "r.json"
    assert sorted(tmp_path.iterdir()) == [taken]  # checking creates nothing


@pytest.mark.parametrize(
    ("script", "arguments", "message"),
    [
        ("novel_view.py", ["input=my", "photo.png"], "input=\"my photo.png\" or 'input=my photo.png'"),
        ("import_eg3d.py", ["pickle=a.pkl", "output=my", "model.safetensors"], "'output=my model.safetensors'"),
    ],
)
def test_tools_explain_how_to_quote_a_value_with_spaces(tmp_path, script, arguments, message):
    result = run_failing_tool(script, *arguments, cwd=tmp_path)
    assert result.stderr.startswith(f"{script.removesuffix('.py')}: error: ") and message in result.stderr
    assert list(tmp_path.iterdir()) == []  # not even Hydra's run folder


def test_evaluate_checks_output_json_before_loading_the_model(tmp_path):
    (tmp_path / "taken").write_text("a file, not a folder")
    output = tmp_path / "taken" / "evaluation.json"
    arguments = [f"checkpoint={tmp_path / 'missing.safetensors'}", f"output_json={output}"]
    result = run_failing_tool("evaluate.py", *arguments, f"hydra.run.dir={tmp_path / 'hydra'}", cwd=tmp_path)
    assert result.stderr.startswith(f"evaluate: error: output_json={output} lies under {tmp_path / 'taken'}")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["hydra", "taken"]  # Hydra's log only
