"""tools/evaluate.py as a user runs it: a tiny bundle on two test identities, and a missing checkpoint."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from pix2nerf.data import NUM_SEMANTIC_CLASSES
from pix2nerf.inference import INPUT_ERROR_EXIT_CODE, FaceModel, save_bundle
from pix2nerf.networks import Encoder

from .factories import tiny_generator

ROOT = Path(__file__).resolve().parents[1]
METRICS = [
    f"{part}_{name}"
    for part in ("recon", "novel")
    for name in ("psnr", "ssim", "lpips", "depth_mae", "depth_rmse", "depth_scaled_mae", "depth_silog")
] + ["pose_error_deg", "reprojection_error", "encoder_ms"]
METRICS += [f"novel_{name}_{offset}" for name in ("psnr", "ssim") for offset in (15, 30, 45)]
PASS_METRICS = [name for name in METRICS if name != "encoder_ms"]
"""Scored again by the refined and off-frontal passes, under their prefixes."""


def evaluate(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    # An empty TORCH_HOME: no Inception weights, whatever this machine has cached.
    env = {**os.environ, "TORCH_HOME": str(cwd / "torch_home"), "WANDB_MODE": "disabled"}
    command = [sys.executable, str(ROOT / "tools" / "evaluate.py"), *overrides, f"hydra.run.dir={cwd}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def tiny_semantic_face_model() -> FaceModel:
    """``factories.tiny_face_model`` with semantic logits (FENeRF-style), so mIoU is scored too."""
    generator = tiny_generator(image_resolution=16, sr_channels=(8, 8), num_semantic_classes=NUM_SEMANTIC_CLASSES)
    encoder = Encoder(img_resolution=16, num_ws=generator.num_ws, w_dim=8, channel_base=64, channel_max=8)
    return FaceModel(generator, encoder).eval().requires_grad_(False)


def test_evaluate_writes_every_metric(tmp_path):
    bundle = save_bundle(tiny_semantic_face_model(), tmp_path / "tiny.safetensors")
    output = tmp_path / "evaluation.json"
    result = evaluate(
        f"checkpoint={bundle}",
        "num_identities=2",
        "lpips.offline_random_backbone=true",
        "fid.skip_if_missing=true",
        "refine.steps=3",
        f"output_json={output}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    for prefix in ("", "refined/", "off_frontal/"):
        names = METRICS if not prefix else [prefix + name for name in PASS_METRICS]
        assert set(names) <= set(report["metrics"]), sorted(report["metrics"])
        assert all(math.isfinite(report["metrics"][name]) for name in names), report["metrics"]
    metrics = report["metrics"]
    assert metrics["refined/recon_psnr"] != metrics["recon_psnr"]  # refinement ran
    assert metrics["off_frontal/recon_psnr"] != metrics["recon_psnr"]  # another input view
    assert report["protocol"]["passes"]["off_frontal/"]["input_yaw_deg"] == 30
    assert all(math.isfinite(report["metrics"][name]) for name in METRICS), report["metrics"]
    assert 0 <= report["metrics"]["recon_semantic_miou"] <= 1
    assert report["metrics"]["novel_psnr"] == report["metrics"]["novel_psnr_30"]  # the headline offset
    assert report["metrics"]["novel_psnr_15"] != report["metrics"]["novel_psnr_45"]
    assert report["protocol"]["novel_view_yaw_offsets_deg"] == [-15, 15, -30, 30, -45, 45]
    assert report["protocol"]["num_identities"] == 2 and report["protocol"]["resolution"] == 16
    assert report["skipped"] == ["fid"] and "weights-inception-2015-12-05" in result.stdout + result.stderr
    assert "novel_psnr" in result.stdout


def test_missing_checkpoint_is_a_user_error(tmp_path):
    result = evaluate(f"checkpoint={tmp_path / 'missing.ckpt'}", cwd=tmp_path)
    assert result.returncode == INPUT_ERROR_EXIT_CODE
    assert "missing.ckpt does not exist" in result.stderr and "Traceback" not in result.stderr


def test_refine_defaults_come_from_refine_options():
    from hydra import compose, initialize_config_dir

    from pix2nerf.inference.invert import RefineOptions
    from tests.inference.test_novel_view import load_tool

    tool = load_tool(ROOT / "tools" / "evaluate.py")
    with initialize_config_dir(config_dir=str(ROOT / "configs" / "eval"), version_base=None):
        cfg = compose("evaluate", overrides=["refine.steps=100", "refine.lpips_weight=0.5"])
    assert list(cfg) == list(tool.CONFIG_KEYS)
    passes = tool.input_passes(cfg)
    assert passes["refined/"] == (0.0, RefineOptions(steps=100, lpips_weight=0.5))
