"""Fit a small FENeRF generator (semantic tri-planes, decoupled latents) to a few synthetic heads, then measure
its semantic maps on held-out views and a mask-guided geometry edit.

Fitting is auto-decoding: the generator's weights and one geometry and one appearance w per identity are
optimised together on multi-view renders of held-out test identities (colour MSE + semantic cross-entropy).
The training views avoid the test split's evaluation grid, so the reported mean IoU is on novel views.

The edit: identity ``edit.source``'s geometry latent is optimised so its semantic map at the frontal view
matches identity ``edit.target``'s true mask there (appearance fixed); the IoU with the target's true
masks is reported for the edited view and every other view of the grid, before and after.

    python tools/fit_semantic_heads.py
    python tools/fit_semantic_heads.py steps=1500 output_json=fenerf_fit.json output_dir=fenerf_fit
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import hydra
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from pix2nerf.cameras import Cameras, look_at, rays
from pix2nerf.data.heads import NUM_SEMANTIC_CLASSES, render_heads, sample_heads
from pix2nerf.data.semantics import CELEBAMASK_HQ_CLASSES, colorize_labels
from pix2nerf.data.synthetic import EVAL_PITCHES, EVAL_YAWS, TEST_SEED_OFFSET
from pix2nerf.inference.editing import edit_geometry, render_semantics, swap_appearance
from pix2nerf.inference.errors import check_command_line
from pix2nerf.metrics.semantic import class_iou, mean_iou
from pix2nerf.networks import Generator
from pix2nerf.networks.generator import SEMANTIC_PROBABILITY_FLOOR
from pix2nerf.runtime import configure_threads


class FittedHeads(nn.Module):
    """A decoupled semantic generator plus one (geometry, appearance) w per identity, repeated over ws rows."""

    def __init__(self, cfg: DictConfig, num_identities: int) -> None:
        super().__init__()
        self.generator = Generator(
            **OmegaConf.to_container(cfg.generator),
            c_dim=0,
            num_semantic_classes=NUM_SEMANTIC_CLASSES,
            decoupled_latents=True,
            neural_resolution=cfg.resolution,
            image_resolution=None,
        )
        self.geometry = nn.Parameter(torch.randn(num_identities, cfg.generator.w_dim))
        self.appearance = nn.Parameter(torch.randn(num_identities, cfg.generator.w_dim))

    def ws(self, identities: Tensor) -> Tensor:
        """(B,) identity indices -> ws (B, num_ws, w_dim)."""
        g = self.generator
        geometry = self.geometry[identities, None].expand(-1, g.num_ws_geometry, -1)
        appearance = self.appearance[identities, None].expand(-1, g.num_ws - g.num_ws_geometry, -1)
        return g.join_ws(geometry, appearance)


def gather(values: Tensor, index: Tensor) -> Tensor:
    """Per-ray values (B, R, C) at ray indices (B, R') -> (B, R', C)."""
    return values.gather(1, index[..., None].expand(-1, -1, values.shape[-1]))


def grid_cameras(yaws: list[float], pitches: list[float]) -> tuple[Cameras, list[tuple[float, float]]]:
    """Cameras of a yaw x pitch grid (radians), pitch-major, and their (yaw, pitch) pairs."""
    pairs = [(yaw, pitch) for pitch in pitches for yaw in yaws]
    yaw, pitch = torch.tensor(pairs).unbind(-1)
    return look_at(yaw, pitch), pairs


def fit(cfg: DictConfig) -> dict:
    configure_threads(cfg.threads or None)
    torch.manual_seed(cfg.seed)
    seeds = [TEST_SEED_OFFSET + i for i in range(cfg.identities)]
    heads = sample_heads(seeds)
    train_cams, _ = grid_cameras(
        torch.linspace(-cfg.train_yaw, cfg.train_yaw, cfg.train_views[0]).tolist(),
        torch.linspace(-cfg.train_pitch, cfg.train_pitch, cfg.train_views[1]).tolist(),
    )
    eval_cams, eval_pairs = grid_cameras(list(EVAL_YAWS), list(EVAL_PITCHES))
    views, eval_views = len(train_cams), len(eval_cams)

    def truth(cameras: Cameras, count: int):
        """Renders of every identity from every camera, identity-major: (N * count, ...)."""
        identity = torch.arange(cfg.identities).repeat_interleave(count)
        return render_heads(heads.take(identity), cameras[torch.arange(count).repeat(cfg.identities)], cfg.resolution)

    train, test = truth(train_cams, views), truth(eval_cams, eval_views)
    background = heads.background.t().float()  # (N, 3) in [0, 1]

    model = FittedHeads(cfg, cfg.identities)
    if cfg.model_path:  # a model this tool fitted before: skip fitting, measure only
        model.load_state_dict(torch.load(cfg.model_path, map_location="cpu", weights_only=True))
    latents = [model.geometry, model.appearance]
    optimizer = torch.optim.Adam(
        [{"params": model.generator.parameters(), "lr": cfg.lr_generator}, {"params": latents, "lr": cfg.lr_latent}]
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.steps)
    generator = torch.Generator().manual_seed(cfg.seed)

    origins, directions = rays(train_cams, cfg.resolution)  # (V, R, 3)
    colours = (train.image.flatten(2).transpose(1, 2) + 1) / 2  # (N * V, R, 3) in [0, 1]
    classes = train.semantics.flatten(1)  # (N * V, R)
    g = model.generator.train()
    start = time.perf_counter()
    for _ in range(0 if cfg.model_path else cfg.steps):
        index = torch.randint(0, cfg.identities * views, (cfg.batch_views,), generator=generator)
        identities, view = index // views, index % views
        ray = torch.randint(0, origins.shape[1], (cfg.batch_views, cfg.rays_per_view), generator=generator)
        planes = g.field_params(model.ws(torch.arange(cfg.identities)), noise_mode="const")
        out = g.render_rays(planes[identities], gather(origins[view], ray), gather(directions[view], ray))
        rgb = out.values[..., :3] + (1 - out.opacity) * background[identities, None]
        probabilities = out.values[..., g.feature_dim :].clamp_min(SEMANTIC_PROBABILITY_FLOOR)
        rgb_loss = F.mse_loss(rgb, gather(colours[index], ray))
        semantic_loss = F.nll_loss(probabilities.log().flatten(0, 1), classes[index].gather(1, ray).flatten())
        optimizer.zero_grad(set_to_none=True)
        (rgb_loss + cfg.semantic_weight * semantic_loss).backward()
        optimizer.step()
        schedule.step()
    seconds = time.perf_counter() - start
    model.generator.eval()

    with torch.no_grad():
        labels = torch.cat(
            [render_semantics(model.generator, model.ws(torch.tensor([i])), eval_cams) for i in range(cfg.identities)]
        ).argmax(dim=1)
        # Baseline: each identity's true masks predicted by the next identity's (a shape prior of the data).
        shifted = test.semantics.roll(eval_views, dims=0)
    result = {
        "identities": seeds,
        "resolution": cfg.resolution,
        "steps": cfg.steps,
        "train_seconds": seconds,
        "generator_parameters": sum(p.numel() for p in model.generator.parameters()),
        "test_views_miou": float(mean_iou(labels, test.semantics, NUM_SEMANTIC_CLASSES)),
        "test_views_miou_per_identity": [
            float(mean_iou(labels[rows], test.semantics[rows], NUM_SEMANTIC_CLASSES))
            for rows in torch.arange(cfg.identities * eval_views).split(eval_views)
        ],
        "test_views_class_iou": {
            CELEBAMASK_HQ_CLASSES[k]: round(float(iou), 4)
            for k, iou in enumerate(class_iou(labels, test.semantics, NUM_SEMANTIC_CLASSES))
            if not iou.isnan()
        },
        "test_views_pixel_accuracy": float((labels == test.semantics).float().mean()),
        "baseline_other_identity_miou": float(mean_iou(shifted, test.semantics, NUM_SEMANTIC_CLASSES)),
        "baseline_background_only_miou": float(
            mean_iou(torch.zeros_like(test.semantics), test.semantics, NUM_SEMANTIC_CLASSES)
        ),
    }
    masks = test.semantics.reshape(cfg.identities, eval_views, *test.semantics.shape[1:])
    edits = [edit_experiment(cfg, model, eval_cams, eval_pairs, masks, *pair) for pair in edit_pairs(cfg)]
    result["edits"] = [summary for summary, _ in edits]
    result["edits_mean"] = {
        key: [sum(e[key][k] for e in result["edits"]) / len(edits) for k in range(2)]
        for key in ("edited_view_iou_before_after", "other_views_mean_iou_before_after")
    }
    result["edits_other_views_improved"] = [
        sum(e["other_views_improved"] for e in result["edits"]),
        sum(e["other_views"] for e in result["edits"]),
    ]
    if cfg.output_dir:
        torch.save(model.state_dict(), Path(cfg.output_dir) / "fitted_heads.pt")
        save_pictures(Path(cfg.output_dir), cfg, model, eval_cams, labels, test.semantics, edits[0][1])
    return result


def edit_pairs(cfg: DictConfig) -> list[tuple[int, int]]:
    """(source, target) identity indices of the edits: the configured ones, or every ordered pair."""
    if cfg.edit.pairs == "all":
        return [(a, b) for a in range(cfg.identities) for b in range(cfg.identities) if a != b]
    return [tuple(pair) for pair in cfg.edit.pairs]


def edit_experiment(
    cfg: DictConfig,
    model: FittedHeads,
    cameras: Cameras,
    pairs: list[tuple[float, float]],
    masks: Tensor,
    source: int,
    target: int,
) -> tuple[dict, Tensor]:
    """Edit the source identity's geometry toward the target identity's frontal mask; IoU with the target's
    true masks (N, V, H, W) per view, before and after. Returns the summary and the edited ws (1, num_ws, w_dim)."""
    edited_view = pairs.index((0.0, 0.0))
    ws = model.ws(torch.tensor([source])).detach()
    edit = edit_geometry(
        model.generator,
        ws,
        cameras[[edited_view]],
        masks[target, edited_view][None],
        steps=cfg.edit.steps,
        lr=cfg.edit.lr,
        latent_space=cfg.edit.latent_space,
        latent_weight=cfg.edit.latent_weight,
    )
    before = render_semantics(model.generator, ws, cameras).argmax(dim=1)
    after = render_semantics(model.generator, edit.ws, cameras).argmax(dim=1)

    def iou(labels: Tensor, identity: int, view: int) -> float:
        return float(mean_iou(labels[view][None], masks[identity, view][None], NUM_SEMANTIC_CLASSES))

    per_view = [
        {
            "yaw_deg": round(math.degrees(yaw), 1),
            "pitch_deg": round(math.degrees(pitch), 1),
            "edited_view": view == edited_view,
            "iou_target_before": iou(before, target, view),
            "iou_target_after": iou(after, target, view),
            "iou_source_before": iou(before, source, view),
            "iou_source_after": iou(after, source, view),
        }
        for view, (yaw, pitch) in enumerate(pairs)
    ]
    others = [v for v in per_view if not v["edited_view"]]
    g = model.generator
    summary = {
        "source_identity": TEST_SEED_OFFSET + source,
        "target_identity": TEST_SEED_OFFSET + target,
        "true_masks_miou_source_vs_target": float(mean_iou(masks[source], masks[target], NUM_SEMANTIC_CLASSES)),
        "loss_first_last": [edit.losses[0], edit.losses[-1]],
        "appearance_unchanged": bool(torch.equal(g.split_ws(edit.ws)[1], g.split_ws(ws)[1])),
        "edited_view_iou_before_after": [
            per_view[edited_view]["iou_target_before"],
            per_view[edited_view]["iou_target_after"],
        ],
        "other_views_mean_iou_before_after": [
            sum(v["iou_target_before"] for v in others) / len(others),
            sum(v["iou_target_after"] for v in others) / len(others),
        ],
        "other_views_improved": sum(v["iou_target_after"] > v["iou_target_before"] for v in others),
        "other_views": len(others),
        "per_view": per_view,
    }
    return summary, edit.ws


@torch.no_grad()
def save_pictures(
    folder: Path, cfg: DictConfig, model: FittedHeads, cameras: Cameras, labels: Tensor, truth: Tensor, edited: Tensor
) -> None:
    """PNGs: predicted then true semantic maps (all identities x views); for the edit, rows of RGB and semantics of
    the source, the edited source, the target, and the source's geometry with the target's appearance."""
    from torchvision.utils import save_image

    views = len(cameras)
    save_image(colorize_labels(torch.cat([labels, truth])), folder / "semantics_predicted_then_true.png", nrow=views)
    g = model.generator
    source, target = (model.ws(torch.tensor([identity])) for identity in edit_pairs(cfg)[0])
    rows = [source, edited, target, swap_appearance(g, source, target)]
    rgb, semantics = [], []
    for ws in rows:
        params = g.field_params(ws, noise_mode="const").expand(views, -1, -1, -1, -1)
        out = g.synthesis(ws.expand(views, -1, -1), cameras, noise_mode="const", params=params)
        rgb.append((out.image_raw + 1) / 2 + (1 - out.opacity))  # white background
        semantics.append(colorize_labels(out.semantics.argmax(dim=1)))
    save_image(torch.cat(rgb).clamp(0, 1), folder / "edit_rgb.png", nrow=views)
    save_image(torch.cat(semantics), folder / "edit_semantics.png", nrow=views)


@hydra.main(version_base=None, config_path="../configs/eval", config_name="fit_semantic_heads")
def main(cfg: DictConfig) -> None:
    if cfg.output_dir:
        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    result = fit(cfg)
    print(json.dumps(result, indent=2))
    if cfg.output_json:
        Path(cfg.output_json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    check_command_line("fit_semantic_heads")
    main()
