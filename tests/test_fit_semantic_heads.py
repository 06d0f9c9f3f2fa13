"""tools/fit_semantic_heads.py: a small FENeRF generator fitted to synthetic heads, scored and edited."""

import json

import pytest

from .test_tools import run_tool


@pytest.mark.slow
def test_fitted_semantics_beat_the_background_and_an_edit_reaches_its_view(tmp_path):
    output = tmp_path / "fit.json"
    overrides = [
        "identities=2",
        "resolution=16",
        "steps=120",
        "rays_per_view=64",
        "generator.plane_resolution=32",
        "generator.channel_base=1024",
        "generator.num_coarse=8",
        "generator.num_importance=8",
        "edit.pairs=[[0,1]]",
        "edit.steps=15",
        "threads=1",
        f"output_json={output}",
        f"output_dir={tmp_path / 'pictures'}",
    ]
    run_tool("fit_semantic_heads.py", *overrides, cwd=tmp_path)
    result = json.loads(output.read_text())
    assert result["test_views_miou"] > 3 * result["baseline_background_only_miou"]
    assert result["test_views_class_iou"]["hair"] > 0.5 and result["test_views_pixel_accuracy"] > 0.8
    (edit,) = result["edits"]
    assert edit["appearance_unchanged"] and edit["loss_first_last"][1] < edit["loss_first_last"][0]
    before, after = edit["edited_view_iou_before_after"]
    assert after > before
    assert len(edit["per_view"]) == 15 and edit["other_views"] == 14
    pictures = {path.name for path in (tmp_path / "pictures").iterdir()}
    assert {"edit_rgb.png", "edit_semantics.png", "fitted_heads.pt", "semantics_predicted_then_true.png"} <= pictures
