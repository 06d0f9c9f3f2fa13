import math

import pytest
import torch

from pix2nerf.cameras import look_at, rays
from pix2nerf.data import heads as H
from pix2nerf.data.heads import SEMANTIC_CLASSES, head_labels, head_normals, head_sdf, render_heads, sample_heads

C = SEMANTIC_CLASSES


def test_same_seed_same_head_bit_identical_render():
    cameras = look_at(torch.tensor([0.3, -0.2]), torch.tensor([0.1, 0.0]))
    first = render_heads(sample_heads([7, 8]), cameras, 32)
    second = render_heads(sample_heads([7, 8]), cameras, 32)
    for name in ("image", "depth", "mask", "semantics"):
        assert torch.equal(getattr(first, name), getattr(second, name)), name


def test_different_seeds_are_different_identities():
    cameras = look_at(torch.zeros(6), torch.zeros(6))
    out = render_heads(sample_heads(range(6)), cameras, 32)
    images = out.image.flatten(1)
    distance = torch.cdist(images, images) / images.shape[1] ** 0.5
    off_diagonal = distance[~torch.eye(6, dtype=torch.bool)]
    assert off_diagonal.min() > 0.05  # RMS difference in [-1, 1] units between any two identities
    assert not torch.equal(sample_heads([0]).packed, sample_heads([1]).packed)


def test_mask_and_depth_agree_and_depth_is_in_front_of_the_camera():
    out = render_heads(sample_heads([3]), look_at(torch.tensor([0.4]), torch.tensor([-0.1])), 48)
    assert torch.equal(out.mask, torch.isfinite(out.depth))
    assert torch.equal(out.mask[:, 0], out.semantics > 0)
    depth = out.depth[out.mask]
    assert depth.min() > 2.0 and depth.max() < 3.4
    assert 0.2 < out.mask.float().mean() < 0.95


def unproject(depth, cameras, resolution):
    """World points (B, R, 3) of every pixel's z-depth."""
    origins, directions = rays(cameras, resolution)
    cos = (directions * cameras.forward[:, None]).sum(-1, keepdim=True)
    return origins + directions * depth.flatten(2).transpose(1, 2) / cos


def test_depth_reprojection_matches_colours_across_views():
    """Unproject view A's depth, project into view B: visible points land on matching colours."""
    resolution = 96
    heads = sample_heads([11, 11])
    cameras = look_at(torch.tensor([-0.25, 0.1]), torch.tensor([0.05, -0.05]))
    out = render_heads(heads, cameras, resolution)
    points = unproject(out.depth[:1], cameras[:1], resolution)[0]
    valid = out.mask[0, 0].flatten()
    colour_a = out.image[0].flatten(1).t()

    def reprojection_error(world):
        uv, z = cameras[1:].project(world[None])
        grid = uv * 2 - 1
        colour_b = torch.nn.functional.grid_sample(out.image[1:], grid[:, :, None], align_corners=False)[0, :, :, 0].t()
        depth_b = torch.nn.functional.grid_sample(
            out.depth[1:].nan_to_num(posinf=100.0), grid[:, :, None], mode="nearest", align_corners=False
        )[0, 0, :, 0]
        label_b = torch.nn.functional.grid_sample(
            out.semantics[1:, None].float(), grid[:, :, None], mode="nearest", align_corners=False
        )[0, 0, :, 0]
        visible = valid & ((depth_b - z[0, :, 0]).abs() < 0.01) & (label_b == out.semantics[0].flatten())
        return (colour_a - colour_b).abs().mean(-1), visible

    error, visible = reprojection_error(points)
    assert visible.sum() > 0.5 * valid.sum()  # most of view A's head is seen by view B
    assert error[visible].median() < 0.02
    assert error[visible].mean() < 0.04
    # The check has teeth: points pushed 2% deeper land on the wrong colours.
    camera_a = cameras.origins[0]
    wrong_error, _ = reprojection_error(camera_a + (points - camera_a) * 1.02)
    assert wrong_error[visible].mean() > 3 * error[visible].mean()


def test_frontal_view_shows_every_face_class_where_the_geometry_is():
    heads = sample_heads([5])
    cameras = look_at(torch.tensor([0.0]), torch.tensor([0.0]))
    out = render_heads(heads, cameras, 128)
    present = set(out.semantics.unique().tolist())
    for name in ("skin", "nose", "l_eye", "r_eye", "l_brow", "r_brow", "u_lip", "l_lip", "hair", "neck"):
        assert C[name] in present, name

    def label_at(point):
        uv, _ = cameras.project(torch.tensor(point)[None, None])
        x, y = (uv[0, 0] * 128).long().tolist()
        return int(out.semantics[0, y, x])

    eye = heads.eye_centre[:, 0].tolist()
    front_of_eye = [eye[0], eye[1], eye[2] + float(heads.eye_radius[0, 0])]
    assert label_at(front_of_eye) == C["l_eye"]  # the subject's left eye is on +x
    assert label_at([-front_of_eye[0], *front_of_eye[1:]]) == C["r_eye"]
    upper_lip = heads.upper_lip_centre[:, 0].tolist()
    lower_lip = heads.lower_lip_centre[:, 0].tolist()
    assert label_at(upper_lip) == C["u_lip"] and label_at(lower_lip) == C["l_lip"]


def test_side_view_shows_an_ear():
    heads = sample_heads([1, 2, 3, 4])
    out = render_heads(heads, look_at(torch.full((4,), 1.2), torch.zeros(4)), 64)
    ears = (out.semantics == C["l_ear"]).flatten(1).any(dim=1)
    assert ears.sum() >= 2  # hair hides the ears of some hairstyles


def test_bounding_volumes_contain_every_head():
    """Tracing starts at the bounding volumes, so no head may reach outside them."""
    generator = torch.Generator().manual_seed(0)
    heads = sample_heads(range(60))
    points = (torch.rand(60, 4000, 3, generator=generator) - 0.5) * 1.6 + torch.tensor([0.0, -0.15, 0.0])
    head_distance = (points - torch.tensor(H.HEAD_BOUND_CENTRE)).norm(dim=-1)
    radial = (points[..., [0, 2]] - torch.tensor(H.COLUMN_BOUND_AXIS)).norm(dim=-1)
    in_column = (radial < H.COLUMN_BOUND_RADIUS) & (points[..., 1] > H.COLUMN_BOUND_HEIGHT[0])
    in_column &= points[..., 1] < H.COLUMN_BOUND_HEIGHT[1]
    outside = (head_distance > H.HEAD_BOUND_RADIUS) & ~in_column
    per_point = heads.take(torch.arange(60).repeat_interleave(4000))
    sdf = head_sdf(points.reshape(-1, 3), per_point).reshape(60, 4000)
    assert outside.sum() > 10000
    assert sdf[outside].min() > 0


def test_surface_points_have_unit_outward_normals_and_labels():
    heads = sample_heads([9])
    cameras = look_at(torch.tensor([0.0]), torch.tensor([0.0]))
    origins, directions = rays(cameras, 16)
    t, hit = H.trace(origins, directions, heads)
    t, hit = t[0], hit[0]
    assert torch.isinf(t[~hit]).all() and hit.sum() > 100
    points = origins[0][hit] + t[hit, None] * directions[0][hit]
    per_point = heads.take(torch.zeros(len(points), dtype=torch.long))
    assert head_sdf(points, per_point).abs().max() < H.HIT_EPSILON
    normals = head_normals(points, per_point)
    torch.testing.assert_close(normals.norm(dim=-1), torch.ones(len(points)))
    assert ((normals * directions[0][hit]).sum(-1) < 0).float().mean() > 0.95  # facing the camera
    assert set(head_labels(points, per_point).tolist()) <= set(C.values())


def test_render_rejects_mismatched_batch():
    with pytest.raises(ValueError, match="one camera per head"):
        render_heads(sample_heads([1, 2]), look_at(0.0, 0.0), 16)


def test_fixed_light_is_shared_by_every_identity():
    heads = sample_heads([1, 2, 3], random_light=False)
    assert torch.equal(heads.light[:, 0], heads.light[:, 2])
    assert heads.light[:, 0].norm().item() == pytest.approx(1.0)
    assert not math.isclose(float(sample_heads([1]).light[0, 0]), float(sample_heads([2]).light[0, 0]))


def test_landmarks_lie_on_the_eyes_nose_tip_and_mouth_corners_they_name():
    heads = sample_heads([2, 6, 13])
    cameras = look_at(torch.tensor([0.0, 0.15, -0.2]), torch.tensor([0.0, 0.1, -0.05]))
    resolution = 96
    out = render_heads(heads, cameras, resolution)
    landmarks = H.head_landmarks(heads)
    assert landmarks.shape == (3, 5, 3) and landmarks.dtype == torch.float32
    uv, z = cameras.project(landmarks)
    pixels = (uv * resolution).long()
    near = {
        "left_eye": {C["r_eye"]},  # image left in a frontal view is the subject's right (world -x)
        "right_eye": {C["l_eye"]},
        "nose_tip": {C["nose"]},
        "left_mouth": {C["u_lip"], C["l_lip"]},
        "right_mouth": {C["u_lip"], C["l_lip"]},
    }
    for b in range(3):
        for k, name in enumerate(H.LANDMARK_NAMES):
            x, y = pixels[b, k].tolist()
            around = set(out.semantics[b, y - 1 : y + 2, x - 1 : x + 2].flatten().tolist())
            assert near[name] & around, (b, name, around)
    # Eye centres and the nose tip are on the visible surface: the render's depth there is the landmark's.
    depth = out.depth[torch.arange(3)[:, None], 0, pixels[..., 1], pixels[..., 0]]
    assert (depth[:, :3] - z[:, :3, 0]).abs().max() < 0.01
    # The nose tip is the face's most forward point: on the surface, with only air around it at its depth.
    assert (landmarks[:, 2, 2] > landmarks[:, [0, 1, 3, 4], 2].amax(1) + 0.02).all()
    angles = torch.linspace(0, 2 * math.pi, 13)[:-1]
    ring = 0.002 * torch.stack([angles.cos(), angles.sin(), torch.zeros(12)], -1)
    probes = torch.cat([torch.zeros(1, 3), ring, torch.tensor([[0.0, 0.0, -0.001]])])  # tip, ring, behind
    points = (landmarks[:, 2, None] + probes).reshape(-1, 3)
    sdf = head_sdf(points, heads.take(torch.arange(3).repeat_interleave(len(probes)))).reshape(3, -1)
    assert sdf[:, 0].abs().max() < 1e-4 and (sdf[:, 1:-1] > 0).all() and (sdf[:, -1] < 0).all()
    # Mouth corners are where the lips end.
    half_width = landmarks[:, 4, 0]
    assert ((half_width > 0.7 * heads.upper_lip_radii[0]) & (half_width <= heads.upper_lip_radii[0])).all()


def test_landmarks_are_mirror_symmetric_and_per_head():
    heads = sample_heads([4, 9])
    landmarks = H.head_landmarks(heads)
    mirrored = landmarks[:, [1, 0, 2, 4, 3]] * torch.tensor([-1.0, 1.0, 1.0])
    torch.testing.assert_close(mirrored, landmarks)
    torch.testing.assert_close(H.head_landmarks(sample_heads([9]))[0], landmarks[1])
