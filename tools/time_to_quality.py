"""Time-to-quality curves: a validation metric of several training runs against wall-clock hours and images seen.

    python tools/time_to_quality.py 'runs={pix2nerf: runs/A/version_0, multiview: runs/B/version_0}'

Hours and images come from the runs' logged ``train/hours`` (training wall-clock, validation included, summed over
resumed sessions) and ``train/images_seen``, at the last training log at or before each validation. Writes a PNG
(``output``) and prints the points.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import hydra
from omegaconf import DictConfig

from pix2nerf.inference import INPUT_ERROR_EXIT_CODE, InputError
from pix2nerf.inference.errors import check_command_line


@dataclass
class Curve:
    """A run's validation points: hours (N,), images seen (N,), metric values (N,)."""

    label: str
    hours: list[float]
    images: list[float]
    values: list[float]


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a Lightning CSV log (a run folder or its metrics.csv)."""
    csv_path = path / "metrics.csv" if path.is_dir() else path
    if not csv_path.is_file():
        raise InputError(f"{csv_path} does not exist; pass a run folder with a metrics.csv (CSVLogger) or the file")
    with open(csv_path, newline="") as handle:
        return list(csv.DictReader(handle))


def read_curve(label: str, path: Path, metric: str) -> Curve:
    """The metric's validation points of one run, each with the training hours and images seen at its step."""
    rows = [row for row in read_rows(path) if row.get("step")]
    if not any(row.get("train/hours") for row in rows):
        raise InputError(f"{path} logs no train/hours (runs made before it was logged cannot be placed in time)")
    curve, hours, images = Curve(label, [], [], []), 0.0, 0.0
    for row in sorted(rows, key=lambda row: int(row["step"])):
        if row.get("train/hours"):
            hours, images = float(row["train/hours"]), float(row["train/images_seen"])
        if row.get(metric):
            curve.hours.append(hours)
            curve.images.append(images)
            curve.values.append(float(row[metric]))
    if not curve.values:
        raise InputError(f"{path} has no logged {metric!r}; pick a validation metric the run logs (metric=...)")
    return curve


def plot(curves: list[Curve], cfg: DictConfig, output: Path) -> None:
    """One line per run: metric against hours (images seen on the top axis of the first run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for curve in curves:
        axis.plot(curve.hours, curve.values, marker="o", markersize=3, label=curve.label)
    axis.set_xlabel("training wall-clock hours")
    axis.set_ylabel(cfg.ylabel)
    axis.set_title(cfg.title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output)
    plt.close(figure)


@hydra.main(version_base=None, config_path="../configs/eval", config_name="time_to_quality")
def main(cfg: DictConfig) -> None:
    try:
        curves = [read_curve(label, Path(path), cfg.metric) for label, path in cfg.runs.items()]
        output = Path(cfg.output)
        plot(curves, cfg, output)
    except InputError as error:
        print(f"time_to_quality: error: {error}", file=sys.stderr)
        sys.exit(INPUT_ERROR_EXIT_CODE)
    for curve in curves:
        for hours, images, value in zip(curve.hours, curve.images, curve.values, strict=True):
            print(f"{curve.label:<16} {hours:8.3f} h {images:10.0f} images  {cfg.metric} {value:.3f}")
    print(f"wrote {output}")
    if cfg.wandb.enabled:
        import wandb

        run = wandb.init(project=cfg.wandb.project, name=cfg.wandb.name, job_type="time_to_quality")
        table = wandb.Table(columns=["run", "hours", "images", cfg.metric])
        for curve in curves:
            for row in zip(curve.hours, curve.images, curve.values, strict=True):
                table.add_data(curve.label, *row)
        run.log({"time_to_quality": wandb.Image(str(output)), "time_to_quality_points": table})
        run.finish()


if __name__ == "__main__":
    check_command_line("time_to_quality")
    main()
