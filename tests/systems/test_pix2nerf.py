"""Pix2NeRF: each loss term, the warm-up gating, a tiny learning check and the CLI."""

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from pix2nerf.cameras import FACE_PRIOR, PosePrior
from pix2nerf.data import FaceDataModule
from pix2nerf.errors import InputError
from pix2nerf.inference import save_bundle
from pix2nerf.io import load_encoder_bundle, load_generator_bundle
from pix2nerf.metrics import pose_error_degrees
from pix2nerf.networks import Discriminator, Encoder, Generator, PlaneResidual
from pix2nerf.networks.residual import check_residual_fits
from pix2nerf.systems import Pix2NeRF

from ..factories import BUNDLED_MODEL, tiny_generator
from .test_gan import ROOT, TINY, run_cli, trainer

PIX2NERF = ROOT / "configs" / "train" / "pix2nerf_synthetic_heads_64.yaml"
PIX2NERF_TINY = ROOT / "configs" / "train" / "pix2nerf_tiny.yaml"


MULTIVIEW_ONLY = dict(
    adversarial_weight=0.0,
    latent_weight=0.0,
    pose_weight=0.0,
    lpips_weight=0.0,
    multiview_weight=1.0,
    depth_weight=1.0,
    opacity_weight=1.0,
)
"""Weights that train on the exact multi-view terms alone."""


def tiny_pix2nerf(
    lr: float = 0.003, num_semantic_classes: int = 0, image_resolution: int = 16, **overrides
) -> Pix2NeRF:
    """A tiny system rendering at 16^2; a larger ``image_resolution`` adds a super-resolution."""
    superresolution = {} if image_resolution == 16 else {"image_resolution": image_resolution, "sr_channels": (8, 8)}
    generator = tiny_generator(
        neural_resolution=16,
        num_coarse=6,
        num_importance=6,
        num_semantic_classes=num_semantic_classes,
        **superresolution,
    )
    discriminator = Discriminator(img_resolution=image_resolution, channel_base=64, channel_max=8, mapping_layers=1)
    encoder = Encoder(img_resolution=16, num_ws=generator.num_ws, w_dim=8, channel_base=128, channel_max=16)
    adam = lambda params: torch.optim.Adam(params, lr=lr)  # noqa: E731
    settings = dict(lpips_offline_random=True, num_val_latents=1, warmup_steps=1, encoder_augment_p=0.0)
    return Pix2NeRF(generator, discriminator, encoder, adam, adam, adam, **{**settings, **overrides})


def test_reconstruction_loss_vanishes_for_identical_images_and_grows_with_error():
    system = tiny_pix2nerf()
    real = torch.rand(2, 3, 16, 16) * 2 - 1
    same = system.reconstruction_loss(real, real)
    assert same["mse"] == 0 and same["ssim"].abs() < 1e-4 and same["lpips"].abs() < 1e-5
    other = system.reconstruction_loss(real, -real)
    assert other["mse"] > 1 and other["ssim"] > 0.5 and other["lpips"] > 0


def test_inversion_loss_trains_the_encoder_only():
    system = tiny_pix2nerf()
    losses = system.inversion_loss(4, torch.device("cpu"))
    (losses["latent"] + losses["pose"]).backward()
    assert all(p.grad is not None for p in system.encoder.parameters())
    assert all(p.grad is None for p in system.generator.parameters())


def test_conditional_adversarial_loss_reaches_the_latent():
    system = tiny_pix2nerf()
    w = system.generator.mapping(torch.randn(2, 8), torch.zeros(2, 25)).detach().requires_grad_()
    loss = system.conditional_adversarial_loss(w)
    loss.backward()
    assert torch.isfinite(loss) and w.grad.abs().sum() > 0


def fit(system: Pix2NeRF, tmp_path: Path, steps: int) -> None:
    data = FaceDataModule(resolution=16, batch_size=4, num_identities=4, epoch_length=8, val_size=2)
    trainer(tmp_path, max_steps=3 * steps, enable_checkpointing=False).fit(system, data)


@pytest.mark.parametrize("warmup_steps, encoder_changes", [(100, False), (0, True)])
def test_warmup_keeps_reconstruction_and_adversarial_terms_off_the_encoder(tmp_path, warmup_steps, encoder_changes):
    system = tiny_pix2nerf(warmup_steps=warmup_steps, latent_weight=0.0, pose_weight=0.0)
    before = {k: v.clone() for k, v in system.encoder.state_dict().items()}
    fit(system, tmp_path, steps=1)
    changed = any(not torch.equal(before[k], v) for k, v in system.encoder.state_dict().items())
    assert changed == encoder_changes


def test_encoder_learns_poses_of_generated_images():
    """A short CPU run: pose error on fresh generated images drops well below the prior's spread.

    The untrained generator renders its average latent (truncation 0), made strong and dense, so the
    images are views of one fixed, visible, textured 3D object and pose is what distinguishes them.
    """
    system = tiny_pix2nerf(inversion_truncation_psi=0.0)
    with torch.no_grad():
        system.generator.head.decoder.net[2].bias[0] += 3.0
        system.generator.backbone.mapping.w_avg.normal_().mul_(10.0)
    torch.manual_seed(1)
    optimizer = torch.optim.Adam(system.encoder.parameters(), lr=0.003)

    def pose_error() -> float:
        with torch.no_grad():
            angles = torch.stack(
                [torch.randn(64) * FACE_PRIOR.yaw_spread, torch.randn(64) * FACE_PRIOR.pitch_spread], 1
            )
            ws = system.generator.mapping(torch.randn(64, 8), torch.zeros(64, 25), truncation_psi=0.0)
            images = system.render(ws, angles).image
            return pose_error_degrees(system.encode(images).yaw_pitch, angles).mean().item()

    frontal_guess = math.degrees(math.hypot(FACE_PRIOR.yaw_spread, FACE_PRIOR.pitch_spread)) * math.sqrt(math.pi) / 2
    before = pose_error()
    for _ in range(150):
        loss = system.inversion_loss(16, torch.device("cpu"))["pose"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = pose_error()
    assert after < 0.5 * frontal_guess, (before, after, frontal_guess)


def perturbed_pix2nerf() -> Pix2NeRF:
    """A tiny system whose weights differ from a fresh ``tiny_pix2nerf()``'s."""
    source = tiny_pix2nerf()
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    return source


def test_gan_checkpoint_loads_when_fit_starts_and_mismatch_is_clear(tmp_path):
    source = perturbed_pix2nerf()
    path = tmp_path / "gan.ckpt"
    with pytest.raises(ValueError, match="not both"):
        tiny_pix2nerf(gan_checkpoint=str(path), generator_bundle=str(path))
    loaded = tiny_pix2nerf(gan_checkpoint=str(path))  # the constructor reads no file: it need not exist yet
    torch.save({"state_dict": source.state_dict()}, path)
    loaded.setup("validate")
    assert not torch.equal(
        loaded.generator.state_dict()["head.decoder.net.0.weight"],
        source.generator.state_dict()["head.decoder.net.0.weight"],
    )
    loaded.setup("fit")
    torch.testing.assert_close(loaded.generator.state_dict(), source.generator.state_dict())
    torch.testing.assert_close(loaded.discriminator.state_dict(), source.discriminator.state_dict())
    torch.save({"state_dict": {"generator.head.decoder.net.0.weight": torch.zeros(3, 3)}}, path)
    mismatched = tiny_pix2nerf(gan_checkpoint=str(path))
    with pytest.raises((ValueError, RuntimeError), match="generator"):
        mismatched.setup("fit")


def test_fit_starts_from_a_gan_checkpoint(tmp_path):
    source = perturbed_pix2nerf()
    path = tmp_path / "gan.ckpt"
    torch.save({"state_dict": source.state_dict()}, path)
    system = tiny_pix2nerf(gan_checkpoint=str(path), generator_mode="freeze")
    fit(system, tmp_path, steps=1)  # a frozen G keeps the checkpoint's weights
    torch.testing.assert_close(system.generator.state_dict(), source.generator.state_dict())


def test_bundles_load_when_fit_starts(tmp_path):
    source = perturbed_pix2nerf()
    path = save_bundle(source.face_model(), tmp_path / "model.safetensors", half_precision=False)
    system = tiny_pix2nerf(generator_bundle=str(path), encoder_bundle=str(path))
    assert not torch.equal(system.encoder.state_dict()["w_head.weight"], source.encoder.state_dict()["w_head.weight"])
    system.setup("fit")
    torch.testing.assert_close(system.generator.state_dict(), source.generator_ema.state_dict())
    torch.testing.assert_close(system.generator_ema.state_dict(), source.generator_ema.state_dict())
    torch.testing.assert_close(system.encoder.state_dict(), source.encoder.state_dict())
    missing = tiny_pix2nerf(encoder_bundle=str(tmp_path / "missing.safetensors"))
    with pytest.raises((FileNotFoundError, InputError)):
        missing.setup("fit")


def test_fit_grows_a_bundle_to_a_larger_output_when_asked(tmp_path):
    source = perturbed_pix2nerf()
    path = save_bundle(source.face_model(), tmp_path / "model.safetensors", half_precision=False)
    with pytest.raises(ValueError, match="grows the generator of generator_bundle"):
        tiny_pix2nerf(image_resolution=32, grow_superresolution=True)
    with pytest.raises(InputError, match="image_resolution"):
        tiny_pix2nerf(image_resolution=32, generator_bundle=str(path)).setup("fit")
    system = tiny_pix2nerf(image_resolution=32, generator_bundle=str(path), grow_superresolution=True)
    system.setup("fit")
    for generator in (system.generator, system.generator_ema):
        grown = generator.state_dict()
        for key, value in source.generator_ema.state_dict().items():
            assert torch.equal(grown[key], value), key


def test_novel_prior_accepts_the_mapping_saved_hyperparameters_hold():
    """Hyperparameters saved by the CLI hold the prior as a dict; rebuilding a system from them must work."""
    prior = PosePrior(kind="uniform", yaw_spread=0.5)
    system = tiny_pix2nerf(novel_prior=dataclasses.asdict(prior))
    assert system.novel_prior == prior and system.camera_prior == prior
    assert tiny_pix2nerf(novel_prior={"yaw_spread": 0.2}).novel_prior == PosePrior(yaw_spread=0.2)
    assert tiny_pix2nerf(novel_prior=prior).novel_prior is prior


def test_cli_trains_pix2nerf(tmp_path):
    result = run_cli(
        "fit", "-c", str(PIX2NERF), "-c", str(TINY), "-c", str(PIX2NERF_TINY), "--trainer.max_steps=6", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = (tmp_path / "runs" / "tiny" / "version_0" / "metrics.csv").read_text()
    for name in ("train/latent", "train/lpips", "val/novel_psnr", "val/pose_error_deg", "val/recon_depth_mae"):
        assert name in metrics
    checkpoint = tmp_path / "runs" / "tiny" / "version_0" / "checkpoints" / "last.ckpt"
    test = run_cli(
        "test",
        *("-c", str(PIX2NERF), "-c", str(TINY), "-c", str(PIX2NERF_TINY)),
        "--data.init_args.test_size=2",
        f"--ckpt_path={checkpoint}",
        cwd=tmp_path,
    )
    assert test.returncode == 0, test.stderr[-3000:]
    for name in ("test/novel_psnr", "test/pose_error_deg", "test/recon_depth_silog", "test/reprojection_error"):
        assert name in test.stdout


@pytest.mark.parametrize(
    "overlays",
    [
        (),
        ("tiny.yaml", "pix2nerf_tiny.yaml"),
        ("cpu_32.yaml", "pix2nerf_cpu_32.yaml"),
        ("ffhq_eg3d.yaml", "pix2nerf_ffhq.yaml"),
        ("multiview.yaml", "hybrid.yaml"),
        ("teacher.yaml",),
        ("cpu_32.yaml", "pix2nerf_cpu_32.yaml", "multiview.yaml", "hybrid.yaml", "hybrid_cpu_32.yaml"),
        ("fast_sampling.yaml",),
        ("cpu_32.yaml", "pix2nerf_cpu_32.yaml", "multiview.yaml", "hybrid.yaml", "hybrid_cpu_32.yaml", "cpu_64.yaml"),
    ],
)
def test_pix2nerf_configs_build_matching_networks(overlays, capsys):
    """Every Pix2NeRF config parses, and its encoder's latent layout (and plane residual) matches its generator's."""
    import yaml

    from pix2nerf.cli import main

    files = [str(PIX2NERF)] + [str(ROOT / "configs" / "train" / name) for name in overlays]
    with pytest.raises(SystemExit):
        main(["fit", *[arg for f in files for arg in ("-c", f)], "--print_config"])
    model = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]
    generator = Generator(**model["generator"]["init_args"])
    encoder = model["encoder"]["init_args"]
    assert (encoder["num_ws"], encoder["w_dim"]) == (generator.num_ws, generator.w_dim)
    residual = (model.get("residual") or {}).get("init_args")
    if "hybrid.yaml" in overlays:
        check_residual_fits(PlaneResidual(**residual), generator)
    if "fast_sampling.yaml" in overlays:
        assert (generator.coarse_stride, generator.renderer.num_coarse, generator.renderer.num_importance) == (
            2,
            32,
            16,
        )
    if "cpu_64.yaml" in overlays:  # the bundled model's networks (its encoder is w+)
        model["encoder"]["init_args"]["w_plus"] = True
        load_generator_bundle(BUNDLED_MODEL, generator)
        load_encoder_bundle(BUNDLED_MODEL, Encoder(**model["encoder"]["init_args"]), PlaneResidual(**residual))
        assert generator.image_resolution == 64 and generator.neural_resolution == 32


def test_multiview_loss_is_zero_only_for_the_exact_views_and_reaches_both_networks():
    system = tiny_pix2nerf(multiview_weight=1.0, depth_weight=1.0, opacity_weight=1.0)
    data = FaceDataModule(resolution=16, batch_size=2, num_identities=2, epoch_length=2, target_views=2)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    w = system.encode(batch["image"]).w
    losses = system.multiview_loss(w, batch)
    assert set(losses) == {"multiview_l1", "depth", "opacity"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in system.encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in system.generator.parameters())
    without_targets = {k: v for k, v in batch.items() if not k.startswith("target_")}
    with pytest.raises(ValueError, match="target_views > 0"):
        system.multiview_loss(w, without_targets)


def test_multiview_training_lowers_the_novel_view_error_of_one_head(tmp_path):
    """30 reconstruct-mode steps on one identity: its unseen +-0.45 rad views get closer to the truth."""
    from pix2nerf.data.synthetic import HeadView, render_views

    torch.manual_seed(0)
    system = tiny_pix2nerf(
        lr=0.03,
        generator_mode="reconstruct",
        **MULTIVIEW_ONLY,
        exact_pose_weight=1.0,
        ema_half_life=1e-3,  # EMA follows the live generator: the test measures learning, not averaging
    )
    source, _ = render_views([HeadView(0, 0.0, 0.0)], 16, FACE_PRIOR, True)
    novel = torch.tensor([[-0.45, 0.0], [0.45, 0.0]])
    truth, _ = render_views([HeadView(0, *angles) for angles in novel.tolist()], 16, FACE_PRIOR, True)

    def novel_error() -> float:
        with torch.no_grad():
            w = system.encoder(source.image, system.generator.backbone.mapping.w_avg).w
            return (system.render(w.expand(2, -1, -1), novel).image - truth.image).abs().mean().item()

    before = novel_error()
    data = FaceDataModule(resolution=16, batch_size=4, num_identities=1, epoch_length=120, target_views=3)
    trainer(tmp_path, max_epochs=1, enable_checkpointing=False).fit(system, data)
    after = novel_error()
    assert after < 0.75 * before, (before, after)  # measured 0.469 -> 0.313


def test_reconstruct_mode_refuses_an_adversarial_weight():
    with pytest.raises(ValueError, match="set adversarial_weight to 0"):
        tiny_pix2nerf(generator_mode="reconstruct", adversarial_weight=0.1)


def test_stage2_residual_learns_what_a_frozen_stage1_misses(tmp_path):
    """Stage 2 on a fixed encoder and generator: only the residual changes, and the exact views get closer."""
    torch.manual_seed(0)
    residual = PlaneResidual(16, 8, 4, channels=8, channel_max=16)  # the tiny generator's 8^2 x 4 planes
    system = tiny_pix2nerf(lr=0.01, residual=residual, freeze_encoder=True, generator_mode="freeze", **MULTIVIEW_ONLY)
    data = FaceDataModule(resolution=16, batch_size=2, num_identities=2, epoch_length=60, target_views=2)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))

    def multiview_error() -> float:
        with torch.no_grad():
            encoded = system.encode(batch["image"])
            return system.multiview_loss(encoded.w, batch, system.plane_offsets(batch["image"], encoded))[
                "multiview_l1"
            ].item()

    frozen = {k: v.clone() for k, v in [*system.encoder.state_dict().items(), *system.generator.state_dict().items()]}
    before = multiview_error()
    trainer(tmp_path, max_epochs=1, enable_checkpointing=False).fit(system, data)
    after = multiview_error()
    state = {**system.encoder.state_dict(), **system.generator.state_dict()}
    assert all(torch.equal(frozen[k], state[k]) for k in frozen)
    assert after < 0.85 * before, (before, after)  # measured 0.567 -> 0.412
    assert "residual" in system.network_specs()


def test_freeze_encoder_needs_a_residual_and_the_residual_must_fit():
    with pytest.raises(ValueError, match="pass a residual"):
        tiny_pix2nerf(freeze_encoder=True)
    with pytest.raises(ValueError, match="plane_resolution=8"):
        tiny_pix2nerf(residual=PlaneResidual(16, 16, 4))


def test_generator_teacher_views_are_exact_for_the_teachers_own_latents():
    """(6)'s views are renders of the teacher's latents: the teacher's ws reproduce them exactly, other ws do not."""
    system = tiny_pix2nerf(generator_teacher_views=2, multiview_weight=1.0, depth_weight=1.0, opacity_weight=1.0)
    system.eval()  # no ray jitter: the student must render exactly as the teacher did
    torch.manual_seed(0)
    teacher = system.teacher_views(3, torch.device("cpu"))
    assert teacher.batch["target_image"].shape == (3, 2, 3, 16, 16)
    assert teacher.batch["target_depth"].shape[:2] == (3, 2) and teacher.batch["mask"].dtype == torch.bool
    with torch.no_grad():
        own = system.multiview_loss(teacher.ws, teacher.batch)
        other = system.multiview_loss(teacher.ws.roll(1, dims=0), teacher.batch)
    assert own["multiview_l1"] < 1e-5 and own["depth"] < 1e-5
    assert other["multiview_l1"] > 1e-3


def test_semantic_cross_entropy_is_lowest_for_the_teachers_own_latents_and_reaches_both_networks():
    """Semantic generators: (5) adds the cross-entropy against label maps; the teacher's class maps are its own
    latents' most likely classes, so its ws score lower than other ws."""
    system = tiny_pix2nerf(num_semantic_classes=5, generator_teacher_views=2, multiview_weight=1.0, semantic_weight=1.0)
    system.eval()
    torch.manual_seed(0)
    teacher = system.teacher_views(3, torch.device("cpu"))
    assert teacher.batch["target_semantics"].shape == (3, 2, 16, 16)
    with torch.no_grad():
        own = system.multiview_loss(teacher.ws, teacher.batch)["semantic"]
        other = system.multiview_loss(teacher.ws.roll(1, dims=0), teacher.batch)["semantic"]
    assert own < other
    w = system.encode(teacher.batch["image"]).w
    system.multiview_loss(w, teacher.batch)["semantic"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in system.encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in system.generator.parameters())


def test_semantic_weight_needs_a_semantic_generator():
    with pytest.raises(ValueError, match="num_semantic_classes"):
        tiny_pix2nerf(semantic_weight=1.0)


@pytest.mark.parametrize("symmetry_weight", [0.0, 1.0])
def test_symmetry_prior_trains_on_single_view_data(tmp_path, symmetry_weight):
    """(4b) on real images without extra views, as the only encoder loss: it moves the encoder (nothing else does)."""
    nothing_else = dict(mse_weight=0.0, ssim_weight=0.0, latent_weight=0.0, pose_weight=0.0, adversarial_weight=0.0)
    system = tiny_pix2nerf(symmetry_weight=symmetry_weight, warmup_steps=0, lpips_weight=0.0, **nothing_else)
    before = {k: v.clone() for k, v in system.encoder.state_dict().items()}
    data = FaceDataModule(resolution=16, batch_size=2, num_identities=2, epoch_length=4, val_size=2)
    run = trainer(tmp_path, max_steps=3, enable_checkpointing=False)
    run.fit(system, data)
    assert ("train/symmetry" in run.callback_metrics) == (symmetry_weight > 0)
    changed = any(not torch.equal(before[k], v) for k, v in system.encoder.state_dict().items())
    assert changed == (symmetry_weight > 0)


def test_teacher_cache_keeps_a_frozen_teachers_samples_for_later_steps_and_runs(tmp_path):
    settings = dict(
        generator_mode="freeze", generator_teacher_views=1, teacher_cache=str(tmp_path), teacher_cache_size=4
    )
    system = tiny_pix2nerf(**settings)
    torch.manual_seed(0)
    fresh = [system.teacher_views(2, torch.device("cpu")) for _ in range(2)]  # fills the cache
    assert system.teacher_cache().full and len(list(tmp_path.glob("shard-*.safetensors"))) == 2
    rendered = torch.cat([teacher.batch["target_image"] for teacher in fresh])
    later = tiny_pix2nerf(**settings).teacher_views(3, torch.device("cpu"))  # a new run, same teacher: no render
    for k in range(3):
        row = (rendered - later.batch["target_image"][k]).abs().flatten(1).amax(1).argmin()
        assert torch.equal(rendered[row], later.batch["target_image"][k])
        assert torch.equal(torch.cat([t.ws for t in fresh])[row], later.ws[k])
    other_teacher = tiny_pix2nerf(**settings)
    next(other_teacher.generator_ema.parameters()).data.add_(1.0)
    with pytest.raises(ValueError, match="different teacher"):
        other_teacher.teacher_views(1, torch.device("cpu"))
    with pytest.raises(ValueError, match="generator_mode='freeze'"):
        tiny_pix2nerf(**{**settings, "generator_mode": "train"})


def test_generator_teacher_trains_the_encoder_on_any_data(tmp_path):
    system = tiny_pix2nerf(
        generator_mode="freeze",
        generator_teacher_views=1,
        teacher_field_weight=1.0,
        multiview_weight=1.0,
        depth_weight=1.0,
        exact_pose_weight=1.0,
    )
    before = {k: v.clone() for k, v in system.encoder.state_dict().items()}
    data = FaceDataModule(resolution=16, batch_size=2, num_identities=2, epoch_length=4, val_size=2)  # no targets
    run = trainer(tmp_path, max_steps=6, enable_checkpointing=False)
    run.fit(system, data)
    logged = run.callback_metrics
    for name in ("teacher_multiview_l1", "teacher_depth", "teacher_exact_pose", "teacher_field"):
        assert torch.isfinite(logged[f"train/{name}"]), name
    assert any(not torch.equal(before[k], v) for k, v in system.encoder.state_dict().items())


def test_stage2_residual_trains_during_the_warm_up_on_reconstruction_alone(tmp_path):
    """Warm-up detaches the encoder's outputs only: a residual on a frozen encoder still learns from (3)."""
    residual = PlaneResidual(16, 8, 4, channels=8, channel_max=16)
    system = tiny_pix2nerf(residual=residual, freeze_encoder=True, generator_mode="freeze", warmup_steps=100)
    before = {k: v.clone() for k, v in system.residual.state_dict().items()}
    fit(system, tmp_path, steps=1)
    assert any(not torch.equal(before[k], v) for k, v in system.residual.state_dict().items())


def test_hyperparameters_hold_settings_not_networks():
    """Networks are saved as weights: the hyperparameters (and so every checkpoint's) hold the settings only."""
    system = tiny_pix2nerf(symmetry_weight=0.5)
    assert system.hparams["symmetry_weight"] == 0.5 and system.hparams["r1_gamma"] == 1.0
    assert not set(system.hparams) & set(Pix2NeRF.NOT_HYPERPARAMETERS)
    assert {"generator", "encoder", "optimizer_e"} <= set(Pix2NeRF.NOT_HYPERPARAMETERS)
