"""Semantic editing on a generator whose geometry latent sets a sphere analytically (known ground truth)."""

import pytest
import torch
from torch import Tensor, nn

from pix2nerf.cameras import look_at
from pix2nerf.fields import FieldOutput, RadianceHead
from pix2nerf.inference.editing import (
    IGNORE_LABEL,
    edit_geometry,
    interpolate_appearance,
    render_semantics,
    swap_appearance,
)
from pix2nerf.metrics.semantic import mean_iou

from ..factories import tiny_generator

CHANNELS = 4
"""Plane channels of each branch; the codes are the first 3 * CHANNELS entries of a branch's first w."""
SHARPNESS = 200.0
NUM_CLASSES = 3  # 0 background, 1 upper half of the sphere, 2 lower half


class FirstW(nn.Module):
    """Stands in for a synthesis network: the first w of a branch, as 1x1 planes (B, 3 * CHANNELS, 1, 1)."""

    def forward(self, ws: Tensor, noise_mode: str) -> Tensor:
        return ws[:, 0, : 3 * CHANNELS, None, None]


class SphereHead(RadianceHead):
    """A sphere set by the geometry code (centre x, y and radius), coloured by the appearance code."""

    feature_dim = 3
    num_semantic_classes = NUM_CLASSES

    def forward(self, points: Tensor, params: Tensor) -> FieldOutput:
        geometry, appearance = params[:, 0, :CHANNELS, 0, 0], params[:, 0, CHANNELS:, 0, 0]
        centre = torch.stack([0.1 * geometry[:, 0], 0.1 * geometry[:, 1], torch.full_like(geometry[:, 0], 0.2)], -1)
        radius = 0.25 + 0.05 * geometry[:, 2]
        offset = points - centre[:, None]
        sigma = SHARPNESS * (radius[:, None] - offset.norm(dim=-1))
        height = 20.0 * offset[..., 1]
        logits = torch.stack([torch.zeros_like(height), height, -height], dim=-1)
        colour = torch.sigmoid(appearance[:, None, :3]).expand(-1, points.shape[1], -1)
        return FieldOutput(sigma=sigma[..., None], features=colour, semantics=logits)


def sphere_generator():
    generator = tiny_generator(
        w_dim=16,
        plane_channels=CHANNELS,
        decoupled_latents=True,
        num_semantic_classes=NUM_CLASSES,
        feature_dim=3,
        neural_resolution=16,
        num_coarse=16,
        num_importance=16,
    ).eval()
    generator.backbone.synthesis = FirstW()
    generator.backbone.appearance_synthesis = FirstW()
    generator.head = SphereHead()
    return generator


def latents(generator, x: float, y: float, radius: float, colour: float) -> Tensor:
    """ws (1, num_ws, w_dim) of one sphere: geometry code (x, y, radius), appearance code (colour) in every w."""
    geometry = torch.zeros(1, generator.num_ws_geometry, generator.w_dim)
    geometry[..., :3] = torch.tensor([x, y, radius])
    appearance = torch.full((1, generator.num_ws - generator.num_ws_geometry, generator.w_dim), colour)
    return generator.join_ws(geometry, appearance)


VIEWS = look_at(torch.tensor([0.0, -0.5, 0.5, 0.0]), torch.tensor([0.0, 0.0, 0.0, 0.3]))


def test_mask_guided_edit_moves_the_shape_toward_the_target_in_every_view():
    generator = sphere_generator()
    source = latents(generator, x=0.0, y=0.0, radius=0.0, colour=-1.0)
    target = latents(generator, x=1.0, y=-0.8, radius=1.5, colour=1.0)
    target_masks = render_semantics(generator, target, VIEWS).argmax(dim=1)  # (4, 16, 16)

    edit = edit_geometry(generator, source, VIEWS[[0]], target_masks[0], steps=40, lr=0.1, latent_space="w")

    assert torch.equal(generator.split_ws(edit.ws)[1], generator.split_ws(source)[1])  # appearance untouched
    assert edit.losses[-1] < 0.5 * edit.losses[0]
    before = render_semantics(generator, source, VIEWS).argmax(dim=1)
    after = render_semantics(generator, edit.ws, VIEWS).argmax(dim=1)
    iou_before = [mean_iou(before[[v]], target_masks[[v]], NUM_CLASSES).item() for v in range(len(VIEWS))]
    iou_after = [mean_iou(after[[v]], target_masks[[v]], NUM_CLASSES).item() for v in range(len(VIEWS))]
    assert all(a > b + 0.1 for a, b in zip(iou_after, iou_before, strict=True)), (
        iou_before,
        iou_after,
    )  # view 0 was edited
    assert min(iou_after) > 0.8
    code = generator.split_ws(edit.ws)[0][0, 0, :3]
    assert code[0] > 0.5 and code[1] < -0.4 and code[2] > 1.0  # the sphere moved right, down and grew


def test_ignored_pixels_do_not_pull_the_edit():
    generator = sphere_generator()
    source = latents(generator, x=0.0, y=0.0, radius=0.0, colour=0.0)
    ignored = torch.full((16, 16), IGNORE_LABEL)
    ignored[0, 0] = 0  # one background pixel the source already renders as background
    edit = edit_geometry(generator, source, VIEWS[[0]], ignored, steps=5, lr=0.1)
    torch.testing.assert_close(edit.ws, source, atol=0.02, rtol=0)


def test_appearance_swap_and_interpolation_keep_geometry_and_reach_the_other_colour():
    generator = sphere_generator()
    a = latents(generator, x=0.5, y=0.0, radius=0.0, colour=-2.0)
    b = latents(generator, x=-0.5, y=0.5, radius=1.0, colour=2.0)
    mixed = interpolate_appearance(generator, a, b, torch.tensor([0.0, 0.5, 1.0]))
    assert torch.equal(mixed[0], a[0]) and torch.equal(mixed[2], swap_appearance(generator, a, b)[0])
    out = generator.synthesis(mixed, VIEWS[[0, 0, 0]], noise_mode="const")
    reference = generator.synthesis(a, VIEWS[[0]], noise_mode="const")
    assert torch.equal(out.depth, reference.depth.expand_as(out.depth))
    assert torch.equal(out.semantics, reference.semantics.expand_as(out.semantics))
    centre = out.image_raw[:, :, 8, 8] * 0.5 + 0.5  # an opaque pixel: its colour is the sphere's
    expected = torch.sigmoid(torch.tensor([-2.0, 0.0, 2.0]))[:, None].expand(-1, 3)
    torch.testing.assert_close(centre, expected, atol=1e-3, rtol=0)


def test_render_semantics_of_one_latent_matches_rendering_each_view():
    generator = sphere_generator()
    ws = latents(generator, x=0.3, y=0.2, radius=0.5, colour=0.0)
    together = render_semantics(generator, ws, VIEWS)
    separately = generator.synthesis(ws.expand(len(VIEWS), -1, -1), VIEWS, noise_mode="const").semantics
    torch.testing.assert_close(together, separately.softmax(dim=1))


def test_editing_needs_decoupled_latents_and_semantics():
    with pytest.raises(ValueError, match="decoupled_latents"):
        swap_appearance(tiny_generator(), torch.zeros(1, 4, 8), torch.zeros(1, 4, 8))
    generator = tiny_generator(decoupled_latents=True)
    with pytest.raises(ValueError, match="num_semantic_classes"):
        edit_geometry(generator, torch.zeros(1, generator.num_ws, 8), VIEWS[[0]], torch.zeros(8, 8).long())
