"""Pix2NeRF's test step on the synthetic heads' test split: the shared protocol (``pix2nerf.evaluation``, also used by
tools/evaluate.py) logged under test/, equal to scoring the system's exported view directly."""

import math

import lightning as L
from torch.utils.data import DataLoader, Subset

from pix2nerf.data import SyntheticHeads
from pix2nerf.evaluation import NOVEL_OFFSETS_DEG, SourceViews, score_inversions
from pix2nerf.metrics import pose_error_degrees, psnr

from .test_pix2nerf import tiny_pix2nerf

TEST_METRICS = (
    [f"{part}_{name}" for part in ("recon", "novel") for name in ("psnr", "ssim", "lpips")]
    + [f"{part}_depth_{name}" for part in ("recon", "novel") for name in ("mae", "rmse", "scaled_mae", "silog")]
    + [f"novel_{name}_{offset}" for name in ("psnr", "ssim") for offset in NOVEL_OFFSETS_DEG]
    + ["pose_error_deg", "reprojection_error"]
)


def test_test_step_logs_the_shared_protocol(tmp_path):
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
    model = system.face_model()
    scores = score_inversions(model, SourceViews.from_batch(batch), perceptual=system.lpips).per_image
    for name in TEST_METRICS:
        assert abs(results[f"test/{name}"] - scores[name].nanmean().item()) < 1e-5, name
    encoded = model.encode(batch["image"])
    recon = model.render(encoded.w, encoded.yaw_pitch)
    assert abs(results["test/recon_psnr"] - psnr(recon.image, batch["image"]).mean().item()) < 1e-5
    expected_pose_error = pose_error_degrees(encoded.yaw_pitch, batch["yaw_pitch"]).mean().item()
    assert abs(results["test/pose_error_deg"] - expected_pose_error) < 1e-4
    assert all(p.requires_grad for p in system.encoder.parameters())  # the view froze nothing of the system
