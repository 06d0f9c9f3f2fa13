"""Render the analytic test scene on an orbit and save RGB, depth and opacity grids as PNG.

python tools/render_test_scene.py resolution=128 num_views=12
"""

from __future__ import annotations

import time
from pathlib import Path

import hydra
import imageio.v3 as iio
import numpy as np
import torch
from omegaconf import DictConfig
from torchvision.utils import make_grid

from pix2nerf.cameras import look_at, rays, z_depth
from pix2nerf.fields import SpheresField
from pix2nerf.inference.errors import check_command_line
from pix2nerf.rendering import RayBundle, VolumeRenderer


def to_uint8(images: torch.Tensor, num_columns: int) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> (H', W', 3) uint8 grid."""
    grid = make_grid(images.clamp(0, 1), nrow=num_columns, padding=2, pad_value=1.0)
    return (grid.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


@hydra.main(version_base=None, config_path="../configs/infer", config_name="test_scene")
def main(cfg: DictConfig) -> None:
    device = torch.device(cfg.device)
    yaw = torch.linspace(-cfg.yaw_range, cfg.yaw_range, cfg.num_views)
    cameras = look_at(yaw, torch.full_like(yaw, cfg.pitch), device=device)
    origins, directions = rays(cameras, cfg.resolution)
    bundle = RayBundle.between(origins, directions, cfg.near, cfg.far)
    renderer = VolumeRenderer(cfg.num_coarse, cfg.num_importance, jitter=False).eval()
    field = SpheresField.snowman_head().to(device)

    start = time.perf_counter()
    with torch.no_grad():
        out = renderer(field, bundle, background=torch.tensor(list(cfg.background), device=device))
    seconds = time.perf_counter() - start

    def image(values: torch.Tensor) -> torch.Tensor:
        return values.reshape(cfg.num_views, cfg.resolution, cfg.resolution, -1).permute(0, 3, 1, 2).cpu()

    depth = z_depth(out.depth, directions, cameras)
    depth_near, depth_far = cfg.near, cfg.far
    depth_image = 1.0 - (image(depth) - depth_near) / (depth_far - depth_near)  # near = bright
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    columns = min(cfg.num_views, 8)
    iio.imwrite(output_dir / "test_scene_rgb.png", to_uint8(image(out.values), columns))
    iio.imwrite(output_dir / "test_scene_depth.png", to_uint8(depth_image.expand(-1, 3, -1, -1), columns))
    iio.imwrite(output_dir / "test_scene_opacity.png", to_uint8(image(out.opacity).expand(-1, 3, -1, -1), columns))
    num_rays = origins.shape[0] * origins.shape[1]
    print(
        f"rendered {cfg.num_views} views at {cfg.resolution}^2 in {seconds:.2f} s "
        f"({num_rays / seconds:,.0f} rays/s, {cfg.num_coarse}+{cfg.num_importance} samples per ray)"
    )
    print(f"wrote test_scene_rgb.png, test_scene_depth.png, test_scene_opacity.png to {output_dir}")


if __name__ == "__main__":
    check_command_line("render_test_scene")
    main()
