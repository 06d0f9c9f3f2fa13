"""FENeRF generator: semantic maps composited with the colour weights; decoupled geometry and appearance latents."""

import pytest
import torch

from pix2nerf.cameras import look_at
from pix2nerf.fields import BACKGROUND_CLASS, FieldOutput, RadianceHead, SpheresField
from pix2nerf.inference.editing import swap_appearance
from pix2nerf.networks.generator import SEMANTIC_PROBABILITY_FLOOR

from ..factories import tiny_generator

NUM_CLASSES = 3
INSIDE_RAW, OUTSIDE_RAW = 1000.0, -30.0
"""Raw densities of the test head: opaque inside the spheres, empty (softplus(-31) ~ 0) outside."""


class SnowmanSemantics(RadianceHead):
    """The snowman head with classes by sphere (1: head, 2: eyes/nose/ears) and RGB = each sample's class softmax.

    Colour and class probabilities are the same function of the same points, so an image composited with the
    colour weights must equal the rendered class map (plus the background class where rays escape).
    """

    feature_dim = NUM_CLASSES
    num_semantic_classes = NUM_CLASSES

    def __init__(self) -> None:
        super().__init__()
        self.spheres = SpheresField.snowman_head()

    def forward(self, points: torch.Tensor, params: torch.Tensor) -> FieldOutput:
        distance, nearest = self.spheres.signed_distance(points).min(dim=-1, keepdim=True)
        sigma = torch.where(distance < 0, INSIDE_RAW, OUTSIDE_RAW)
        # Soft logits that vary within each sphere, so the composite is not just a one-hot.
        classes = torch.where(nearest == 0, 1, 2)[..., 0]
        logits = 4.0 * torch.nn.functional.one_hot(classes, NUM_CLASSES).float() + points.sin()
        return FieldOutput(sigma=sigma, features=logits.softmax(dim=-1), semantics=logits)


def test_semantic_map_is_composited_with_the_colour_weights():
    generator = tiny_generator(feature_dim=NUM_CLASSES, num_semantic_classes=NUM_CLASSES, neural_resolution=16).eval()
    generator.head = SnowmanSemantics()
    cameras = look_at(torch.tensor([0.0, 0.6]), torch.tensor([0.0, 0.2]))
    ws = torch.zeros(2, generator.num_ws, generator.w_dim)
    out = generator.synthesis(ws, cameras, num_coarse=32, num_importance=32)

    probabilities = out.semantics.exp()  # (B, K, h, w); log-probabilities are the logits
    composited_colour = out.features * 0.5 + 0.5  # sum_i w_i softmax_i over a zero background
    expected = composited_colour.clone()
    expected[:, BACKGROUND_CLASS] += 1.0 - out.opacity[:, 0]
    torch.testing.assert_close(probabilities.clamp_min(SEMANTIC_PROBABILITY_FLOOR), expected.clamp_min(1e-6))
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones_like(probabilities[:, 0]))

    labels = out.semantics.argmax(dim=1)
    # Frontal view: forehead, an eye (on the subject's left, the image's right), the nose, an empty corner.
    assert [int(labels[0, 3, 8]), int(labels[0, 5, 10]), int(labels[0, 8, 7]), int(labels[0, 0, 0])] == [1, 2, 2, 0]
    # Pixels whose ray hits a sphere are never background, the others always are.
    assert torch.equal(labels != BACKGROUND_CLASS, out.opacity[:, 0] > 0.5)


def decoupled(**overrides):
    config = dict(decoupled_latents=True, num_semantic_classes=5, image_resolution=16, sr_channels=(8, 8))
    return tiny_generator(**{**config, **overrides}).eval()


def test_appearance_swap_changes_colour_and_nothing_else():
    generator = decoupled()
    cameras = look_at(torch.tensor([-0.3, 0.3]), torch.zeros(2))
    ws = generator.mapping(torch.randn(2, generator.z_dim), cameras.label())
    original = generator.synthesis(ws, cameras, noise_mode="const")
    swapped = generator.synthesis(swap_appearance(generator, ws, ws.flip(0)), cameras, noise_mode="const")
    assert torch.equal(swapped.depth, original.depth)
    assert torch.equal(swapped.opacity, original.opacity)
    assert torch.equal(swapped.semantics, original.semantics)
    assert (swapped.image_raw - original.image_raw).abs().max() > 1e-3
    assert (swapped.image - original.image).abs().max() > 1e-3
    assert original.opacity.mean() > 0.05  # the field is not empty, so geometry could have changed


def test_geometry_receives_no_gradient_from_appearance_latents():
    generator = decoupled()
    cameras = look_at(torch.tensor([0.2]), torch.zeros(1))
    ws = generator.mapping(torch.randn(1, generator.z_dim), cameras.label()).detach().requires_grad_(True)
    out = generator.synthesis(ws, cameras, noise_mode="const")
    (out.depth.sum() + out.opacity.sum() + out.semantics.sum()).backward()
    geometry_grad, appearance_grad = generator.split_ws(ws.grad)
    assert geometry_grad.abs().sum() > 0 and appearance_grad.abs().sum() == 0
    ws.grad = None
    generator.synthesis(ws, cameras, noise_mode="const").image.sum().backward()
    assert generator.split_ws(ws.grad)[1].abs().sum() > 0  # colour does depend on the appearance latent


def test_latent_layout_of_the_decoupled_mapping():
    generator = decoupled()
    geometry_ws = generator.backbone.synthesis.num_ws
    assert generator.num_ws_geometry == geometry_ws and generator.num_ws == 2 * geometry_ws
    cameras = look_at(torch.zeros(2), torch.zeros(2))
    z = torch.randn(2, generator.z_dim)
    other_appearance = z.clone()
    other_appearance[:, generator.z_dim // 2 :] = torch.randn(2, generator.z_dim // 2)  # default: last half of z
    a, b = generator.mapping(z, cameras.label()), generator.mapping(other_appearance, cameras.label())
    assert torch.equal(generator.split_ws(a)[0], generator.split_ws(b)[0])
    assert not torch.allclose(generator.split_ws(a)[1], generator.split_ws(b)[1])
    assert torch.equal(generator.join_ws(*generator.split_ws(a)), a)

    mapping = generator.backbone.mapping
    mapping.geometry.w_avg.normal_()
    mapping.appearance.w_avg.normal_()
    average = generator.mapping(z, cameras.label(), truncation_psi=0.0)
    torch.testing.assert_close(average, mapping.w_avg.expand(2, -1, -1))
    assert mapping.w_avg.shape == (generator.num_ws, generator.w_dim)


def test_gradients_reach_every_parameter_of_a_decoupled_semantic_generator():
    generator = decoupled(sr_noise_mode="random").train()
    cameras = look_at(torch.tensor([0.1, -0.2]), torch.zeros(2))
    out = generator(torch.randn(2, generator.z_dim), cameras.label())
    (out.image.square().mean() + out.image_raw.mean() + out.depth.mean() + out.semantics.mean()).backward()
    missing = [name for name, p in generator.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_single_latent_generators_are_unchanged_and_refuse_splits():
    generator = tiny_generator()
    assert generator.num_ws == generator.num_ws_geometry == generator.backbone.synthesis.num_ws
    assert not any("appearance" in name for name in generator.state_dict())
    with pytest.raises(ValueError, match="decoupled_latents"):
        generator.split_ws(torch.zeros(1, generator.num_ws, generator.w_dim))
    with pytest.raises(ValueError, match="triplane"):
        tiny_generator(field="hashgrid", decoupled_latents=True)
    with pytest.raises(ValueError, match="appearance_z_dim"):
        tiny_generator(decoupled_latents=True, appearance_z_dim=8)
