"""Evaluate a trained model on the synthetic heads' held-out test split, with a fixed protocol.

Protocol (``PROTOCOL``; identities and seed are config values written to the output):
  * identities: the test split's first ``num_identities`` seeds (10_000_000 + i), rendered exactly;
  * input: each identity's frontal view (yaw 0, pitch 0) at the model's image resolution; scored by the shared
    protocol of :mod:`pix2nerf.evaluation` (what ``pix2nerf test`` logs), encoder-only (with the plane residual of
    a hybrid encoder), then with per-image refinement (``refined/``, config ``refine``) and from an off-frontal
    input (``off_frontal/``, config ``off_frontal_yaw_deg``);
  * reconstruction: the inversion rendered at the estimated pose, against the input (PSNR, SSIM, LPIPS),
    its depth against the input's exact depth (scale-aware and scale-invariant errors), semantic mIoU if the
    generator renders semantics;
  * novel views: rendered at the *estimated* pose +-15, +-30 and +-45 degrees of yaw, against the exact renders at
    the true pose + the same offsets (``novel_psnr_15`` ... ``novel_ssim_45``); ``novel_psnr``/``novel_ssim``,
    LPIPS and the depth errors are the +-30 degree views;
  * multi-view consistency: the reconstruction warped into each novel view through its depth (reprojection error);
  * pose error: the encoder on all 15 views (yaw -30..30, pitch -10..10 degrees) of every identity;
  * FID/KID: random samples (seeded) at the same 15 views, against all 15 views of every identity;
  * encoder latency: ``encoder_ms``, the median time of one image through the encoder (batch 1).

    python tools/evaluate.py checkpoint=model.safetensors
    python tools/evaluate.py checkpoint=model.safetensors refine.steps=100   # adds refined/ metrics
    python tools/evaluate.py checkpoint=last.ckpt device=cuda num_identities=256 wandb.enabled=true
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from pix2nerf.data import SyntheticHeads
from pix2nerf.evaluation import HEADLINE_OFFSET_DEG, NOVEL_OFFSETS_DEG, SourceViews, score_inversions
from pix2nerf.inference import INPUT_ERROR_EXIT_CODE, FaceModel, InputError, configs, load_model
from pix2nerf.inference.errors import check_command_line, check_output_file
from pix2nerf.inference.invert import RefineOptions
from pix2nerf.losses.perceptual import LPIPS, PerceptualWeightsMissing
from pix2nerf.metrics import InceptionDistances, InceptionUnavailable, inception_distances, mean_iou, pose_error_degrees

INPUT_VIEW = (0.0, 0.0)
SOURCE_KEYS = ("image", "yaw_pitch", "identity", "depth", "semantics")
"""What the protocol reads of each input view."""
LATENCY_IMAGES = 16
"""Images timed one by one for ``encoder_ms`` (after one warm-up)."""
PROTOCOL = {
    "split": "synthetic heads test (identity seeds 10_000_000 + i)",
    "input_view_yaw_pitch_deg": [0.0, 0.0],
    "novel_view_yaw_offsets_deg": [sign * offset for offset in NOVEL_OFFSETS_DEG for sign in (-1, 1)],
    "headline_offset_deg": HEADLINE_OFFSET_DEG,
    "pose_error_views": "yaw -30, -15, 0, 15, 30 x pitch -10, 0, 10 degrees",
    "fid_kid": "random samples at the 15 test views vs the 15 test views of every identity",
}

CONFIG_KEYS = (
    "checkpoint", "device", "precision", "num_identities", "batch_size", "seed", "neural_resolution",
    "off_frontal_yaw_deg", "refine", "lpips", "fid", "output_json", "wandb",
)  # fmt: skip
"""The config's keys (values in configs/eval/evaluate.yaml); ``refine`` holds RefineOptions' (defaults from it)."""
configs.store("evaluate_schema", configs.tool_schema("EvaluateConfig", CONFIG_KEYS, nested={"refine": RefineOptions}))


def input_passes(cfg: DictConfig) -> dict[str, tuple[float, RefineOptions | None]]:
    """Metric prefix -> (input view yaw in radians, refinement or None) of each pass over the identities: the
    frontal input encoder-only (no prefix), refined (``refined/``, when ``refine`` has steps) and the off-frontal
    input (``off_frontal/``, when ``off_frontal_yaw_deg`` is set)."""
    passes: dict[str, tuple[float, RefineOptions | None]] = {"": (INPUT_VIEW[0], None)}
    refinement = configs.options_from_config(RefineOptions, cfg.refine)
    if refinement.enabled:
        passes["refined/"] = (INPUT_VIEW[0], refinement)
    if cfg.off_frontal_yaw_deg is not None:
        passes["off_frontal/"] = (math.radians(cfg.off_frontal_yaw_deg), None)
    return passes


def view_index(heads: SyntheticHeads, yaw: float, pitch: float) -> int:
    """Index in the test split's view grid of the view at (yaw, pitch) radians."""
    distances = [abs(view_yaw - yaw) + abs(view_pitch - pitch) for view_yaw, view_pitch in heads.eval_grid]
    index = min(range(len(distances)), key=distances.__getitem__)
    if distances[index] > 1e-6:
        raise ValueError(f"the test split has no view at yaw {yaw:.4f}, pitch {pitch:.4f} rad")
    return index


def stack(items: list[dict], key: str, device: torch.device) -> Tensor:
    """One field of data-set items, batched on ``device``."""
    return torch.stack([torch.as_tensor(item[key]) for item in items]).to(device)


class Evaluation:
    """Per-image scores (lists of (B,) tensors) and metrics over the whole set, for one model."""

    def __init__(self, model: FaceModel, cfg: DictConfig, device: torch.device) -> None:
        self.model, self.cfg, self.device = model, cfg, device
        self.heads = SyntheticHeads("test", model.image_resolution, cfg.num_identities, prior=model.prior)
        self.views = len(self.heads.eval_grid)
        self.scores: dict[str, list[Tensor]] = defaultdict(list)
        self.labels: dict[str, list[tuple[Tensor, Tensor]]] = defaultdict(list)
        self.passes = input_passes(cfg)
        self.z_generator = torch.Generator().manual_seed(cfg.seed)
        self.latency_input: Tensor | None = None
        self.lpips = self.perceptual(cfg.lpips)
        self.inception = self.distributions(cfg.fid)

    def perceptual(self, options: DictConfig) -> LPIPS | None:
        """LPIPS for reconstructions and novel views, or None when skipped (missing backbone weights)."""
        try:
            return LPIPS(options.net, offline_random_backbone=options.offline_random_backbone).to(self.device)
        except PerceptualWeightsMissing as error:
            if not options.skip_if_missing:
                raise
            print(f"skipping LPIPS (lpips.skip_if_missing=true): {error}", file=sys.stderr)
            return None

    def distributions(self, options: DictConfig) -> InceptionDistances | None:
        if not options.enabled:
            return None
        subset_size = min(options.kid_subset_size, self.cfg.num_identities * self.views)
        metric = inception_distances(
            options.weights_path,
            skip_missing=options.skip_if_missing,
            kid_subsets=options.kid_subsets,
            kid_subset_size=subset_size,
        )
        return metric.to(self.device) if metric is not None else None

    @torch.no_grad()
    def identities(self, first: int, count: int) -> None:
        """Score identities ``first .. first + count - 1``."""
        indices = [identity * self.views + v for identity in range(first, first + count) for v in range(self.views)]
        items = self.heads.__getitems__(indices)
        by_view = [items[v :: self.views] for v in range(self.views)]  # per view: one item per identity
        all_images, all_angles = stack(items, "image", self.device), stack(items, "yaw_pitch", self.device)
        poses = self.model.encode_stage1(all_images).yaw_pitch  # the residual does not change the pose
        self.scores["pose_error_deg"].append(pose_error_degrees(poses, all_angles))
        if self.inception is not None:
            self.distribution_samples(all_images, all_angles)
        for prefix, (yaw, refinement) in self.passes.items():
            inputs = by_view[view_index(self.heads, yaw, INPUT_VIEW[1])]
            views = SourceViews.from_batch(
                {key: stack(inputs, key, self.device) for key in SOURCE_KEYS}, self.heads.random_light
            )
            scores = score_inversions(
                self.model, views, NOVEL_OFFSETS_DEG, refinement, self.cfg.neural_resolution, self.lpips
            )
            for name, value in scores.per_image.items():
                if prefix or name != "pose_error_deg":  # the main pass's pose error is over every view (above)
                    self.scores[prefix + name].append(value)
            if scores.semantic_labels is not None:
                self.labels[prefix].append((scores.semantic_labels.cpu(), views.semantics.cpu()))
            if self.latency_input is None:
                self.latency_input = views.images[:LATENCY_IMAGES]

    @torch.no_grad()
    def encoder_milliseconds(self) -> float:
        """Median wall time of :meth:`FaceModel.encode` on one image (batch 1), after one warm-up call."""
        images = self.latency_input
        self.model.encode(images[:1])
        times = []
        for index in range(len(images)):
            start = time.perf_counter()
            self.model.encode(images[index : index + 1])
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2] * 1e3

    def distribution_samples(self, real: Tensor, yaw_pitch: Tensor) -> None:
        """Real test views and as many random samples (seeded, truncated) at the same views."""
        generator = self.model.generator
        z = torch.randn(len(real), generator.z_dim, generator=self.z_generator).to(self.device)
        frontal = self.model.cameras(torch.zeros(len(real), 2, device=self.device)).label()
        w = generator.mapping(z, frontal, truncation_psi=self.cfg.fid.truncation_psi)
        self.inception.update(real, real=True)
        samples = self.model.render(w, yaw_pitch, neural_resolution=self.cfg.neural_resolution).image
        self.inception.update(samples, real=False)

    def run(self) -> dict[str, float]:
        """All identities in batches; the means of every score over the test set."""
        torch.manual_seed(self.cfg.seed)
        for first in range(0, self.cfg.num_identities, self.cfg.batch_size):
            self.identities(first, min(self.cfg.batch_size, self.cfg.num_identities - first))
        metrics = {name: torch.cat(values).double().nanmean().item() for name, values in self.scores.items()}
        metrics["encoder_ms"] = self.encoder_milliseconds()
        for prefix, labels in self.labels.items():
            predicted, target = (torch.cat(parts) for parts in zip(*labels, strict=True))
            classes = self.model.generator.num_semantic_classes
            metrics[f"{prefix}recon_semantic_miou"] = mean_iou(predicted, target, classes).item()
        if self.inception is not None:
            scores = self.inception.compute()
            metrics.update({"fid": scores.fid, "kid_mean": scores.kid_mean, "kid_std": scores.kid_std})
        return dict(sorted(metrics.items()))


def log_to_wandb(cfg: DictConfig, result: dict) -> None:
    """The metrics as a W&B table and run summary (WANDB_MODE=offline/disabled is honoured by wandb itself)."""
    import wandb

    run = wandb.init(
        project=cfg.wandb.project,
        name=cfg.wandb.name,
        job_type="evaluation",
        config=result["protocol"],
        dir=HydraConfig.get().runtime.output_dir,
    )
    table = wandb.Table(columns=["metric", "value"], data=[[k, v] for k, v in result["metrics"].items()])
    run.log({"evaluation": table})
    run.summary.update({f"eval/{k}": v for k, v in result["metrics"].items()})
    run.finish()


def evaluate(cfg: DictConfig) -> dict:
    """Load the model, run the protocol, return the JSON-ready result."""
    if not cfg.checkpoint:
        raise InputError("pass the model to evaluate: checkpoint=PATH (a .safetensors bundle or a Lightning .ckpt)")
    if cfg.num_identities < 2:
        raise InputError(f"num_identities must be at least 2 (FID/KID and spreads need two), got {cfg.num_identities}")
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device=cuda was requested but no CUDA device is available; use device=cpu")
    if cfg.output_json:
        check_output_file(cfg.output_json, "output_json")
    model = load_model(cfg.checkpoint, device, cfg.precision)
    start = time.perf_counter()
    metrics = Evaluation(model, cfg, device).run()
    protocol = {
        **PROTOCOL,
        "num_identities": cfg.num_identities,
        "seed": cfg.seed,
        "resolution": model.image_resolution,
        "neural_resolution": cfg.neural_resolution or model.generator.neural_resolution,
        "encoder": model.encoder is not None,
        "plane_residual": model.residual is not None,
        "passes": {
            prefix or "main": {"input_yaw_deg": round(math.degrees(yaw), 6), "refined": refinement is not None}
            for prefix, (yaw, refinement) in input_passes(cfg).items()
        },
        "refine": OmegaConf.to_container(cfg.refine),
        "precision": model.precision,
    }
    return {
        "checkpoint": str(cfg.checkpoint),
        "protocol": protocol,
        "metrics": metrics,
        "skipped": [name for name, kept in (("lpips", "recon_lpips"), ("fid", "fid")) if kept not in metrics],
        "seconds": round(time.perf_counter() - start, 2),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


@hydra.main(version_base=None, config_path="../configs/eval", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    try:
        result = evaluate(cfg)
    except (InputError, InceptionUnavailable, PerceptualWeightsMissing) as error:
        print(f"evaluate: error: {error}", file=sys.stderr)
        sys.exit(INPUT_ERROR_EXIT_CODE)
    width = max(map(len, result["metrics"]))
    for name, value in result["metrics"].items():
        print(f"{name:<{width}} {value:10.4f}")
    if cfg.output_json:
        path = Path(cfg.output_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2))
        print(f"wrote {path}")
    if cfg.wandb.enabled:
        log_to_wandb(cfg, result)


if __name__ == "__main__":
    check_command_line("evaluate")
    main()
