"""Callbacks added by default: by the ``pix2nerf`` CLI (:class:`AdaptiveThreads`) and by the systems themselves
(:class:`SampleGrids`, through ``LightningModule.configure_callbacks``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor

from pix2nerf.data.semantics import colorize_labels
from pix2nerf.runtime import adapt_threads

SAMPLES_KEY = "samples"
"""The key of a validation step's output that holds the sample grid (:meth:`GAN3D.sample_grid`)."""


class AdaptiveThreads(Callback):
    """Re-check the CPU thread count before every batch (see :mod:`pix2nerf.runtime`): all free cores on a quiet
    machine, fewer when other processes (data workers included) compete, so a shared CPU never collapses."""

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        adapt_threads()

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        adapt_threads()

    def on_test_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        adapt_threads()


class SampleGrids(Callback):
    """Write the sample grid a validation step returns under ``"samples"`` (:meth:`GAN3D.sample_grid`): RGB, depth
    (and semantic) grids go to loggers that take images (W&B, TensorBoard) and, on rank zero, to PNGs in the run
    folder: ``samples/step_NNNNNNN.png``, ``..._depth.png``, ``..._semantics.png`` (``NNNNNNN``: the system's
    training step)."""

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if isinstance(outputs, Mapping) and SAMPLES_KEY in outputs:
            step = int(getattr(pl_module, "step_count", trainer.global_step))
            self.write(trainer, sample_pictures(outputs[SAMPLES_KEY]), step)

    @staticmethod
    def write(trainer: Trainer, pictures: dict[str, Tensor], step: int) -> None:
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image("samples", list(pictures.values()), caption=list(pictures))
            elif hasattr(logger, "experiment") and hasattr(logger.experiment, "add_image"):
                for name, picture in pictures.items():
                    logger.experiment.add_image("samples" if name == "rgb" else name, picture, trainer.global_step)
        # Rank zero only, and without ``trainer.log_dir``: that property is a collective call under DDP.
        run_folder = trainer.logger.log_dir if trainer.logger is not None else trainer.default_root_dir
        if trainer.is_global_zero and run_folder is not None:
            from torchvision.utils import save_image

            folder = Path(run_folder) / "samples"
            folder.mkdir(parents=True, exist_ok=True)
            for name, picture in pictures.items():
                suffix = "" if name == "rgb" else f"_{name}"
                save_image(picture, folder / f"step_{step:07d}{suffix}.png")


def sample_pictures(grid: Mapping[str, Any]) -> dict[str, Tensor]:
    """A sample grid's (N, V, ...) renders as (C, H, W) pictures in [0, 1], one row per latent: ``rgb``, ``depth``
    (near is bright) and, when the grid has them, ``semantics`` (colourised class ids)."""
    from torchvision.utils import make_grid

    v = grid["image"].shape[1]  # views per row
    images = make_grid(grid["image"].flatten(0, 1) * 0.5 + 0.5, nrow=v).clamp(0, 1)
    depth = grid["depth"].flatten(0, 1)
    lo, hi = depth.amin(), depth.amax()
    pictures = {"rgb": images, "depth": make_grid(1 - (depth - lo) / (hi - lo + 1e-8), nrow=v)}
    if "semantics" in grid:
        pictures["semantics"] = make_grid(colorize_labels(grid["semantics"].flatten(0, 1)), nrow=v)
    return pictures
