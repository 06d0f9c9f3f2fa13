"""A model with the hybrid encoder's stage 2 (plane residual) through every inference path: bundles, Lightning
checkpoints, the novel-view pipeline, refinement, latent files and the viewer."""

import dataclasses

import torch

from pix2nerf.data import SyntheticHeads
from pix2nerf.data.images import write_image
from pix2nerf.inference import load_model, save_bundle
from pix2nerf.inference.invert import RefineOptions, encode, refine
from pix2nerf.inference.pipeline import NovelViewOptions, novel_views
from pix2nerf.networks.specs import network_spec
from pix2nerf.viewer import ViewerSession
from pix2nerf.viewer.session import View, load_latent
from tests.factories import tiny_face_model

IMAGE = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1


def _reconstruction(model):
    encoded = model.encode(IMAGE)
    return encoded.plane_offsets, model.render(encoded.w, encoded.yaw_pitch, plane_offsets=encoded.plane_offsets)


def test_bundle_and_lightning_checkpoint_keep_the_residual(tmp_path):
    model = tiny_face_model(residual=True)
    offsets, render = _reconstruction(model)
    bundle = load_model(save_bundle(model, tmp_path / "hybrid.safetensors", half_precision=False))
    assert bundle.residual is not None
    loaded_offsets, loaded_render = _reconstruction(bundle)
    assert torch.equal(offsets, loaded_offsets) and torch.equal(render.image, loaded_render.image)

    state = {f"generator_ema.{k}": v for k, v in model.generator.state_dict().items()}
    state.update({f"encoder.{k}": v for k, v in model.encoder.state_dict().items()})
    state.update({f"residual.{k}": v for k, v in model.residual.state_dict().items()})
    specs = {name: network_spec(getattr(model, name)) for name in ("generator", "encoder", "residual")}
    torch.save({"state_dict": state, "network_specs": specs}, tmp_path / "run.ckpt")
    from_checkpoint = load_model(tmp_path / "run.ckpt")
    assert torch.equal(_reconstruction(from_checkpoint)[0], offsets)


def test_refinement_keeps_the_offsets_and_improves_the_input_view():
    model = tiny_face_model(residual=True)
    start = encode(model, IMAGE[0])
    refined = refine(model, IMAGE[0], start, RefineOptions(steps=15, learning_rate=0.05), progress=False)
    assert torch.equal(refined.plane_offsets, start.plane_offsets)
    assert refined.losses[-1] < refined.losses[0]


def test_pipeline_latent_file_restores_the_same_face_in_the_viewer(tmp_path):
    model = tiny_face_model(residual=True)
    head = SyntheticHeads(resolution=32, num_identities=1)[0]["image"]
    write_image(tmp_path / "head.png", head)
    options = NovelViewOptions(num_frames=2, grid_yaws=2, grid_pitches=1, mesh_resolution=0, gif=False)
    options = dataclasses.replace(options, refine=RefineOptions(steps=0))
    novel_views(model, tmp_path / "head.png", tmp_path / "out", options, progress=False)
    saved = torch.load(tmp_path / "out" / "latent.pt", weights_only=True)
    assert saved["plane_offsets"].abs().max() > 0

    restored = load_latent((tmp_path / "out" / "latent.pt").read_bytes(), "latent.pt", model)
    assert torch.equal(restored.plane_offsets, saved["plane_offsets"])
    session = ViewerSession(model)
    session.face = restored
    view = View(yaw=float(saved["yaw_pitch"][0, 0]), pitch=float(saved["yaw_pitch"][0, 1]), quality="full")
    shown = session._render(view, saved["yaw_pitch"], model.generator.neural_resolution)
    expected = model.render(saved["w"], saved["yaw_pitch"], plane_offsets=saved["plane_offsets"]).image
    torch.testing.assert_close(shown, expected)
    average = session._render(dataclasses.replace(view, truncation=0.0), saved["yaw_pitch"], 8)
    plain = model.render(model.w_avg.expand(1, model.generator.num_ws, -1), saved["yaw_pitch"]).image
    torch.testing.assert_close(average, plain)  # truncation 0: the average face, offsets scaled away


def test_latent_files_of_decoupled_models_with_plane_offsets_load_in_the_viewer():
    """Decoupled latents: w_avg is (num_ws, w_dim) and the planes carry appearance channels."""
    import io

    import pytest

    from pix2nerf.inference import FaceModel, InputError
    from pix2nerf.networks import Encoder, PlaneResidual
    from tests.factories import tiny_generator

    generator = tiny_generator(decoupled_latents=True, w_dim=16, image_resolution=16, sr_channels=(8, 8))
    encoder = Encoder(img_resolution=16, num_ws=generator.num_ws, w_dim=16, channel_base=64, channel_max=8)
    channels = generator.plane_channels + generator.appearance_channels
    residual = PlaneResidual(16, 8, channels, channels=8, channel_max=16)
    model = FaceModel(generator, encoder, residual=residual).eval().requires_grad_(False)
    encoded = model.encode(IMAGE)

    def upload(offsets: torch.Tensor) -> bytes:
        buffer = io.BytesIO()
        torch.save({"w": encoded.w, "yaw_pitch": encoded.yaw_pitch, "plane_offsets": offsets}, buffer)
        return buffer.getvalue()

    restored = load_latent(upload(encoded.plane_offsets), "latent.pt", model)
    assert torch.equal(restored.w, encoded.w) and torch.equal(restored.plane_offsets, encoded.plane_offsets)
    with pytest.raises(InputError, match="'plane_offsets' must be"):
        load_latent(upload(encoded.plane_offsets[:, :, :4]), "latent.pt", model)


def test_stage1_encoding_gives_the_same_latent_and_pose_without_rendering(monkeypatch):
    model = tiny_face_model(residual=True)
    full = model.encode(IMAGE)

    def no_render(*args, **kwargs):
        raise AssertionError("stage 1 alone must not render")

    monkeypatch.setattr(model, "render", no_render)
    stage1 = model.encode_stage1(IMAGE)
    assert torch.equal(stage1.w, full.w) and torch.equal(stage1.yaw_pitch, full.yaw_pitch)
    assert stage1.plane_offsets is None and full.plane_offsets is not None
