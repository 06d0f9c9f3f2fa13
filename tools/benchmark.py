"""Performance dashboard: rendering core, data, generators, frames/s with super-resolution, samples per ray
against a reference render, training images/s of a config, inversion latency, and peak memory; two
configurations side by side with ``compare``.

python tools/benchmark.py                                          # CPU sizes
python tools/benchmark.py device=cuda output_json=bench.json       # adds 512^2 rendering
python tools/benchmark.py device=cuda compare.key=precision compare.values=[fp32,bf16]
python tools/benchmark.py compare.key=field compare.values=[triplane,hashgrid] generator_fields=[]
python tools/benchmark.py compare.key=load.processes compare.values=[0,2]   # quiet vs 2 busy processes
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from pix2nerf.cameras import look_at, rays, sample_poses
from pix2nerf.data.heads import render_heads, sample_heads
from pix2nerf.fields import SpheresField
from pix2nerf.inference import FaceModel, load_model
from pix2nerf.inference.errors import check_command_line
from pix2nerf.metrics import psnr
from pix2nerf.networks import Encoder, Generator, GeneratorOutput
from pix2nerf.precision import PRECISIONS
from pix2nerf.precision import autocast as precision_autocast
from pix2nerf.rendering import RayBundle, VolumeRenderer, composite, samples_per_ray, stratified
from pix2nerf.runtime import adapt_threads, available_cpus, configure_threads

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    """One row: median wall seconds (and the process CPU seconds of that run: all threads, so > wall when
    several cores work), throughput, peak memory, the CPU threads in use and, for rows that approximate a
    reference, PSNR against it (dB) and the mean depth error on its foreground (world units)."""

    name: str
    seconds: float
    rays_per_second: float | None
    peak_memory_mb: float | None
    images_per_second: float | None = None
    cpu_seconds: float | None = None
    threads: int | None = None
    psnr_db: float | None = None
    depth_error: float | None = None


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated since the last reset. CPU: the process's peak resident set size (Linux: KiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def autocast(cfg: DictConfig, device: torch.device) -> AbstractContextManager:
    """bf16 autocast of the model benchmarks when ``precision=bf16``, else a no-op."""
    return precision_autocast(cfg.precision, device)


def measure(name: str, fn: Callable[[], object], num_rays: int, device: torch.device, warmup: int, repeats: int):
    """Median wall time (with its CPU time) of ``fn`` over ``repeats`` runs after ``warmup`` runs. The package's
    thread policy is applied before every run, as the CLI and the tools do."""
    for _ in range(warmup):
        adapt_threads()
        fn()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    runs = []
    for _ in range(repeats):
        threads = adapt_threads()
        _synchronize(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        _synchronize(device)
        runs.append((time.perf_counter() - start, time.process_time() - cpu_start, threads))
    seconds, cpu_seconds, threads = sorted(runs)[len(runs) // 2]
    print(f"{name}: {seconds * 1e3:.1f} ms", file=sys.stderr, flush=True)  # progress: the suite takes minutes on CPU
    return Result(name, seconds, num_rays / seconds, peak_memory_mb(device), None, cpu_seconds, threads)


def rendering_core(cfg: DictConfig, device: torch.device) -> list[Result]:
    rng = torch.Generator(device).manual_seed(0)
    yaw = torch.linspace(-0.5, 0.5, cfg.batch_size, device=device)
    cameras = look_at(yaw, torch.zeros_like(yaw), device=device)
    num_rays = cfg.batch_size * cfg.resolution**2
    shape = (cfg.batch_size, cfg.resolution**2, cfg.num_samples)
    sigma = torch.rand(*shape, 1, device=device, generator=rng) * 5
    values = torch.rand(*shape, cfg.feature_dim, device=device, generator=rng)
    near = torch.full((*shape[:2], 1), 2.25, device=device)
    t = stratified(near, near + 1.05, cfg.num_samples, jitter=True, rng=rng)
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
    c = sample_poses(batch, rng=g).to(device).label()

    def render(resolution: int) -> None:
        with torch.no_grad(), autocast(cfg, device):
            generator.eval()(z, c, neural_resolution=resolution)

    def train_step(resolution: int) -> None:
        generator.train().zero_grad(set_to_none=True)
        with autocast(cfg, device):
            out = generator(z, c, neural_resolution=resolution)
            loss = out.image.float().square().mean() + out.depth.float().mean()
        loss.backward()

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


def sr_generator(cfg: DictConfig, image_resolution: int, neural_resolution: int, device: torch.device) -> Generator:
    """The benchmark's generator (``cfg.generator`` sizes, ``cfg.field``) rendering neural_resolution^2 and
    super-resolving to image_resolution^2 (one SR block more than doublings; none when the sizes are equal)."""
    torch.manual_seed(0)
    doublings = int(math.log2(image_resolution // neural_resolution))
    settings = {**cfg.generator, "image_resolution": image_resolution, "neural_resolution": neural_resolution}
    settings["sr_channels"] = list(cfg.render.sr_channels[: doublings + 1])
    return Generator(field=cfg.field, **settings).to(device).eval()


def sample_counts(cfg: DictConfig, device: torch.device) -> tuple[int, int]:
    """Stratified and importance samples per ray of the rendering benchmarks (fewer on CPU)."""
    counts = cfg.render.samples_cuda if device.type == "cuda" else cfg.render.samples_cpu
    return counts[0], counts[1]


def rendering(cfg: DictConfig, device: torch.device) -> list[Result]:
    """Frames/s of the full generator (mapping, synthesis, volume rendering, super-resolution), no grad."""
    sizes = [tuple(size) for size in cfg.render.sizes]
    include_large = cfg.render.include_large if cfg.render.include_large is not None else device.type == "cuda"
    if include_large:
        sizes.append(tuple(cfg.render.large))
    num_coarse, num_importance = sample_counts(cfg, device)
    batch = cfg.render.batch_size
    results = []
    for image_resolution, neural_resolution in sizes:
        generator = sr_generator(cfg, image_resolution, neural_resolution, device)
        g = torch.Generator().manual_seed(0)
        z = torch.randn(batch, generator.z_dim, generator=g).to(device)
        c = sample_poses(batch, rng=g).to(device).label()

        def render(generator: Generator = generator, z: torch.Tensor = z, c: torch.Tensor = c) -> None:
            with torch.no_grad(), autocast(cfg, device):
                generator(
                    z,
                    c,
                    num_coarse=num_coarse,
                    num_importance=num_importance,
                    noise_mode="const",
                    coarse_stride=cfg.render.coarse_stride,
                )

        sr = "SR" if image_resolution != neural_resolution else "no SR"
        passes = samples_label(num_coarse, num_importance, cfg.render.coarse_stride)
        name = f"frames {image_resolution}^2 (neural {neural_resolution}^2, {sr}, {passes})"
        result = measure(name, render, batch * neural_resolution**2, device, **_reps(cfg))
        result.images_per_second = batch / result.seconds
        results.append(result)
    return results


def samples_label(num_coarse: int, num_importance: int, coarse_stride: int) -> str:
    """``"C+I"``, or ``"C/s^2+I"`` for a coarse pass at 1/s resolution (its evaluations per full-resolution ray)."""
    coarse = f"{num_coarse}" if coarse_stride == 1 else f"{num_coarse}/{coarse_stride}^2"
    return f"{coarse}+{num_importance}"


def repository_path(path: str) -> Path:
    """``path`` as given when it exists, else relative to the repository (Hydra runs the tools in their own folder)."""
    return Path(path) if Path(path).exists() else ROOT / path


def sampling(cfg: DictConfig, device: torch.device) -> list[Result]:
    """Samples per ray against quality: each [coarse, importance, coarse_stride] budget of ``sampling.budgets``
    renders a trained model's field (tri-planes computed once, as the viewer and novel-view tools do) and is
    scored against a ``sampling.reference`` render of the same views."""
    model = load_model(repository_path(cfg.sampling.checkpoint), device, cfg.precision)
    generator, resolution = model.generator, cfg.sampling.resolution
    rng = torch.Generator().manual_seed(0)
    yaw_pitch = torch.stack(
        [torch.linspace(-0.6, 0.6, cfg.sampling.views), torch.linspace(-0.2, 0.2, cfg.sampling.views)], dim=1
    )
    cameras = model.cameras(yaw_pitch.to(device))
    with torch.no_grad(), model.autocast():
        ws = generator.mapping(
            torch.randn(cfg.sampling.views, generator.z_dim, generator=rng).to(device), cameras.label()
        )
        params = generator.field_params(ws, noise_mode="const")

        def render(num_coarse: int, num_importance: int, coarse_stride: int) -> GeneratorOutput:
            return generator.synthesis(
                ws, cameras, resolution, num_coarse, num_importance, "const", params=params, coarse_stride=coarse_stride
            )

        reference = render(*cfg.sampling.reference, 1)
        foreground = reference.opacity > 0.5
        results = []
        latest: list[GeneratorOutput] = []  # each budget's last timed render, the one scored
        for num_coarse, num_importance, coarse_stride in cfg.sampling.budgets:
            evaluations = samples_per_ray(num_coarse, num_importance, coarse_stride)
            passes = samples_label(num_coarse, num_importance, coarse_stride)

            def timed_render(c: int = num_coarse, i: int = num_importance, s: int = coarse_stride) -> None:
                latest[:] = [render(c, i, s)]

            name = f"sampling {resolution}^2 {passes} ({evaluations:g} evaluations/ray)"
            result = measure(name, timed_render, cfg.sampling.views * resolution**2, device, **_reps(cfg))
            (out,) = latest
            result.images_per_second = cfg.sampling.views / result.seconds
            result.psnr_db = float(psnr(out.image, reference.image).mean())
            result.depth_error = float((out.depth - reference.depth).abs()[foreground].mean())
            results.append(result)
    return results


def inversion(cfg: DictConfig, device: torch.device) -> list[Result]:
    """Latency of ``FaceModel.encode`` + one render (encoder-only inversion, no refinement) of one image."""
    if cfg.inversion.checkpoint:
        model = load_model(cfg.inversion.checkpoint, device, cfg.precision)
    else:
        image_resolution, neural_resolution = cfg.inversion.resolution
        generator = sr_generator(cfg, image_resolution, neural_resolution, device)
        encoder = Encoder(image_resolution, generator.num_ws, generator.w_dim, **cfg.inversion.encoder)
        model = (
            FaceModel(generator, encoder, precision=cfg.precision).to(device).eval().requires_grad_(False)
        )  # it applies its own autocast
    if model.encoder is None:
        raise SystemExit(f"{cfg.inversion.checkpoint} has no encoder: nothing to benchmark for inversion")
    num_coarse, num_importance = sample_counts(cfg, device)
    size = model.image_resolution
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    image = image.to(device)

    def invert() -> None:
        with torch.no_grad():
            encoded = model.encode(image)
            model.render(encoded.w, encoded.yaw_pitch, num_coarse=num_coarse, num_importance=num_importance)

    neural = model.generator.neural_resolution
    name = f"inversion: encode + render {model.image_resolution}^2 (neural {neural}^2)"
    result = measure(name, invert, neural**2, device, **_reps(cfg))
    result.images_per_second = 1 / result.seconds
    return [result]


def training(cfg: DictConfig, device: torch.device) -> list[Result]:
    """Images/s of full training steps (G and D updates, regularisers) of a LightningCLI training config."""
    from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer

    from pix2nerf.cli import Pix2NeRFCLI
    from pix2nerf.systems import AdaptiveThreads

    class StepTimer(Callback):
        def __init__(self) -> None:
            self.runs: list[tuple[float, float, int]] = []

        def on_train_batch_start(self, *args) -> None:
            _synchronize(device)
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, *args) -> None:
            _synchronize(device)
            wall, cpu = time.perf_counter() - self.start, time.process_time() - self.cpu_start
            self.runs.append((wall, cpu, torch.get_num_threads()))

    paths = [repository_path(path) for path in cfg.training.configs]
    args = [argument for path in paths for argument in ("-c", str(path))]
    overrides = [f"--model.init_args.generator.init_args.field={cfg.field}", "--trainer.logger=false"]
    with warnings.catch_warnings():  # Lightning warns that Hydra's sys.argv is not the CLI's: intended here
        warnings.filterwarnings("ignore", message=".*args parameter is intended")
        cli = Pix2NeRFCLI(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            args=[*args, *overrides, *cfg.training.overrides],
            run=False,
        )
    timer = StepTimer()
    trainer = Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        precision="bf16-mixed" if cfg.precision == "bf16" else "32-true",
        max_epochs=1,
        limit_train_batches=cfg.warmup + cfg.repeats,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[AdaptiveThreads(), timer],  # the threads are chosen before the timer starts
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer.fit(cli.model, cli.datamodule)
    runs = sorted(timer.runs[cfg.warmup :])
    seconds, cpu_seconds, threads = runs[len(runs) // 2]
    batch = cli.datamodule.hparams.batch_size
    name = f"train {type(cli.model).__name__} {' + '.join(Path(p).stem for p in paths)} (batch {batch})"
    return [Result(name, seconds, None, peak_memory_mb(device), batch / seconds, cpu_seconds, threads)]


def _reps(cfg: DictConfig) -> dict[str, int]:
    return {"warmup": cfg.warmup, "repeats": cfg.repeats}


BUSY_LOOP = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass"
"""A competing process: one core kept busy until its deadline (so it ends even if this program is killed)."""


@contextmanager
def competing_load(processes: int, seconds: float) -> Iterator[None]:
    """Keep ``processes`` busy processes running (at most ``seconds`` each) while the block runs."""
    busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(seconds)]) for _ in range(processes)]
    try:
        yield
    finally:
        for process in busy:
            process.kill()
            process.wait()


def run_suite(cfg: DictConfig, device: torch.device) -> list[Result]:
    """Every benchmark the configuration enables, in a fixed order, beside ``load.processes`` busy processes."""
    with competing_load(cfg.load.processes, cfg.load.seconds):
        return _run_suite(cfg, device)


def _run_suite(cfg: DictConfig, device: torch.device) -> list[Result]:
    if cfg.precision not in PRECISIONS:
        raise SystemExit(f"precision must be fp32 or bf16, got {cfg.precision!r}")
    configure_threads(cfg.threads)
    results = rendering_core(cfg, device)
    if cfg.heads_resolutions:
        results += synthetic_heads(cfg, device)
    if cfg.generator_fields:
        results += generators(cfg, device)
    if cfg.render.sizes:
        results += rendering(cfg, device)
    if cfg.sampling.checkpoint:
        results += sampling(cfg, device)
    if cfg.inversion.enabled:
        results += inversion(cfg, device)
    if cfg.training.configs:
        results += training(cfg, device)
    return results


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {available_cpus()} cores available"


def describe(cfg: DictConfig, device: torch.device) -> str:
    """The device and the settings every row shares."""
    return (
        f"{device_name(device)}, batch {cfg.batch_size}, field {cfg.field}, {cfg.precision}, "
        f"{cfg.load.processes} competing busy processes, torch {torch.__version__}"
    )


def print_table(results: list[Result], header: str) -> None:
    print(header)
    print(
        f"{'benchmark':<62} {'ms':>10} {'CPU ms':>10} {'threads':>7} {'rays/s':>14} {'images/s':>10} {'peak MiB':>10} "
        f"{'PSNR dB':>8} {'depth err':>9}"
    )
    for r in results:
        peak = f"{r.peak_memory_mb:.0f}" if r.peak_memory_mb is not None else "-"
        images = f"{r.images_per_second:.1f}" if r.images_per_second is not None else "-"
        rays = f"{r.rays_per_second:,.0f}" if r.rays_per_second is not None else "-"
        cpu = f"{r.cpu_seconds * 1e3:.2f}" if r.cpu_seconds is not None else "-"
        threads = str(r.threads) if r.threads is not None else "-"
        quality = f"{r.psnr_db:.2f}" if r.psnr_db is not None else "-"
        depth = f"{r.depth_error:.4f}" if r.depth_error is not None else "-"
        print(
            f"{r.name:<62} {r.seconds * 1e3:>10.2f} {cpu:>10} {threads:>7} {rays:>14} {images:>10} {peak:>10} "
            f"{quality:>8} {depth:>9}"
        )


def print_comparison(first: list[Result], second: list[Result], header: str) -> list[dict]:
    """Side-by-side times and the speed-up of the second configuration (first time / second time)."""
    print(header)
    print(f"{'benchmark':<62} {'A ms':>10} {'B ms':>10} {'B speed-up':>11} {'A MiB':>8} {'B MiB':>8}")
    rows = []
    for a, b in zip(first, second, strict=True):
        ratio = a.seconds / b.seconds
        print(
            f"{a.name:<62} {a.seconds * 1e3:>10.2f} {b.seconds * 1e3:>10.2f} {ratio:>10.2f}x "
            f"{a.peak_memory_mb:>8.0f} {b.peak_memory_mb:>8.0f}"
        )
        rows.append({"a": a.name, "b": b.name, "a_seconds": a.seconds, "b_seconds": b.seconds, "speedup": ratio})
    return rows


def with_value(cfg: DictConfig, key: str, value: object) -> DictConfig:
    """A copy of ``cfg`` with ``key`` (dotted) set to ``value``."""
    copy = OmegaConf.create(OmegaConf.to_container(cfg))
    OmegaConf.update(copy, key, value, merge=False)
    return copy


@hydra.main(version_base=None, config_path="../configs/eval", config_name="benchmark")
def main(cfg: DictConfig) -> None:
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("device=cuda was requested but no CUDA device is available; use device=cpu")
    if cfg.compare.key is None:
        results = run_suite(cfg, device)
        print_table(results, f"pix2nerf benchmark on {describe(cfg, device)}")
        report = {"device": device_name(device), "results": [asdict(r) for r in results]}
    else:
        key, values = cfg.compare.key, list(cfg.compare["values"])
        if len(values) != 2 or OmegaConf.select(cfg, key, default="<missing>") == "<missing>":
            raise SystemExit(f"compare needs an existing config key and two values, got {key}={values}")
        suites = {}
        for label, value in zip("AB", values, strict=True):
            variant = with_value(cfg, key, value)
            suites[label] = run_suite(variant, device)
            print_table(suites[label], f"{label}: {key}={value} on {describe(variant, device)}")
            print()
        rows = print_comparison(suites["A"], suites["B"], f"A: {key}={values[0]}  vs  B: {key}={values[1]}")
        report = {
            "device": device_name(device),
            "compare": {"key": key, "values": values},
            "results": {label: [asdict(r) for r in suite] for label, suite in suites.items()},
            "comparison": rows,
        }
    if cfg.output_json:
        with open(cfg.output_json, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    check_command_line("benchmark")
    main()
