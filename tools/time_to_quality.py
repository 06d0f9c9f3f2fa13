"""Time-to-quality curves: a validation metric of several training runs against wall-clock hours and images seen.

    python tools/time_to_quality.py 'runs={pix2nerf: runs/A/version_0, multiview: runs/B/version_0}'

Hours and images come from the runs' logged ``train/hours`` (training wall-clock, validation included, summed over
resumed sessions) and ``train/images_seen``, at the last training log at or before each validation. Writes a PNG
(``output``) and prints the points.

A model trained in stages (each run started from the previous one's export, so its clock starts again at zero) is
one curve: give its runs as a list, ``'runs={model: [runs/A/version_0, runs/B/version_0]}'``; each stage starts
where the previous one ended. ``points=curve.csv`` also writes the points; that file can stand for the stages it
holds in a later call (its rows of the same label), so a curve grows across sessions without the old run folders.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import hydra
from omegaconf import DictConfig, ListConfig

from pix2nerf.inference import INPUT_ERROR_EXIT_CODE, InputError
from pix2nerf.inference.errors import check_command_line

POINTS_RUN = "run"
"""The column of a points file that names each row's curve."""


def stage_paths(paths: str | ListConfig) -> list[Path]:
    """A run's folder, or the folders of its stages in training order (a list in the config)."""
    return [Path(path) for path in paths] if isinstance(paths, ListConfig) else [Path(paths)]


@dataclass
class Curve:
    """A run's validation points: hours (N,), images seen (N,), metric values (N,)."""

    label: str
    hours: list[float]
    images: list[float]
    values: list[float]

    def points(self) -> Iterator[tuple[float, float, float]]:
        """(hours, images seen, value) of each point, in order."""
        return zip(self.hours, self.images, self.values, strict=True)


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a Lightning CSV log (a run folder or its metrics.csv)."""
    csv_path = path / "metrics.csv" if path.is_dir() else path
    if not csv_path.is_file():
        raise InputError(f"{csv_path} does not exist; pass a run folder with a metrics.csv (CSVLogger) or the file")
    with open(csv_path, newline="") as handle:
        return list(csv.DictReader(handle))


def read_stage(label: str, path: Path, metric: str) -> tuple[Curve, float, float]:
    """The metric's validation points of one run, each with the training hours and images seen at its step, and
    the run's last logged hours and images (where a following stage starts)."""
    rows = [row for row in read_rows(path) if row.get("step")]
    if rows and POINTS_RUN in rows[0]:  # a points file of this tool: its rows of this curve
        rows = [row for row in rows if row[POINTS_RUN] == label]
        if not rows:
            raise InputError(f"{path} holds no points of {label!r}; use the label it was written with")
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
    return curve, hours, images


def read_curve(label: str, paths: Sequence[Path], metric: str) -> Curve:
    """The points of a run, or of stages run one after another, each stage placed after the previous one's end."""
    curve, start_hours, start_images = Curve(label, [], [], []), 0.0, 0.0
    for path in paths:
        stage, hours, images = read_stage(label, path, metric)
        curve.hours += [start_hours + value for value in stage.hours]
        curve.images += [start_images + value for value in stage.images]
        curve.values += stage.values
        start_hours, start_images = start_hours + hours, start_images + images
    return curve


def write_points(curves: list[Curve], metric: str, path: Path) -> None:
    """Every curve's points as a CSV that :func:`read_curve` reads back as a stage (``run`` names the curve)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([POINTS_RUN, "step", "train/hours", "train/images_seen", metric])
        for curve in curves:
            for step, point in enumerate(curve.points()):
                writer.writerow([curve.label, step, *point])


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
        curves = [read_curve(label, stage_paths(paths), cfg.metric) for label, paths in cfg.runs.items()]
        output = Path(cfg.output)
        plot(curves, cfg, output)
        if cfg.points:
            write_points(curves, cfg.metric, Path(cfg.points))
    except InputError as error:
        print(f"time_to_quality: error: {error}", file=sys.stderr)
        sys.exit(INPUT_ERROR_EXIT_CODE)
    for curve in curves:
        for hours, images, value in curve.points():
            print(f"{curve.label:<16} {hours:8.3f} h {images:10.0f} images  {cfg.metric} {value:.3f}")
    print(f"wrote {output}" + (f" and {cfg.points}" if cfg.points else ""))
    if cfg.wandb.enabled:
        import wandb

        run = wandb.init(project=cfg.wandb.project, name=cfg.wandb.name, job_type="time_to_quality")
        table = wandb.Table(columns=["run", "hours", "images", cfg.metric])
        for curve in curves:
            for row in curve.points():
                table.add_data(curve.label, *row)
        run.log({"time_to_quality": wandb.Image(str(output)), "time_to_quality_points": table})
        run.finish()


if __name__ == "__main__":
    check_command_line("time_to_quality")
    main()
