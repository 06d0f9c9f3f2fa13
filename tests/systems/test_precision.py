"""bf16 mixed precision: training tracks float32, and the precision-critical parts stay float32."""

import lightning as L
import torch
from lightning.pytorch import Callback

from pix2nerf.data import FaceDataModule
from pix2nerf.networks import Discriminator
from pix2nerf.precision import autocast
from pix2nerf.systems import GAN3D

from ..factories import tiny_generator
from .test_gan import trainer

LOSSES = ("train/loss_g", "train/loss_d", "train/d_real", "train/d_fake")
LOSS_TOLERANCE = 0.02
"""Largest difference of a logged loss between bf16 and float32 over 6 steps (measured: 0.006; losses are ~1)."""


class LossRecorder(Callback):
    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, *args) -> None:
        self.history.append({k: float(trainer.callback_metrics[k]) for k in LOSSES})


def dual_system() -> tuple[GAN3D, FaceDataModule]:
    """Super-resolution and a dual discriminator: the antialiased resizes that bf16 once crashed on."""
    generator = tiny_generator(0, image_resolution=16, sr_channels=(8, 8))
    torch.manual_seed(1)
    discriminator = Discriminator(img_resolution=16, dual=True, channel_base=64, channel_max=8, mapping_layers=1)
    adam = lambda params: torch.optim.Adam(params, lr=0.002, betas=(0.0, 0.99))  # noqa: E731
    system = GAN3D(generator, discriminator, adam, adam, r1_interval=2, density_reg_interval=2, num_val_latents=1)
    data = FaceDataModule(resolution=16, batch_size=4, num_identities=8, epoch_length=24, val_size=4)
    return system, data


def train(precision: str, tmp_path) -> list[dict[str, float]]:
    L.seed_everything(0)
    system, data = dual_system()
    recorder = LossRecorder()
    trainer(
        tmp_path / precision, max_epochs=1, precision=precision, enable_checkpointing=False, callbacks=[recorder]
    ).fit(system, data)
    return recorder.history


def test_bf16_training_tracks_fp32(tmp_path):
    fp32, bf16 = train("32-true", tmp_path), train("bf16-mixed", tmp_path)
    assert len(fp32) == len(bf16) == 6
    differences = [abs(a[key] - b[key]) for a, b in zip(fp32, bf16, strict=True) for key in LOSSES]
    assert max(differences) < LOSS_TOLERANCE, differences
    assert max(differences) > 0  # bf16 really ran


def test_r1_pass_runs_in_float32_inside_bf16_autocast():
    system, _ = dual_system()
    image, raw = torch.rand(4, 3, 16, 16) * 2 - 1, torch.rand(4, 3, 8, 8) * 2 - 1
    camera = torch.zeros(4, 25)
    with autocast("bf16", "cpu"):
        assert system.discriminator(image, camera, raw).logits.dtype == torch.bfloat16
        with system.r1_precision(run_r1=True):
            assert system.discriminator(image, camera, raw).logits.dtype == torch.float32
        with system.r1_precision(run_r1=False):
            assert system.discriminator(image, camera, raw).logits.dtype == torch.bfloat16
