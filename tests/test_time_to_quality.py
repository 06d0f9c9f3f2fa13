"""tools/time_to_quality.py: validation points of runs placed at their training hours, plotted to a PNG."""

import subprocess
import sys
from pathlib import Path

from PIL import Image

from pix2nerf.inference import INPUT_ERROR_EXIT_CODE

ROOT = Path(__file__).resolve().parents[1]
HEADER = "epoch,step,train/hours,train/images_seen,train/loss_e,val/novel_psnr\n"


def write_run(folder: Path, rows: list[str]) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text(HEADER + "".join(rows))
    return folder


def run_tool(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "tools" / "time_to_quality.py"), *overrides]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_points_sit_at_the_last_logged_hours_and_the_plot_is_written(tmp_path):
    first = write_run(
        tmp_path / "a",
        ["0,9,0.1,80,1.0,\n", "0,19,0.2,160,0.9,\n", "0,19,,,,15.5\n", "0,29,0.3,240,0.8,\n", "0,39,,,,16.25\n"],
    )
    second = write_run(tmp_path / "b", ["0,9,0.5,40,1.0,\n", "0,9,,,,14.0\n"])
    result = run_tool(f"runs={{old: {first}, new: {second}}}", "output=curve.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line.split() for line in result.stdout.splitlines() if line.startswith(("old", "new"))]
    assert [(line[0], line[1], line[3], line[-1]) for line in lines] == [
        ("old", "0.200", "160", "15.500"),
        ("old", "0.300", "240", "16.250"),  # the last training log before the validation at step 39
        ("new", "0.500", "40", "14.000"),
    ]
    with Image.open(tmp_path / "curve.png") as picture:
        assert picture.size[0] > 300 and picture.size[1] > 200
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a", "b", "curve.png"]  # no stray log file


def test_a_run_without_hours_is_a_clear_error(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "metrics.csv").write_text("epoch,step,val/novel_psnr\n0,9,15.0\n")
    result = run_tool(f"runs={{old: {old}}}", cwd=tmp_path)
    assert result.returncode == INPUT_ERROR_EXIT_CODE
    assert "logs no train/hours" in result.stderr and "Traceback" not in result.stderr


def test_stages_continue_each_other_and_a_points_file_stands_for_them(tmp_path):
    first = write_run(tmp_path / "a", ["0,9,0.5,40,1.0,\n", "0,9,,,,14.0\n", "0,19,0.75,80,0.9,\n"])
    second = write_run(tmp_path / "b", ["0,9,0.25,16,1.0,\n", "0,9,,,,15.0\n"])
    result = run_tool(f"runs={{model: [{first}, {second}]}}", "points=points.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    stage_points = [line.split() for line in result.stdout.splitlines() if line.startswith("model")]
    # the second stage starts at the first one's last logged hours and images, not at its last validation
    assert [(line[1], line[3], line[-1]) for line in stage_points] == [
        ("0.500", "40", "14.000"),
        ("1.000", "96", "15.000"),
    ]

    third = write_run(tmp_path / "c", ["0,9,0.5,8,1.0,\n", "0,9,,,,16.0\n"])
    result = run_tool(f"runs={{model: [{tmp_path / 'points.csv'}, {third}]}}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    grown = [line.split() for line in result.stdout.splitlines() if line.startswith("model")]
    assert [(line[1], line[3], line[-1]) for line in grown] == [
        ("0.500", "40", "14.000"),
        ("1.000", "96", "15.000"),
        ("1.500", "104", "16.000"),
    ]
    result = run_tool(f"runs={{other: [{tmp_path / 'points.csv'}]}}", cwd=tmp_path)
    assert result.returncode == INPUT_ERROR_EXIT_CODE
    assert "holds no points of 'other'" in result.stderr
