"""Performance dashboard: throughput of the rendering core (and, as they land, of the models).

python tools/benchmark.py resolution=64 num_samples=96
python tools/benchmark.py device=cuda output_json=bench.json
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import hydra
import torch
from omegaconf import DictConfig

from pix2nerf.cameras import look_at, rays, sample_poses
from pix2nerf.data.heads import render_heads, sample_heads
from pix2nerf.fields import SpheresField
from pix2nerf.networks import Generator
from pix2nerf.rendering import RayBundle, VolumeRenderer, composite, stratified


@dataclass
class Result:
    name: str
    seconds: float
    rays_per_second: float
    peak_memory_mb: float | None
    images_per_second: float | None = None


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name: str, fn: Callable[[], object], num_rays: int, device: torch.device, warmup: int, repeats: int):
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        fn()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2]
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return Result(name, seconds, num_rays / seconds, peak)


def rendering_core(cfg: DictConfig, device: torch.device) -> list[Result]:
    generator = torch.Generator(device).manual_seed(0)
    yaw = torch.linspace(-0.5, 0.5, cfg.batch_size, device=device)
    cameras = look_at(yaw, torch.zeros_like(yaw), device=device)
    num_rays = cfg.batch_size * cfg.resolution**2
    shape = (cfg.batch_size, cfg.resolution**2, cfg.num_samples)
    sigma = torch.rand(*shape, 1, device=device, generator=generator) * 5
    values = torch.rand(*shape, cfg.feature_dim, device=device, generator=generator)
    near = torch.full((*shape[:2], 1), 2.25, device=device)
    t = stratified(near, near + 1.05, cfg.num_samples, jitter=True, generator=generator)
    sigma_grad, values_grad = sigma.clone().requires_grad_(), values.clone().requires_grad_()

    def forward_backward() -> None:
        out = composite(sigma_grad, values_grad, t)
        (out.values.sum() + out.depth.sum()).backward()

    origins, directions = rays(cameras, cfg.resolution)
    bundle = RayBundle(origins, directions, near, near + 1.05)
    renderer = VolumeRenderer(cfg.num_coarse, cfg.num_importance, jitter=False).eval()
    field = SpheresField.snowman_head().to(device)
    sampled = f"{cfg.num_samples} samples, {cfg.feature_dim} features"
    with torch.no_grad():
        results = [
            measure(f"rays {cfg.resolution}^2", lambda: rays(cameras, cfg.resolution), num_rays, device, **_reps(cfg)),
            measure(f"composite fwd ({sampled})", lambda: composite(sigma, values, t), num_rays, device, **_reps(cfg)),
            measure(
                f"render snowman ({cfg.num_coarse}+{cfg.num_importance} samples)",
                lambda: renderer(field, bundle),
                num_rays,
                device,
                **_reps(cfg),
            ),
        ]
    results.append(measure(f"composite fwd+bwd ({sampled})", forward_backward, num_rays, device, **_reps(cfg)))
    return results


def synthetic_heads(cfg: DictConfig, device: torch.device) -> list[Result]:
    """Images/s of the procedural data set's batched sphere tracer (rays/s column = images/s x pixels)."""
    results = []
    yaw = torch.linspace(-0.5, 0.5, cfg.heads_batch_size, device=device)
    cameras = look_at(yaw, torch.zeros_like(yaw), device=device)
    heads = sample_heads(range(cfg.heads_batch_size))
    for resolution in cfg.heads_resolutions:
        result = measure(
            f"synthetic heads {resolution}^2 (batch {cfg.heads_batch_size})",
            lambda r=resolution: render_heads(heads, cameras, r),
            cfg.heads_batch_size * resolution**2,
            device,
            **_reps(cfg),
        )
        result.images_per_second = cfg.heads_batch_size / result.seconds
        results.append(result)
    return results


def generators(cfg: DictConfig, device: torch.device) -> list[Result]:
    """Rendering frames/s (no grad) and training step time (forward + backward) of each radiance head."""
    return [result for field in cfg.generator_fields for result in generator_results(field, cfg, device)]


def generator_results(field: str, cfg: DictConfig, device: torch.device) -> list[Result]:
    torch.manual_seed(0)
    generator = Generator(field=field, **cfg.generator).to(device)
    parameters = sum(p.numel() for p in generator.parameters())
    batch = cfg.generator_batch_size
    g = torch.Generator().manual_seed(0)
    z = torch.randn(batch, generator.z_dim, generator=g).to(device)
    c = sample_poses(batch, generator=g).to(device).label()

    def render(resolution: int) -> None:
        with torch.no_grad():
            generator.eval()(z, c, neural_resolution=resolution)

    def train_step(resolution: int) -> None:
        generator.train().zero_grad(set_to_none=True)
        out = generator(z, c, neural_resolution=resolution)
        (out.image.square().mean() + out.depth.mean()).backward()

    results = []
    for resolution in cfg.generator_resolutions:
        label = f"{field} ({parameters / 1e6:.2f}M params) {resolution}^2"
        for name, fn in (("render", render), ("train step", train_step)):
            result = measure(
                f"{name} {label}", lambda r=resolution, f=fn: f(r), batch * resolution**2, device, **_reps(cfg)
            )
            result.images_per_second = batch / result.seconds
            results.append(result)
    return results


def _reps(cfg: DictConfig) -> dict[str, int]:
    return {"warmup": cfg.warmup, "repeats": cfg.repeats}


def print_table(results: list[Result], header: str) -> None:
    print(header)
    print(f"{'benchmark':<58} {'ms':>10} {'rays/s':>14} {'images/s':>10} {'peak MiB':>10}")
    for r in results:
        peak = f"{r.peak_memory_mb:.0f}" if r.peak_memory_mb is not None else "-"
        images = f"{r.images_per_second:.1f}" if r.images_per_second is not None else "-"
        print(f"{r.name:<58} {r.seconds * 1e3:>10.2f} {r.rays_per_second:>14,.0f} {images:>10} {peak:>10}")


@hydra.main(version_base=None, config_path="../configs/eval", config_name="benchmark")
def main(cfg: DictConfig) -> None:
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("device=cuda was requested but no CUDA device is available; use device=cpu")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    results = rendering_core(cfg, device)
    if cfg.heads_resolutions:
        results += synthetic_heads(cfg, device)
    if cfg.generator_fields:
        results += generators(cfg, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print_table(results, f"pix2nerf benchmark on {name}, batch {cfg.batch_size}, torch {torch.__version__}")
    if cfg.output_json:
        with open(cfg.output_json, "w") as handle:
            json.dump({"device": name, "results": [asdict(r) for r in results]}, handle, indent=2)


if __name__ == "__main__":
    main()
