"""Inversion, refinement, camera paths, batched rendering and input handling on a tiny in-memory model."""

import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from pix2nerf.inference import FaceModel, InputError, paths
from pix2nerf.inference.inputs import collect_inputs, load_face
from pix2nerf.inference.invert import RefineOptions, encode, refine
from pix2nerf.inference.render import render_views
from pix2nerf.metrics import psnr
from tests.factories import record_field_points, tiny_face_model, tiny_generator

LANDMARK_POSE_TOLERANCE_DEG = 10.0
"""Landmark camera estimates of single synthetic heads are within 10 degrees (tests/inference/test_alignment.py)."""


def test_refinement_lowers_reconstruction_error_versus_encoder_only():
    model = tiny_face_model()
    target_w = model.w_avg + 0.5 * torch.randn(1, model.generator.num_ws, model.generator.w_dim)
    target_pose = torch.tensor([[0.2, -0.05]])
    with torch.no_grad():
        image = model.render(target_w, target_pose).image[0]
    start = encode(model, image)
    refined = refine(model, image, start, RefineOptions(steps=40, learning_rate=0.05, symmetry_weight=0.0), False)
    with torch.no_grad():
        before = psnr(model.render(start.w, start.yaw_pitch).image, image[None]).item()
        after = psnr(model.render(refined.w, refined.yaw_pitch).image, image[None]).item()
    assert after > before + 1.0, (before, after)
    assert refined.losses[-1] < refined.losses[0]


@pytest.mark.parametrize(
    ("super_resolution", "cheaper"),
    [(True, {"neural_resolution": 4}), (False, {"neural_resolution": 8}), (True, {"skip_super_resolution": True})],
)
def test_cheaper_refinement_still_fits_the_full_size_input(super_resolution, cheaper):
    """Cheap refinement (half the neural size, or no super-resolution while optimising): renders at the image size
    are compared with the input, smaller ones with the input shrunk; either way the full-size reconstruction
    improves."""
    model = tiny_face_model() if super_resolution else FaceModel(tiny_generator(neural_resolution=16))
    target_w = model.w_avg + 0.5 * torch.randn(1, model.generator.num_ws, model.generator.w_dim)
    with torch.no_grad():
        image = model.render(target_w, torch.tensor([[0.2, -0.05]])).image[0]
    start = encode(model, image)
    options = RefineOptions(steps=40, learning_rate=0.05, symmetry_weight=0.0, **cheaper)
    super_resolved = []
    if super_resolution:
        model.generator.superresolution.register_forward_hook(lambda *_: super_resolved.append(1))
    refined = refine(model, image, start, options, False)
    assert bool(super_resolved) == (super_resolution and not options.skip_super_resolution)
    with torch.no_grad():
        before = psnr(model.render(start.w, start.yaw_pitch).image, image[None]).item()
        after = psnr(model.render(refined.w, refined.yaw_pitch).image, image[None]).item()
    assert after > before + 1.0, (before, after)


def test_pti_finetuning_improves_further_and_leaves_the_model_untouched():
    model = tiny_face_model()
    image = torch.rand(3, 16, 16) * 2 - 1
    original = {k: v.clone() for k, v in model.generator.state_dict().items()}
    start = encode(model, image)
    latent_only = refine(model, image, start, RefineOptions(steps=10, symmetry_weight=0.0), False)
    tuned = refine(model, image, start, RefineOptions(steps=10, finetune_steps=15, symmetry_weight=0.0), False)
    assert start.model is model and latent_only.model is model
    assert tuned.model is not model and tuned.model.generator is not model.generator
    assert tuned.model.encoder is model.encoder and not tuned.model.generator.training
    with torch.no_grad():
        a = psnr(latent_only.model.render(latent_only.w, latent_only.yaw_pitch).image, image[None]).item()
        b = psnr(tuned.model.render(tuned.w, tuned.yaw_pitch).image, image[None]).item()
    assert b > a
    assert all(torch.equal(original[k], v) for k, v in model.generator.state_dict().items())


def test_with_generator_renders_with_the_given_generator_and_shares_the_rest():
    model = tiny_face_model(residual=True)
    other = tiny_generator(seed=1, image_resolution=16, sr_channels=(8, 8)).eval().requires_grad_(False)
    view = model.with_generator(other)
    assert view.generator is other and model.generator is not other
    assert view.encoder is model.encoder and view.residual is model.residual
    assert view.prior is model.prior and view.precision == model.precision and view.training == model.training
    own = {id(p) for p in model.parameters()} - {id(p) for p in model.generator.parameters()}
    assert own and own <= {id(p) for p in view.parameters()}  # the encoder's and residual's weights, not copies
    w = model.w_avg.expand(2, model.generator.num_ws, -1)
    angles = torch.tensor([[0.2, -0.1], [-0.3, 0.05]])
    with torch.no_grad():
        image = view.render(w, angles).image
        expected = other.synthesis(w, model.cameras(angles), noise_mode="const").image
        base = model.render(w, angles).image
        zoomed = view.cameras(angles, zoom=2.0)
    assert torch.allclose(image, expected, atol=1e-6)
    assert not torch.allclose(image, base, atol=1e-3)
    assert torch.allclose(zoomed.intrinsics[:, :2, :2], 2 * view.cameras(angles).intrinsics[:, :2, :2])


def test_camera_paths():
    orbit = paths.orbit(8, 0.5, 0.1)
    assert orbit.shape == (8, 2) and orbit[:, 0].abs().max() == pytest.approx(0.5, abs=1e-6)
    closing, opening = (orbit[-1] - orbit[0]).norm(), (orbit[1] - orbit[0]).norm()
    assert closing == pytest.approx(opening.item(), rel=1e-5)  # a closed loop: the last frame leads back to the first
    sweep = paths.sweep(5, 0.4)
    assert torch.allclose(sweep[:, 0], torch.linspace(-0.4, 0.4, 5)) and (sweep[:, 1] == 0).all()
    grid = paths.grid(3, 2, 0.5, 0.2)
    assert grid[0].tolist() == pytest.approx([-0.5, 0.2]) and grid[-1].tolist() == pytest.approx([0.5, -0.2])
    assert paths.spiral(10)[0].abs().max() == 0
    assert torch.equal(paths.custom([0.1, 0.2], [0.0, -0.1]), torch.tensor([[0.1, 0.0], [0.2, -0.1]]))
    assert torch.allclose(paths.around(sweep, torch.tensor([0.1, 0.05]))[2], torch.tensor([0.1, 0.05]))
    with pytest.raises(ValueError, match="equally many"):
        paths.custom([0.1], [])


def test_batched_rendering_equals_one_batch():
    model = tiny_face_model()
    w = model.w_avg.expand(1, model.generator.num_ws, -1)
    angles = paths.sweep(5, 0.5)
    whole = render_views(model, w, angles, max_samples=10**9)
    pieces = render_views(model, w, angles, max_samples=8 * 8 * 8 * 2)  # two views per batch
    assert torch.allclose(whole.images, pieces.images, atol=1e-5)
    assert torch.allclose(whole.depth, pieces.depth, atol=1e-5)
    assert whole.images.shape == (5, 3, 16, 16)


def test_views_render_with_a_low_resolution_coarse_pass_when_asked():
    model = tiny_face_model()
    w = model.w_avg.expand(1, model.generator.num_ws, -1)
    evaluated = record_field_points(model.generator)
    coarse, fine = model.generator.renderer.num_coarse, model.generator.renderer.num_importance
    two_views_with_proposal = 2 * (4 * 4 * coarse + 8 * 8 * fine)  # fits two views only at the proposal's cost
    views = render_views(
        model, w, paths.sweep(2, 0.4), neural_resolution=8, coarse_stride=2, max_samples=two_views_with_proposal
    )
    assert evaluated == [4 * 4 * coarse, 8 * 8 * fine]  # one batch; points per view: 4^2 coarse, then 8^2 fine rays
    evaluated.clear()
    full = render_views(model, w, paths.sweep(2, 0.4), neural_resolution=8, max_samples=two_views_with_proposal)
    assert evaluated == [8 * 8 * coarse, 8 * 8 * fine] * 2  # a view per batch
    assert views.images.shape == full.images.shape and not torch.equal(views.images, full.images)


def test_views_turn_with_the_camera_path():
    """A yaw sweep of an off-centre field shows it moving across the image in the expected direction."""
    model = tiny_face_model()
    w = model.w_avg.expand(1, model.generator.num_ws, -1)
    views = render_views(model, w, paths.sweep(2, 0.6))
    assert not torch.allclose(views.images[0], views.images[1], atol=1e-3)


def test_input_conversions(tmp_path):
    gray = (np.arange(64 * 48) % 256).astype(np.uint8).reshape(64, 48)
    iio.imwrite(tmp_path / "gray.png", gray)
    image = load_face(tmp_path / "gray.png", 16).image
    assert image.shape == (3, 16, 16) and torch.equal(image[0], image[1])
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:20, :, 3] = 255  # top half opaque red, bottom half transparent
    iio.imwrite(tmp_path / "rgba.png", rgba)
    image = load_face(tmp_path / "rgba.png", 40).image
    assert image[:, 5, 5].tolist() == pytest.approx([1.0, -1.0, -1.0])
    assert image[:, 35, 5].tolist() == pytest.approx([1.0, 1.0, 1.0])  # composited onto white
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, 20:60] = 255  # the centred square is white
    iio.imwrite(tmp_path / "wide.png", wide)
    assert load_face(tmp_path / "wide.png", 40).image.min() == 1.0
    assert [p.name for p in collect_inputs(tmp_path)] == ["gray.png", "rgba.png", "wide.png"]
    assert [p.name for p in collect_inputs(str(tmp_path / "w*.png"))] == ["wide.png"]
    with pytest.raises(InputError, match="no images match"):
        collect_inputs(str(tmp_path / "*.jpg"))


def test_pose_estimate_of_encoder_free_model_is_frontal():
    model = FaceModel(tiny_face_model().generator)
    inversion = encode(model, torch.zeros(3, 16, 16))
    assert inversion.yaw_pitch.abs().max() == 0 and torch.allclose(inversion.w[0, 0], model.w_avg)
    assert math.isfinite(inversion.w.sum().item())
    landmark_pose = torch.tensor([0.3, -0.1])  # a camera estimate from landmarks starts an encoder-free model
    assert torch.equal(encode(model, torch.zeros(3, 16, 16), landmark_pose).yaw_pitch, landmark_pose[None])
    with_encoder = tiny_face_model()  # an encoder's own estimate is kept
    image = torch.zeros(3, 16, 16)
    assert torch.equal(encode(with_encoder, image, landmark_pose).yaw_pitch, encode(with_encoder, image).yaw_pitch)


def test_face_detection_crops_a_pasted_head_back_out(tmp_path):
    """A synthetic head pasted off-centre into a larger photo is found and cropped to the training framing."""
    pytest.importorskip("cv2", reason="face detection needs opencv-python-headless (the dev extra installs it)")
    from pix2nerf.data import SyntheticHeads
    from pix2nerf.data.images import to_uint8

    head = SyntheticHeads("test", resolution=128, num_identities=1)[2]["image"]  # a view the cascade detects
    canvas = np.full((300, 400, 3), 128, np.uint8)
    canvas[50:178, 200:328] = to_uint8(head)
    iio.imwrite(tmp_path / "photo.png", canvas)
    detected = psnr(load_face(tmp_path / "photo.png", 128, detector="haar").image[None], head[None]).item()
    centre_crop = psnr(load_face(tmp_path / "photo.png", 128).image[None], head[None]).item()
    assert detected > 18.0 and detected > centre_crop + 2.0, (detected, centre_crop)
    noise = (np.random.default_rng(0).random((200, 200, 3)) * 255).astype(np.uint8)
    iio.imwrite(tmp_path / "noise.png", noise)
    with pytest.raises(InputError, match="no face found"):
        load_face(tmp_path / "noise.png", 64, detector="haar")
    with pytest.raises(InputError, match="unknown face detector 'dlib'"):
        load_face(tmp_path / "photo.png", 64, detector="dlib")


def pasted_rotated_head(tmp_path, roll_degrees: float = 15.0):
    """A synthetic head (its exact yaw/pitch too) pasted off-centre, rolled, into a larger photo, as a file."""
    from PIL import Image

    from pix2nerf.data import SyntheticHeads
    from pix2nerf.data.images import to_uint8

    item = SyntheticHeads("test", resolution=128, num_identities=1)[2]
    canvas = Image.new("RGB", (400, 300), (128, 128, 128))
    canvas.paste(Image.fromarray(to_uint8(item["image"])).rotate(roll_degrees, fillcolor=(128, 128, 128)), (200, 50))
    canvas.save(tmp_path / "rolled.png")
    return tmp_path / "rolled.png", item


def test_landmark_alignment_without_its_weights_falls_back_to_the_haar_box(tmp_path, monkeypatch, caplog):
    pytest.importorskip("cv2", reason="the Haar fallback needs opencv-python-headless (the dev extra installs it)")
    from pix2nerf.inference import inputs

    path, _ = pasted_rotated_head(tmp_path, roll_degrees=0.0)
    monkeypatch.setattr(inputs, "landmark_detector_available", lambda: False)
    face = load_face(path, 64, detector="landmarks")
    assert face.detector == "haar" and face.yaw_pitch is None
    assert "facenet-pytorch" in caplog.text and "Haar" in caplog.text


def test_landmark_alignment_levels_a_rolled_head_and_estimates_its_camera(tmp_path):
    from pix2nerf.inference.landmarks import landmark_detector_available

    if not landmark_detector_available():
        pytest.skip("the landmark detector's weights are not installed: pip install --no-deps facenet-pytorch==2.6.0")
    path, item = pasted_rotated_head(tmp_path)
    face = load_face(path, 128, detector="landmarks")
    assert face.detector == "landmarks"
    aligned = psnr(face.image[None], item["image"][None]).item()
    boxed = psnr(load_face(path, 128, detector="haar").image[None], item["image"][None]).item()
    assert aligned > boxed + 2.0, (aligned, boxed)  # the Haar box cannot undo the roll
    assert (face.yaw_pitch - item["yaw_pitch"]).abs().max() < math.radians(LANDMARK_POSE_TOLERANCE_DEG)
