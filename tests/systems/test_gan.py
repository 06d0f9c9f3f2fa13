"""GAN training through the Lightning CLI and the Python API: runs, checkpoints, resumes exactly."""

import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

from pix2nerf.data import FaceDataModule
from pix2nerf.networks import Discriminator
from pix2nerf.systems import GAN3D, SampleGrids
from pix2nerf.systems.gan import make_augmentation

from ..factories import tiny_generator

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "configs" / "train" / "synthetic_heads_64.yaml"
TINY = ROOT / "configs" / "train" / "tiny.yaml"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"WANDB_MODE": "disabled", "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    command = [sys.executable, "-m", "pix2nerf.cli", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


def test_fit_writes_checkpoint_and_config_then_validate_runs(tmp_path):
    result = run_cli("fit", "-c", str(BASE), "-c", str(TINY), "--trainer.max_steps=4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "tiny" / "version_0"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["class_path"] == "pix2nerf.systems.GAN3D"
    assert saved["trainer"]["max_steps"] == 4
    checkpoint = run / "checkpoints" / "last.ckpt"
    assert checkpoint.exists()
    metrics = (run / "metrics.csv").read_text()
    assert "train/loss_g" in metrics and "val/reprojection_error" in metrics
    samples = sorted(p.name for p in (run / "samples").iterdir())
    assert "step_0000002.png" in samples and "step_0000002_depth.png" in samples

    again = run_cli("fit", "-c", str(BASE), "-c", str(TINY), "--trainer.max_steps=2", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "runs" / "tiny" / "version_1" / "config.yaml").exists()  # runs never collide

    validated = run_cli("validate", "-c", str(BASE), "-c", str(TINY), f"--ckpt_path={checkpoint}", cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr[-3000:]
    assert "val/d_real" in validated.stdout


def tiny_system(seed: int = 0) -> tuple[GAN3D, FaceDataModule]:
    generator = tiny_generator(seed)
    discriminator = Discriminator(img_resolution=8, channel_base=64, channel_max=8, mapping_layers=1, pose_head=True)
    adam = lambda params: torch.optim.Adam(params, lr=0.01, betas=(0.0, 0.99))  # noqa: E731
    system = GAN3D(
        generator,
        discriminator,
        adam,
        adam,
        r1_interval=2,
        density_reg_interval=2,
        blur_fade_steps=3,
        pose_loss_weight=1.0,
        ema_half_life=20,
        num_val_latents=1,
    )
    data = FaceDataModule(resolution=8, batch_size=4, num_identities=8, epoch_length=8, val_size=4)
    return system, data


def trainer(tmp_path: Path, max_steps: int = -1, max_epochs: int | None = None, **overrides) -> L.Trainer:
    """A quiet CPU trainer without validation or logging; ``overrides`` are further Trainer arguments."""
    settings = dict(
        default_root_dir=tmp_path,
        accelerator="cpu",
        max_steps=max_steps,
        max_epochs=max_epochs,
        deterministic=True,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return L.Trainer(**{**settings, **overrides})


def state(system: GAN3D) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in system.state_dict().items()}


def test_resume_continues_exactly(tmp_path):
    L.seed_everything(0)
    straight, data = tiny_system()
    trainer(tmp_path / "a", max_epochs=2).fit(straight, data)  # 2 epochs of 2 batches

    L.seed_everything(0)
    first, data = tiny_system()
    half = trainer(tmp_path / "b", max_epochs=1)
    half.fit(first, data)
    checkpoint = tmp_path / "half.ckpt"
    half.save_checkpoint(checkpoint)
    resumed, data = tiny_system(seed=123)  # different initial weights: everything must come from the file
    trainer(tmp_path / "c", max_epochs=2).fit(resumed, data, ckpt_path=checkpoint)

    expected, actual = state(straight), state(resumed)
    assert int(actual["step_count"]) == 4 and int(actual["images_seen"]) == 16
    assert resumed.training_seconds > first.training_seconds > 0  # training time accumulates across sessions
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], atol=1e-6, rtol=1e-5, msg=key)


VALIDATING = dict(limit_val_batches=1, val_check_interval=1, num_sanity_val_steps=0)
"""Trainer settings that validate after every training step, also between a checkpoint and the next step."""


def optimizer_states(run: L.Trainer) -> list[torch.Tensor]:
    return [v for o in run.optimizers for state in o.state_dict()["state"].values() for v in state.values()]


@pytest.mark.parametrize(
    "saving",
    [
        # last.ckpt when a training step ends, before the validation that follows (which a resumed run skips)
        dict(every_n_train_steps=2),
        dict(save_on_train_epoch_end=False),  # last.ckpt when a validation ends
    ],
)
def test_resume_continues_exactly_with_validation_on(tmp_path, saving):
    L.seed_everything(0)
    straight, data = tiny_system()
    uninterrupted = trainer(tmp_path / "a", max_epochs=2, **VALIDATING)  # 2 epochs of 2 batches
    uninterrupted.fit(straight, data)

    L.seed_everything(0)
    first, data = tiny_system()
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "b", save_last=True, **saving)
    trainer(tmp_path / "b", max_epochs=1, callbacks=[checkpoints], **VALIDATING).fit(first, data)
    resumed, data = tiny_system(seed=123)
    continued = trainer(tmp_path / "c", max_epochs=2, **VALIDATING)
    continued.fit(resumed, data, ckpt_path=tmp_path / "b" / "last.ckpt")

    expected, actual = state(straight), state(resumed)
    assert int(actual["step_count"]) == 4 and expected.keys() == actual.keys()
    for key in expected:  # generator, EMA, discriminator and counters
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0, msg=key)
    for got, want in zip(optimizer_states(continued), optimizer_states(uninterrupted), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_validation_leaves_the_training_rng_stream_untouched(tmp_path):
    system, data = tiny_system()
    before = torch.get_rng_state()
    trainer(tmp_path, limit_val_batches=1).validate(system, data)  # the loader's iteration and the step's draws
    assert torch.equal(torch.get_rng_state(), before)


def test_training_changes_both_networks_and_ema_lags(tmp_path):
    L.seed_everything(0)
    system, data = tiny_system()
    before = state(system)
    trainer(tmp_path, max_steps=4).fit(system, data)
    after = state(system)
    changed = lambda prefix: any(  # noqa: E731
        not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix) and before[k].is_floating_point()
    )
    assert changed("generator.") and changed("discriminator.") and changed("generator_ema.")
    weight = "generator.head.decoder.net.0.weight"
    live_step = (after[weight] - before[weight]).norm()
    ema_step = (after["generator_ema." + weight[len("generator.") :]] - before[weight]).norm()
    assert 0 < ema_step < live_step


@pytest.mark.slow
def test_ddp_on_cpu_with_two_processes(tmp_path):
    result = run_cli(
        "fit",
        "-c",
        str(BASE),
        "-c",
        str(TINY),
        "--trainer.max_steps=4",
        "--trainer.strategy=ddp_find_unused_parameters_true",
        "--trainer.devices=2",
        "--trainer.accelerator=cpu",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "runs" / "tiny" / "version_0" / "checkpoints" / "last.ckpt").exists()


@pytest.mark.parametrize("overlay", ["tiny.yaml", "cpu_32.yaml", "ffhq_eg3d.yaml", "celeba_prior.yaml"])
def test_every_training_config_parses(overlay, capsys):
    from pix2nerf.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(BASE), "-c", str(ROOT / "configs" / "train" / overlay), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "pix2nerf.systems.GAN3D"
    assert printed["model"]["init_args"]["generator"]["class_path"] == "pix2nerf.networks.Generator"


def test_augmentation_changes_d_inputs_and_keeps_gradients():
    system, _ = tiny_system()
    system.hparams.augment_p = 1.0
    system.augmentation = make_augmentation(1.0)
    pixels = torch.rand(4, 3, 8, 8, requires_grad=True)
    images = pixels * 2 - 1
    c = torch.zeros(4, 25)
    c[:, :16] = torch.eye(4).flatten()
    system.train()
    augmented = system.discriminate(images, None, c).logits
    system.eval()
    plain = system.discriminate(images, None, c).logits
    assert not torch.allclose(augmented, plain)
    augmented.sum().backward()
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0


def test_compiled_synthesis_trains_and_computes_what_eager_does(tmp_path):
    L.seed_everything(0)
    system, data = tiny_system()
    system.hparams.compile_networks = True
    before = state(system)
    trainer(tmp_path, max_steps=4).fit(system, data)
    after = state(system)
    assert after.keys() == before.keys()  # checkpoints unchanged by compiling
    synthesis = system.generator.backbone.synthesis
    changed = [
        k for k in after if k.startswith("generator.backbone.synthesis.") and not torch.equal(after[k], before[k])
    ]
    assert changed and all(torch.isfinite(after[k]).all() for k in changed)
    assert synthesis._compiled_call_impl is not None  # nn.Module.compile() was applied
    ws = torch.randn(2, synthesis.num_ws, synthesis.w_dim)
    with torch.no_grad():
        compiled, eager = synthesis(ws, "const"), synthesis.forward(ws, "const")  # forward() bypasses the compiled call
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("subcommand", "data"), [("fit", "missing"), ("validate", "corrupt")])
def test_unreadable_data_ends_the_cli_with_one_line(tmp_path, subcommand, data):
    """A missing data path or a corrupt dataset.json: the data module's message, exit code 2, no empty run folder."""
    path = tmp_path / "faces"
    if data == "corrupt":
        path.mkdir()
        (path / "dataset.json").write_text('{"labels": [["img00000000.png", [1.0, 0.0')  # truncated
    options = ["-c", str(BASE), "-c", str(TINY), "--data.init_args.source=eg3d", f"--data.init_args.path={path}"]
    result = run_cli(subcommand, *options, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    expected = f"data set not found: {path}" if data == "missing" else f"{path}/dataset.json"
    assert errors == [result.stderr.splitlines()[-1]] and errors[0].startswith(f"pix2nerf {subcommand}: error: ")
    assert expected in errors[0]
    assert sorted(tmp_path.iterdir()) == ([path] if data == "corrupt" else [])  # no (empty) runs/tiny/version_0


def test_sample_grids_callback_writes_the_grids_validation_returns(tmp_path):
    """The system adds :class:`SampleGrids` itself; it writes the first validation batch's grid as PNGs."""
    system, data = tiny_system()
    run = trainer(tmp_path, max_steps=1, enable_checkpointing=False, **VALIDATING)
    run.fit(system, data)
    assert sum(isinstance(callback, SampleGrids) for callback in run.callbacks) == 1
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_0000001.png", "step_0000001_depth.png"]
