"""Callbacks the ``pix2nerf`` CLI always adds."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from pix2nerf.runtime import adapt_threads


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
