import math

import numpy as np
import pytest
import torch

from pix2nerf.cameras import (
    FACE_FOCAL,
    FACE_PIVOT,
    FACE_PRIOR,
    FACE_RADIUS,
    Cameras,
    PosePrior,
    eg3d_from_yaw_pitch,
    flip_yaw,
    focal_from_fov,
    fov_from_focal,
    look_at,
    mirror_yaw_pitch,
    pixel_centers,
    prior_cameras,
    rays,
    sample_poses,
    sample_yaw_pitch,
    yaw_pitch,
    yaw_pitch_from_eg3d,
    z_depth,
)


def eg3d_look_at_label(h: float, v: float, radius=FACE_RADIUS, lookat=FACE_PIVOT, focal=FACE_FOCAL):
    """EG3D's LookAtPoseSampler + create_cam2world_matrix, transcribed in numpy as an independent reference."""
    v = np.clip(v, 1e-5, math.pi - 1e-5)
    phi = np.arccos(1 - 2 * v / math.pi)
    origin = np.array(
        [radius * np.sin(phi) * np.cos(math.pi - h), radius * np.cos(phi), radius * np.sin(phi) * np.sin(math.pi - h)]
    )
    forward = np.asarray(lookat) - origin
    forward /= np.linalg.norm(forward)
    right = -np.cross([0.0, 1.0, 0.0], forward)
    right /= np.linalg.norm(right)
    up = np.cross(forward, right)
    up /= np.linalg.norm(up)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, up, forward], axis=-1)
    pose[:3, 3] = origin
    intrinsics = np.array([[focal, 0, 0.5], [0, focal, 0.5], [0, 0, 1]])
    return np.concatenate([pose.reshape(-1), intrinsics.reshape(-1)])


def test_frontal_camera_matches_convention():
    cam = look_at(0.0, 0.0)
    expected = torch.tensor([[1.0, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2.7], [0, 0, 0, 1]])
    torch.testing.assert_close(cam.cam2world[0], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(cam.intrinsics[0, 0, 0], torch.tensor(FACE_FOCAL))


@pytest.mark.parametrize("h, v", [(math.pi / 2, math.pi / 2), (math.pi / 2 + 0.4, math.pi / 2 - 0.15), (1.0, 2.0)])
def test_labels_match_eg3d_look_at_sampler(h, v):
    yaw, pitch = yaw_pitch_from_eg3d(h, v)
    ours = look_at(yaw, pitch, dtype=torch.float64).label()[0].numpy()
    np.testing.assert_allclose(ours, eg3d_look_at_label(h, v), atol=1e-12)
    h_back, v_back = eg3d_from_yaw_pitch(yaw, pitch)
    assert float(h_back) == pytest.approx(h) and float(v_back) == pytest.approx(v)


def test_labels_match_eg3d_reference_cameras(eg3d_reference_dir):
    from safetensors.torch import load_file

    reference = load_file(str(eg3d_reference_dir / "reference_outputs.safetensors"))["c"]
    yaw, pitch = yaw_pitch_from_eg3d(
        torch.tensor([math.pi / 2, math.pi / 2 + 0.4]), torch.tensor([math.pi / 2, math.pi / 2 - 0.15])
    )
    torch.testing.assert_close(look_at(yaw.float(), pitch.float()).label(), reference, atol=1e-6, rtol=0)


def test_camera_round_trips_through_label():
    yaw = torch.tensor([0.0, 0.5, -0.7, 1.2])
    pitch = torch.tensor([0.0, -0.2, 0.3, 0.1])
    cams = look_at(yaw, pitch, radius=torch.tensor([2.7, 2.0, 3.0, 2.5]), focal=torch.tensor([4.0, 4.2, 5.0, 3.0]))
    label = cams.label()
    assert label.shape == (4, 25)
    back = Cameras.from_label(label)
    torch.testing.assert_close(back.cam2world, cams.cam2world)
    torch.testing.assert_close(back.intrinsics, cams.intrinsics)
    torch.testing.assert_close(yaw_pitch(back), torch.stack([yaw, pitch], dim=-1), atol=1e-6, rtol=0)
    torch.testing.assert_close(back.origins.norm(dim=-1), torch.tensor([2.7, 2.0, 3.0, 2.5]))


def test_cam2world_is_a_rotation_without_roll():
    cams = look_at(torch.linspace(-1.0, 1.0, 5), torch.linspace(-0.4, 0.4, 5))
    rotation = cams.cam2world[:, :3, :3]
    torch.testing.assert_close(rotation.transpose(1, 2) @ rotation, torch.eye(3).expand(5, 3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rotation), torch.ones(5))
    assert rotation[:, 1, 0].abs().max() < 1e-6  # camera x axis stays horizontal: no roll


def test_bad_label_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="25 values"):
        Cameras.from_label(torch.zeros(3, 24))


def test_centre_pixel_ray_passes_through_pivot():
    cams = look_at(torch.tensor([0.0, 0.4, -0.9]), torch.tensor([0.0, -0.3, 0.25]))
    origins, directions = rays(cams, 65)  # odd resolution: pixel 32 sits exactly at the centre
    centre = 32 * 65 + 32
    pivot = torch.tensor(FACE_PIVOT)
    to_pivot = pivot - origins[:, centre]
    along = (to_pivot * directions[:, centre]).sum(-1, keepdim=True)
    miss_distance = (to_pivot - along * directions[:, centre]).norm(dim=-1)
    assert miss_distance.max() < 1e-5
    torch.testing.assert_close(directions.norm(dim=-1), torch.ones(3, 65 * 65))


def test_rays_project_back_onto_pixel_centres():
    cams = look_at(torch.tensor([0.3, -0.5]), torch.tensor([0.1, 0.2]))
    origins, directions = rays(cams, (6, 10))
    uv, depth = cams.project(origins + 1.7 * directions)
    torch.testing.assert_close(uv, pixel_centers((6, 10)).expand(2, -1, -1), atol=1e-5, rtol=0)
    assert (depth > 0).all()
    # Row-major order: the second ray is one pixel to the right of the first.
    assert uv[0, 1, 0] > uv[0, 0, 0] and uv[0, 10, 1] > uv[0, 0, 1]


def test_z_depth_of_a_fronto_parallel_plane_is_constant():
    cams = look_at(0.0, 0.0)
    _, directions = rays(cams, 9)
    plane_z = 0.1  # the plane z = 0.1 is 2.6 in front of the frontal camera
    distance = (FACE_RADIUS - plane_z) / (-directions[..., 2:3])
    torch.testing.assert_close(z_depth(distance, directions, cams), torch.full((1, 81, 1), 2.6))


def test_flip_yaw_twice_is_identity_and_mirrors_projection():
    cams = look_at(torch.tensor([0.35, -0.6]), torch.tensor([0.2, -0.1]))
    twice = flip_yaw(flip_yaw(cams))
    torch.testing.assert_close(twice.cam2world, cams.cam2world)
    flipped = flip_yaw(cams)
    torch.testing.assert_close(yaw_pitch(flipped), yaw_pitch(cams) * torch.tensor([-1.0, 1.0]), atol=1e-6, rtol=0)

    points = torch.randn(2, 50, 3) * 0.3
    uv, depth = cams.project(points)
    mirrored = points * torch.tensor([-1.0, 1.0, 1.0])
    uv_flip, depth_flip = flipped.project(mirrored)
    torch.testing.assert_close(uv_flip[..., 0], 1.0 - uv[..., 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(uv_flip[..., 1], uv[..., 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(depth_flip, depth, atol=1e-5, rtol=0)


def test_mirrored_yaw_pitch_gives_the_mirrored_camera_on_the_prior_sphere():
    angles = torch.tensor([[0.35, 0.2], [-0.6, -0.1]])
    mirrored = prior_cameras(mirror_yaw_pitch(angles), FACE_PRIOR)
    torch.testing.assert_close(mirrored.cam2world, flip_yaw(prior_cameras(angles, FACE_PRIOR)).cam2world)


def test_focal_fov_conversion():
    assert fov_from_focal(FACE_FOCAL) == pytest.approx(13.374, abs=1e-3)
    # EG3D quotes 18.837 degrees for the same camera: its diagonal field of view.
    diagonal_half_angle = math.atan(math.sqrt(2) * 0.5 / FACE_FOCAL)
    assert math.degrees(2 * diagonal_half_angle) == pytest.approx(18.837, abs=1e-2)
    assert focal_from_fov(fov_from_focal(3.3)) == pytest.approx(3.3)
    torch.testing.assert_close(focal_from_fov(torch.tensor([90.0])), torch.tensor([0.5]))


def test_gaussian_prior_statistics_and_determinism():
    prior = PosePrior(yaw_spread=0.3, pitch_spread=0.155, pitch_mean=0.05)
    angles = sample_yaw_pitch(20000, prior, torch.Generator().manual_seed(1))
    assert angles[:, 0].mean().abs() < 0.01 and angles[:, 0].std() == pytest.approx(0.3, rel=0.03)
    assert angles[:, 1].mean() == pytest.approx(0.05, abs=0.005)
    assert angles[:, 1].std() == pytest.approx(0.155, rel=0.03)
    again = sample_yaw_pitch(20000, prior, torch.Generator().manual_seed(1))
    assert torch.equal(angles, again)


def test_uniform_prior_bounds_and_sampled_cameras():
    prior = PosePrior(kind="uniform", yaw_spread=0.5, pitch_spread=0.2)
    angles = sample_yaw_pitch(5000, prior, torch.Generator().manual_seed(2))
    assert angles[:, 0].abs().max() <= 0.5 and angles[:, 0].abs().max() > 0.49
    assert angles[:, 1].abs().max() <= 0.2
    cams = sample_poses(8, prior, torch.Generator().manual_seed(3))
    torch.testing.assert_close(cams.origins.norm(dim=-1), torch.full((8,), FACE_RADIUS))
    with pytest.raises(ValueError, match="unknown pose prior"):
        PosePrior(kind="cauchy")
