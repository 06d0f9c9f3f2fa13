"""FENeRF training: the semantic discriminator, its losses and the configs that wire it up."""

import lightning as L
import pytest
import torch
import yaml

from pix2nerf.cameras import look_at
from pix2nerf.data import FaceDataModule
from pix2nerf.data.heads import NUM_SEMANTIC_CLASSES
from pix2nerf.networks import Discriminator
from pix2nerf.systems import FENeRF

from ..factories import tiny_generator
from .test_gan import ROOT, TINY, run_cli, trainer

FENERF = ROOT / "configs" / "train" / "fenerf_synthetic_heads_64.yaml"
CELEBAMASK = ROOT / "configs" / "train" / "fenerf_celebamask.yaml"


def test_fit_logs_semantic_losses_and_saves_semantic_samples(tmp_path):
    result = run_cli("fit", "-c", str(FENERF), "-c", str(TINY), "--trainer.max_steps=4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "tiny" / "version_0"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["class_path"] == "pix2nerf.systems.FENeRF"
    assert saved["model"]["init_args"]["generator"]["init_args"]["decoupled_latents"] is True
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in ("train/semantic_g", "train/loss_semantic_d", "train/semantic_r1", "val/semantic_d_real"):
        assert name in header, name
    assert (run / "samples" / "step_0000002_semantics.png").exists()
    assert (run / "checkpoints" / "last.ckpt").exists()


def test_real_data_config_parses(capsys):
    from pix2nerf.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(FENERF), "-c", str(CELEBAMASK), "--print_config"])
    assert exit_info.value.code == 0
    data = yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]
    assert data["source"] == "eg3d" and data["with_semantics"] is True


def tiny_fenerf(**overrides) -> tuple[FENeRF, FaceDataModule]:
    generator = tiny_generator(num_semantic_classes=NUM_SEMANTIC_CLASSES, decoupled_latents=True)
    small = dict(img_resolution=8, channel_base=64, channel_max=8, mapping_layers=1)
    adam = lambda params: torch.optim.Adam(params, lr=0.01, betas=(0.0, 0.99))  # noqa: E731
    system = FENeRF(
        generator,
        Discriminator(**small),
        Discriminator(img_channels=NUM_SEMANTIC_CLASSES + 3, **small),
        adam,
        adam,
        adam,
        **{"semantic_r1_interval": 2, "blur_fade_steps": 2, "num_val_latents": 1, **overrides},
    )
    data = FaceDataModule(resolution=8, batch_size=4, num_identities=8, epoch_length=8, val_size=4)
    return system, data


def test_semantic_adversarial_loss_reaches_the_generator_through_semantics_only():
    system, _ = tiny_fenerf()
    c = look_at(torch.linspace(-0.3, 0.3, 4), torch.zeros(4)).label()
    fake = system.generate(c)
    system.auxiliary_generator_loss(fake, c).backward()
    decoder = system.generator.head.decoder
    assert decoder.geometry.weight.grad[1:].abs().sum() > 0  # semantic logits
    # RGB is detached for the semantic D: the colour branch learns nothing from it.
    assert all(p.grad is None or not p.grad.any() for p in decoder.colour.parameters())
    assert all(p.grad is None for p in system.semantic_discriminator.parameters())


def test_semantic_discriminator_sees_one_hot_real_masks():
    system, _ = tiny_fenerf()
    labels = torch.randint(0, NUM_SEMANTIC_CLASSES, (2, 16, 16))
    image = torch.rand(2, 3, 16, 16) * 2 - 1
    real = system.real_semantic_input({"semantics": labels, "image": image})
    classes = real[:, :NUM_SEMANTIC_CLASSES]
    assert real.shape == (2, NUM_SEMANTIC_CLASSES + 3, 8, 8)
    assert set(classes.unique().tolist()) == {-1.0, 1.0} and torch.equal(
        (classes > 0).sum(1), torch.ones(2, 8, 8).long()
    )
    assert torch.equal(classes.argmax(1), labels[:, ::2, ::2])  # nearest-neighbour downsampling keeps the labels
    with pytest.raises(ValueError, match="semantics"):
        system.real_semantic_input({"image": image})


def test_training_updates_all_three_networks(tmp_path):
    L.seed_everything(0)
    system, data = tiny_fenerf()
    before = {k: v.clone() for k, v in system.state_dict().items()}
    trainer(tmp_path, max_steps=2).fit(system, data)
    after = system.state_dict()
    for prefix in ("generator.", "discriminator.", "semantic_discriminator."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix)), prefix


def test_configuration_errors_are_explained():
    small = dict(img_resolution=8, channel_base=64, channel_max=8, mapping_layers=1)
    adam = lambda params: torch.optim.Adam(params)  # noqa: E731
    with pytest.raises(ValueError, match="num_semantic_classes"):
        FENeRF(tiny_generator(), Discriminator(**small), Discriminator(img_channels=22, **small), adam, adam, adam)
    with pytest.raises(ValueError, match="img_channels"):
        FENeRF(tiny_generator(num_semantic_classes=5), Discriminator(**small), Discriminator(**small), adam, adam, adam)
