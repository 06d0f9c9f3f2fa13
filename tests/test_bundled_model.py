"""The bundled pretrained model loads and keeps its measured quality on held-out synthetic heads.

A regression in loading, inversion or rendering drops novel-view PSNR below the floor (the value measured
when the bundle was made, minus a margin) and fails here.
"""

import math
from pathlib import Path

import torch

from pix2nerf.data import SyntheticHeads
from pix2nerf.inference import load_model
from pix2nerf.metrics import pose_error_degrees, psnr

BUNDLE = Path(__file__).resolve().parents[1] / "checkpoints" / "synthetic_heads_32.safetensors"
NUM_IDENTITIES = 6
NOVEL_YAW = math.radians(30.0)  # a view of the test grid
NOVEL_PSNR_FLOOR = 14.8  # measured 15.85 dB at export (the average face w_avg scores 11.96)
POSE_ERROR_CEILING_DEGREES = 6.0  # measured 3.19 degrees at export


def test_bundled_model_novel_views_on_held_out_heads():
    model = load_model(BUNDLE)
    heads = SyntheticHeads("test", resolution=model.resolution, num_identities=NUM_IDENTITIES)
    grid = heads.eval_grid
    frontal, left, right = grid.index((0.0, 0.0)), grid.index((-NOVEL_YAW, 0.0)), grid.index((NOVEL_YAW, 0.0))

    def views(view: int) -> list[dict[str, torch.Tensor]]:
        return heads.__getitems__([i * len(grid) + view for i in range(NUM_IDENTITIES)])

    def stack(items, key):
        return torch.stack([item[key] for item in items])

    inputs = views(frontal)
    with torch.no_grad():
        encoded = model.encode(stack(inputs, "image"))
        scores = []
        for offset, view in ((-NOVEL_YAW, left), (NOVEL_YAW, right)):
            angles = encoded.yaw_pitch + torch.tensor([offset, 0.0])
            scores.append(psnr(model.render(encoded.w, angles).image, stack(views(view), "image")))
    novel_psnr = torch.cat(scores).mean().item()
    pose_error = pose_error_degrees(encoded.yaw_pitch, stack(inputs, "yaw_pitch")).mean().item()
    print(f"novel-view PSNR {novel_psnr:.2f} dB, pose error {pose_error:.2f} degrees")
    assert novel_psnr > NOVEL_PSNR_FLOOR, novel_psnr
    assert pose_error < POSE_ERROR_CEILING_DEGREES, pose_error
