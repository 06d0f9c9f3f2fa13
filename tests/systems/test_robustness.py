"""Training refuses what would silently ruin a run: implausible camera labels, non-finite losses, non-finite weights."""

import json
import math
import re
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

import pix2nerf.systems.gan as gan
from pix2nerf.cli import DIVERGED_EXIT_CODE
from pix2nerf.data import DatasetFormatError, FaceDataModule
from pix2nerf.systems.gan import TrainingDivergedError

from ..data.test_eg3d import make_dataset
from .test_gan import BASE, TINY, run_cli, tiny_system, trainer

DIVERGING_STEP = 3
"""The training step the tests make diverge: steps 1 and 2 have saved checkpoints by then."""


class RememberLastCheckpoint(Callback):
    """Keep the bytes of ``last.ckpt`` and the checkpoint folder's listing as they are when ``DIVERGING_STEP``
    starts (the checkpoint of the step before is written by then)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.last, self.files = folder, b"", set()

    def on_train_batch_start(self, trainer, system, batch, batch_idx) -> None:
        if int(system.step_count) == DIVERGING_STEP - 1:
            self.last = (self.folder / "last.ckpt").read_bytes()
            self.files = {path.name for path in self.folder.iterdir()}


def saving_every_step(folder: Path) -> ModelCheckpoint:
    """``last.ckpt`` and a numbered checkpoint after every training step (one G and one D step: 2 global steps)."""
    return ModelCheckpoint(dirpath=folder, every_n_train_steps=2, save_last=True, save_top_k=-1)


def assert_kept(remembered: RememberLastCheckpoint) -> None:
    """The checkpoints are those of the steps before the divergence; ``last.ckpt`` is unchanged and finite."""
    folder = remembered.folder
    assert remembered.last and {path.name for path in folder.iterdir()} == remembered.files
    assert (folder / "last.ckpt").read_bytes() == remembered.last
    checkpoint = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)
    assert int(checkpoint["state_dict"]["step_count"]) == DIVERGING_STEP - 1
    assert all(tensor.isfinite().all() for _, tensor in gan.checkpoint_tensors(checkpoint))


def test_nan_camera_label_is_refused_when_the_data_loads(tmp_path):
    make_dataset(tmp_path / "ds", size=8, count=4)
    listing = tmp_path / "ds" / "dataset.json"
    labels = json.loads(listing.read_text())
    labels["labels"][1][1][3] = math.nan  # the x translation of the second image's camera
    listing.write_text(json.dumps(labels))
    system, _ = tiny_system()
    data = FaceDataModule(source="eg3d", path=str(tmp_path / "ds"), resolution=8, batch_size=2, val_size=2)
    message = r"ds/dataset.json: the label of 00000/img00000001.png is not finite; label \[.*nan"
    with pytest.raises(DatasetFormatError, match=message):
        trainer(tmp_path, max_steps=4).fit(system, data)
    assert int(system.step_count) == 0


def test_non_finite_loss_stops_training_at_that_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    system, data = tiny_system()
    real_loss = gan.discriminator_loss

    def diverging_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        loss = real_loss(real, fake)
        return loss * math.nan if int(system.step_count) == DIVERGING_STEP - 1 else loss

    monkeypatch.setattr(gan, "discriminator_loss", diverging_loss)
    remembered = RememberLastCheckpoint(tmp_path / "checkpoints")
    run = trainer(tmp_path, max_steps=20, callbacks=[remembered, saving_every_step(remembered.folder)])
    # Global step 2k - 1: the generator of step k has stepped, the discriminator has not.
    message = rf"^training step {DIVERGING_STEP} \(global step {2 * DIVERGING_STEP - 1}\): train/loss_d is nan;"
    with pytest.raises(TrainingDivergedError, match=message):
        run.fit(system, data)
    assert int(system.step_count) == DIVERGING_STEP - 1
    assert all(value.isfinite().all() for value in system.state_dict().values())  # refused before the D step
    assert_kept(remembered)


class PoisonGradient(Callback):
    """At ``DIVERGING_STEP``, turn one discriminator gradient into NaN: the losses stay finite, the weights do not."""

    def on_train_batch_start(self, trainer, system, batch, batch_idx) -> None:
        if int(system.step_count) == DIVERGING_STEP - 1:
            system.discriminator.out.weight.register_hook(lambda grad: grad * math.nan)


def test_non_finite_weights_are_never_saved(tmp_path):
    system, data = tiny_system()
    remembered = RememberLastCheckpoint(tmp_path / "checkpoints")
    callbacks = [remembered, PoisonGradient(), saving_every_step(remembered.folder)]
    message = (
        rf"^training step {DIVERGING_STEP} \(global step {2 * DIVERGING_STEP}\): discriminator\.out\.weight is "
        "not finite; refusing to save the checkpoint"
    )
    with pytest.raises(TrainingDivergedError, match=message):
        trainer(tmp_path, max_steps=20, callbacks=callbacks).fit(system, data)
    assert not system.discriminator.out.weight.isfinite().all()
    assert_kept(remembered)


def test_diverging_cli_run_exits_non_zero_with_the_step_and_the_loss(tmp_path):
    # A learning rate of 1e30 throws the generator's weights to +-1e30 in its first step: D's next fakes are NaN.
    result = run_cli(
        "fit", "-c", str(BASE), "-c", str(TINY), "--model.init_args.optimizer_g.init_args.lr=1e30", cwd=tmp_path
    )
    assert result.returncode == DIVERGED_EXIT_CODE and "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    expected = r"pix2nerf fit: error: training step 1 \(global step 1\): train/loss_d is nan; training stopped"
    assert re.search(expected, last_line), result.stderr[-3000:]
    assert not list((tmp_path / "runs").rglob("*.ckpt"))  # it diverged before the first checkpoint
