"""Fit a tri-plane or hash-grid radiance head to views of one synthetic head and score held-out views.

The capacity check of the radiance heads: free tri-planes (or the hash grid) plus the decoder are
optimised directly on a multi-view set, then held-out views are rendered and compared (PSNR), and the
fitted depth is checked for multi-view consistency.

    python tools/fit_head.py field=triplane
    python tools/fit_head.py field=hashgrid output_json=fit.json
"""

from __future__ import annotations

import json
import math
import time

import hydra
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from pix2nerf.cameras import Cameras, look_at, rays, z_depth
from pix2nerf.data.heads import render_heads, sample_heads
from pix2nerf.fields import HashGridHead, TriPlaneHead, density_activation
from pix2nerf.inference.errors import check_command_line
from pix2nerf.metrics import psnr, reprojection_error
from pix2nerf.rendering import RayBundle, VolumeRenderer

RAY_START, RAY_END = 2.25, 3.3


class FittedField(nn.Module):
    """A radiance head with its own free parameters: tri-planes, or a constant latent for the hash grid."""

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__()
        if cfg.field == "triplane":
            self.head = TriPlaneHead(plane_channels=cfg.plane_channels, feature_dim=3)
            size = (1, 3, cfg.plane_channels, cfg.plane_resolution, cfg.plane_resolution)
            self.params = nn.Parameter(torch.randn(size) * 0.1)
        elif cfg.field == "hashgrid":
            self.head = HashGridHead(
                w_dim=8,
                feature_dim=3,
                levels=cfg.hash_levels,
                table_size_log2=cfg.hash_table_size_log2,
                base_resolution=cfg.hash_base_resolution,
                max_resolution=cfg.hash_max_resolution,
            )
            self.register_buffer("params", torch.zeros(1, self.head.num_ws, 8))
        else:
            raise ValueError(f"field must be 'triplane' or 'hashgrid', got {cfg.field!r}")

    def field_parameters(self) -> list[nn.Parameter]:
        if isinstance(self.head, TriPlaneHead):
            return [self.params]
        return [self.head.encoding.embeddings]

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor]:
        out = self.head(points, self.params.expand(points.shape[0], *self.params.shape[1:]))
        return out.sigma, out.features


def views(cfg: DictConfig) -> tuple[Cameras, Cameras]:
    yaw_count, pitch_count = cfg.train_views
    yaw = torch.linspace(-cfg.train_yaw, cfg.train_yaw, yaw_count)
    pitch = torch.linspace(-cfg.train_pitch, cfg.train_pitch, pitch_count)
    grid_yaw, grid_pitch = torch.meshgrid(yaw, pitch, indexing="ij")
    train = look_at(grid_yaw.flatten(), grid_pitch.flatten())
    spacing = 2 * cfg.train_yaw / (yaw_count - 1)
    test_yaw = torch.linspace(-cfg.train_yaw, cfg.train_yaw - spacing, cfg.test_views) + spacing / 2
    test = look_at(test_yaw, torch.linspace(-0.5, 0.5, cfg.test_views) * cfg.train_pitch)
    return train, test


def fit(cfg: DictConfig) -> dict[str, float]:
    torch.manual_seed(cfg.seed)
    train_cams, test_cams = views(cfg)
    heads = sample_heads([cfg.identity])
    targets = render_heads(heads.take(torch.zeros(len(train_cams), dtype=torch.long)), train_cams, cfg.resolution)
    tests = render_heads(heads.take(torch.zeros(len(test_cams), dtype=torch.long)), test_cams, cfg.resolution)
    background = heads.background[:, 0]  # (3,) in [0, 1]

    field = FittedField(cfg)
    renderer = VolumeRenderer(cfg.num_coarse, cfg.num_importance, density_activation=density_activation)
    field_params = field.field_parameters()
    others = [p for p in field.parameters() if all(p is not q for q in field_params)]
    optimizer = torch.optim.Adam(
        [{"params": field_params, "lr": cfg.lr_field}, {"params": others, "lr": cfg.lr_decoder}]
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.steps)

    origins, directions = (x.reshape(1, -1, 3) for x in rays(train_cams, cfg.resolution))
    colours = targets.image.permute(0, 2, 3, 1).reshape(1, -1, 3)
    generator = torch.Generator().manual_seed(cfg.seed)
    start = time.perf_counter()
    for _ in range(cfg.steps):
        batch = torch.randint(0, origins.shape[1], (cfg.rays_per_step,), generator=generator)
        bundle = RayBundle.between(origins[:, batch], directions[:, batch], RAY_START, RAY_END)
        out = renderer.train()(field, bundle, background=background)
        loss = (out.values * 2 - 1 - colours[:, batch]).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    seconds = time.perf_counter() - start

    with torch.no_grad():
        test_origins, test_dirs = rays(test_cams, cfg.resolution)
        bundle = RayBundle.between(test_origins, test_dirs, RAY_START, RAY_END)
        out = renderer.eval()(field, bundle, background=background)
        size = (len(test_cams), cfg.resolution, cfg.resolution)
        images = (out.values * 2 - 1).reshape(*size, 3).permute(0, 3, 1, 2)
        depth = z_depth(out.depth, test_dirs, test_cams).reshape(*size).unsqueeze(1)
        mask = tests.mask
        consistency = reprojection_error(images[:-1], depth[:-1], test_cams[:-1], images[1:], test_cams[1:], mask[:-1])
        wrong = reprojection_error(images[:-1], depth[:-1] * 0.9, test_cams[:-1], images[1:], test_cams[1:], mask[:-1])
        depth_error = (depth - tests.depth)[mask].abs().median()
    background_only = (background * 2 - 1)[None, :, None, None].expand_as(tests.image)
    return {
        "field": cfg.field,
        "test_psnr": float(psnr(images, tests.image).mean()),
        "background_only_psnr": float(psnr(background_only, tests.image).mean()),
        "train_seconds": seconds,
        "steps": cfg.steps,
        "reprojection_error": float(consistency.mean()),
        "reprojection_error_wrong_depth": float(wrong.mean()),
        "median_depth_error": float(depth_error),
        "parameters": sum(p.numel() for p in field.parameters()),
    }


@hydra.main(version_base=None, config_path="../configs/eval", config_name="fit_head")
def main(cfg: DictConfig) -> None:
    result = fit(cfg)
    print(json.dumps(result, indent=2))
    if cfg.output_json:
        with open(cfg.output_json, "w") as handle:
            json.dump(result, handle, indent=2)
    if not math.isfinite(result["test_psnr"]):
        raise SystemExit("fitting diverged (non-finite PSNR)")


if __name__ == "__main__":
    check_command_line("fit_head")
    main()
