"""Pix2NeRF's test step on the synthetic heads' test split: every metric is logged under test/ and matches a
direct computation."""

import math

import lightning as L
import torch
from torch.utils.data import DataLoader, Subset

from pix2nerf.data import SyntheticHeads
from pix2nerf.metrics import pose_error_degrees, psnr

from .test_pix2nerf import tiny_pix2nerf

TEST_METRICS = (
    "recon_psnr",
    "recon_ssim",
    "recon_lpips",
    "pose_error_deg",
    "novel_psnr",
    "novel_ssim",
    "depth_error",
    "depth_rmse",
    "depth_scaled_error",
    "depth_silog",
    "reprojection_error",
)


def test_test_step_logs_every_metric(tmp_path):
    system = tiny_pix2nerf()
    heads = SyntheticHeads("test", resolution=16, num_identities=2)
    frontal = heads.eval_grid.index((0.0, 0.0))
    data = Subset(heads, [frontal, len(heads.eval_grid) + frontal])  # each identity's frontal view
    settings = dict(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer = L.Trainer(default_root_dir=tmp_path, accelerator="cpu", **settings)
    (results,) = trainer.test(system, DataLoader(data, batch_size=2))
    assert set(results) == {f"test/{name}" for name in TEST_METRICS}
    assert all(math.isfinite(value) for value in results.values()), results

    batch = next(iter(DataLoader(data, batch_size=2)))
    with torch.no_grad():
        encoded, recon = system.invert(batch["image"])
    assert results["test/recon_psnr"] == psnr(recon.image, batch["image"]).mean().item()
    expected_pose_error = pose_error_degrees(encoded.yaw_pitch, batch["yaw_pitch"]).mean().item()
    assert abs(results["test/pose_error_deg"] - expected_pose_error) < 1e-4
