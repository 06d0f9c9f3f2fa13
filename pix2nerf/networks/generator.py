"""The 3D-aware generator: mapping -> field parameters -> radiance head -> volume rendering -> super-resolution."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from pix2nerf.cameras import Cameras, rays, z_depth
from pix2nerf.fields.base import BACKGROUND_CLASS, FieldOutput, RadianceHead, density_activation
from pix2nerf.fields.hashgrid import HashGridHead
from pix2nerf.fields.triplane import PlaneOrder, TriPlaneHead
from pix2nerf.networks.mapping import DecoupledMapping, MappingNetwork
from pix2nerf.networks.specs import init_arguments
from pix2nerf.networks.superresolution import SuperResolution
from pix2nerf.networks.synthesis import NoiseMode, SynthesisNetwork
from pix2nerf.precision import at_least_float32, full_precision
from pix2nerf.rendering import Composite, FieldFn, Proposal, RayBundle, VolumeRenderer, upsample_proposal

SEMANTIC_PROBABILITY_FLOOR = 1e-6
"""Rendered class probabilities are clamped to this before their log is taken (finite logits)."""


@dataclass
class GeneratorOutput:
    """Everything one rendering pass produces.

    Attributes:
        image: (B, 3, H, W) in [-1, 1]: super-resolved, or the raw image when there is no super-resolution.
        image_raw: (B, 3, h, w) in [-1, 1]: the first three volume-rendered feature channels.
        depth: (B, 1, h, w) expected depth along each camera's z axis.
        opacity: (B, 1, h, w) accumulated alpha.
        semantics: (B, K, h, w) semantic logits, or None: the log of the class probabilities composited with
            the colour weights (each sample's softmax; empty space is ``BACKGROUND_CLASS``), so
            ``semantics.softmax(1)`` is the rendered distribution and ``cross_entropy`` applies directly.
        features: (B, F, h, w) the volume-rendered feature image in [-1, 1].
        ws: (B, num_ws, w_dim) the latents that produced it.
    """

    image: Tensor
    image_raw: Tensor
    depth: Tensor
    opacity: Tensor
    semantics: Tensor | None
    features: Tensor
    ws: Tensor


class Backbone(nn.Module):
    """Field parameters from latents: a mapping network and, for tri-planes, a StyleGAN2 synthesis network.

    With decoupled latents the mapping is a :class:`DecoupledMapping` and ``appearance_synthesis`` emits
    the appearance planes from the appearance ws.
    """

    def __init__(
        self,
        mapping: MappingNetwork | DecoupledMapping,
        synthesis: SynthesisNetwork | None,
        appearance_synthesis: SynthesisNetwork | None = None,
    ) -> None:
        super().__init__()
        self.mapping = mapping
        self.synthesis = synthesis
        self.appearance_synthesis = appearance_synthesis


PROPOSAL_DILATION = 1
"""Low-resolution pixels either side whose coarse weights a full-resolution ray also samples (``coarse_stride``
> 1), so rays beside a silhouette sample both the surface and what lies behind it."""


def check_coarse_stride(coarse_stride: int, importance_mode: str) -> int:
    """``coarse_stride`` if it is a valid stride for a renderer of ``importance_mode``, else a ValueError."""
    if isinstance(coarse_stride, bool) or not isinstance(coarse_stride, int) or coarse_stride < 1:
        raise ValueError(
            f"coarse_stride must be an integer >= 1 (1: no low-resolution coarse pass), got {coarse_stride!r}"
        )
    if coarse_stride > 1 and importance_mode == "eg3d":
        raise ValueError(
            "coarse_stride > 1 changes where the fine samples go, so it cannot reproduce EG3D exactly; use "
            "importance_mode='standard' or coarse_stride=1"
        )
    return coarse_stride


class Generator(nn.Module):
    """A StyleGAN-like generator of radiance fields, rendered from any camera.

    Args:
        z_dim, w_dim: latent sizes. c_dim: conditioning label size (25 for EG3D cameras; 0 = none).
        mapping_layers: depth of the mapping MLP.
        field: ``"triplane"`` (a synthesis network emits three feature planes) or ``"hashgrid"``
            (a shared multiresolution hash grid decoded by a w-modulated MLP).
        plane_resolution, plane_channels, channel_base, channel_max: tri-plane synthesis size.
        plane_aggregation, plane_order, box_warp: tri-plane sampling (see ``TriPlaneHead``).
        feature_dim: rendered feature channels (the first three are RGB).
        num_semantic_classes: semantic logits per point (0 = none).
        decoder_hidden, decoder_lr_multiplier: decoder MLP.
        hash_levels, hash_table_size_log2, hash_features_per_level, hash_base_resolution,
            hash_max_resolution, hash_num_layers: hash-grid head (see ``HashGridHead``).
        neural_resolution: volume-rendering resolution (changeable per call).
        image_resolution: super-resolved output size; None or equal to ``neural_resolution`` disables
            super-resolution. ``sr_channels`` are the channels of its blocks (see :class:`SuperResolution`: one
            per doubling from ``sr_input_resolution`` (default ``neural_resolution``; neural renderings of other
            sizes are resized to it), plus an optional first block that does not upsample). ``sr_conv_clamp``
            clamps its activations (EG3D: 256 where its release ran super-resolution in fp16).
        ray_start, ray_end: sampling bounds along camera rays (EG3D FFHQ: 2.25 and 3.3).
        num_coarse, num_importance: samples per ray (changeable per call).
        importance_mode: ``"standard"`` or ``"eg3d"`` (exact EG3D bin alignment, for its checkpoints).
        coarse_stride: 1 renders both passes at full resolution (EG3D). s > 1 runs the coarse pass on an image
            s times smaller and lets it place the fine samples of every full-resolution ray, which then
            composites its ``num_importance`` samples alone: ``num_coarse / s^2 + num_importance`` field
            evaluations per ray instead of ``num_coarse + num_importance`` (changeable per call; see
            ``tools/benchmark.py``'s sampling table for its quality at each sample budget).
        conditioning_scale: multiplies the conditioning label (EG3D's ``c_scale``); 0 drops pose conditioning.
        white_background: empty space renders white in every feature channel (EG3D's ``white_back``, ShapeNet).
        eg3d_raw_image: reproduce EG3D's released ``image_raw``, to which super-resolution's first ToRGB is
            added in place when rendering at its input size (what EG3D's dual discriminator sees).
        decoupled_latents: separate geometry and appearance latents (FENeRF; tri-planes only). A second
            synthesis network turns the appearance ws into ``appearance_plane_channels`` extra channels per
            plane that only the colour branch of the decoder reads (:class:`DecoupledDecoder`), so density,
            depth, opacity and semantics depend on the geometry latent alone. Layouts:
            z (B, z_dim) = [z_geometry (z_dim - appearance_z_dim) | z_appearance (appearance_z_dim)];
            ws (B, num_ws, w_dim) = [ws_geometry (num_ws_geometry) | ws_appearance (num_ws - num_ws_geometry)];
            super-resolution reads the last w, an appearance w. See :meth:`split_ws` and :meth:`join_ws`.
        appearance_z_dim: size of the appearance latent inside z (default: half of z_dim).
        appearance_plane_channels: appearance channels per plane (default: ``plane_channels``).
    """

    def __init__(
        self,
        z_dim: int = 512,
        c_dim: int = 25,
        w_dim: int = 512,
        mapping_layers: int = 2,
        field: Literal["triplane", "hashgrid"] = "triplane",
        plane_resolution: int = 256,
        plane_channels: int = 32,
        channel_base: int = 32768,
        channel_max: int = 512,
        plane_aggregation: Literal["mean", "concat"] = "mean",
        plane_order: PlaneOrder = "xy_xz_yz",
        box_warp: float = 1.0,
        feature_dim: int = 32,
        num_semantic_classes: int = 0,
        decoder_hidden: int = 64,
        decoder_lr_multiplier: float = 1.0,
        hash_levels: int = 16,
        hash_table_size_log2: int = 19,
        hash_features_per_level: int = 2,
        hash_base_resolution: int = 16,
        hash_max_resolution: int = 2048,
        hash_num_layers: int = 3,
        neural_resolution: int = 64,
        image_resolution: int | None = 128,
        sr_channels: Sequence[int] = (128, 64),
        sr_antialias: bool = True,
        sr_noise_mode: NoiseMode = "none",
        sr_input_resolution: int | None = None,
        sr_conv_clamp: float | None = None,
        ray_start: float = 2.25,
        ray_end: float = 3.3,
        num_coarse: int = 48,
        num_importance: int = 48,
        importance_mode: Literal["standard", "eg3d"] = "standard",
        coarse_stride: int = 1,
        conditioning_scale: float = 1.0,
        eg3d_raw_image: bool = False,
        white_background: bool = False,
        decoupled_latents: bool = False,
        appearance_z_dim: int | None = None,
        appearance_plane_channels: int | None = None,
    ) -> None:
        arguments = init_arguments(locals())
        super().__init__()
        self.init_args = arguments
        if field not in ("triplane", "hashgrid"):
            raise ValueError(f"field must be 'triplane' or 'hashgrid', got {field!r}")
        if decoupled_latents and field != "triplane":
            raise ValueError("decoupled_latents needs field='triplane' (the hash grid has no per-latent planes)")
        appearance_z_dim = (z_dim // 2 if appearance_z_dim is None else appearance_z_dim) if decoupled_latents else 0
        if decoupled_latents and not 0 < appearance_z_dim < z_dim:
            raise ValueError(f"appearance_z_dim must be in 1..{z_dim - 1} (a part of z_dim), got {appearance_z_dim}")
        appearance_channels = (appearance_plane_channels or plane_channels) if decoupled_latents else 0
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.field, self.feature_dim, self.num_semantic_classes = field, feature_dim, num_semantic_classes
        self.plane_channels, self.appearance_channels = plane_channels, appearance_channels
        self.decoupled_latents = decoupled_latents
        self.neural_resolution, self.ray_start, self.ray_end = neural_resolution, ray_start, ray_end
        self.conditioning_scale = conditioning_scale
        self.coarse_stride = check_coarse_stride(coarse_stride, importance_mode)
        self.head: RadianceHead
        appearance_synthesis = None
        if field == "triplane":
            synthesis = SynthesisNetwork(w_dim, plane_resolution, 3 * plane_channels, channel_base, channel_max)
            num_ws = synthesis.num_ws
            if decoupled_latents:
                appearance_synthesis = SynthesisNetwork(
                    w_dim, plane_resolution, 3 * appearance_channels, channel_base, channel_max
                )
            self.head = TriPlaneHead(
                plane_channels,
                feature_dim,
                num_semantic_classes,
                plane_aggregation,
                plane_order,
                box_warp,
                decoder_hidden,
                decoder_lr_multiplier,
                appearance_channels,
            )
        else:
            synthesis = None
            self.head = HashGridHead(
                w_dim,
                feature_dim,
                num_semantic_classes,
                hash_levels,
                hash_table_size_log2,
                hash_features_per_level,
                hash_base_resolution,
                hash_max_resolution,
                box_warp,
                decoder_hidden,
                hash_num_layers,
            )
            num_ws = self.head.num_ws
        self.num_ws_geometry = num_ws
        mapping: MappingNetwork | DecoupledMapping
        if appearance_synthesis is not None:
            mapping = DecoupledMapping(
                z_dim - appearance_z_dim,
                appearance_z_dim,
                c_dim,
                w_dim,
                num_ws,
                appearance_synthesis.num_ws,
                mapping_layers,
            )
        else:
            mapping = MappingNetwork(z_dim, c_dim, w_dim, num_ws, mapping_layers)
        self.backbone = Backbone(mapping, synthesis, appearance_synthesis)
        self.num_ws = mapping.num_ws
        self.renderer = VolumeRenderer(
            num_coarse, num_importance, density_activation=density_activation, importance_mode=importance_mode
        )
        self.image_resolution = image_resolution or neural_resolution
        self.superresolution = None
        if self.image_resolution != neural_resolution:
            self.superresolution = SuperResolution(
                feature_dim,
                sr_input_resolution or neural_resolution,
                self.image_resolution,
                sr_channels,
                w_dim,
                sr_antialias,
                conv_clamp=sr_conv_clamp,
            )
        self.sr_noise_mode = sr_noise_mode
        self.eg3d_raw_image = eg3d_raw_image
        self.white_background = white_background

    @property
    def w_avg(self) -> Tensor:
        """The running average of mapped latents (the truncation centre, "the average face"): (w_dim,), or
        (num_ws, w_dim) with decoupled latents (geometry and appearance averages)."""
        return self.backbone.mapping.w_avg

    def mapping(
        self,
        z: Tensor,
        c: Tensor | None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool = False,
    ) -> Tensor:
        """z (B, z_dim) and conditioning camera labels c (B, 25) -> ws (B, num_ws, w_dim)."""
        if c is not None and self.c_dim > 0:
            c = c * self.conditioning_scale
        return self.backbone.mapping(z, c, truncation_psi, truncation_cutoff, update_w_avg)

    def split_ws(self, ws: Tensor) -> tuple[Tensor, Tensor]:
        """ws (B, num_ws, w_dim) -> geometry ws (B, num_ws_geometry, w_dim), appearance ws (B, rest, w_dim)."""
        if not self.decoupled_latents:
            raise ValueError("this generator has one latent for shape and appearance; build it with decoupled_latents")
        return ws[:, : self.num_ws_geometry], ws[:, self.num_ws_geometry :]

    def join_ws(self, geometry: Tensor, appearance: Tensor) -> Tensor:
        """The inverse of :meth:`split_ws`: (B, num_ws_geometry, w_dim), (B, rest, w_dim) -> (B, num_ws, w_dim)."""
        if geometry.shape[1] + appearance.shape[1] != self.num_ws or geometry.shape[1] != self.num_ws_geometry:
            raise ValueError(
                f"expected {self.num_ws_geometry} geometry and {self.num_ws - self.num_ws_geometry} appearance ws, "
                f"got {geometry.shape[1]} and {appearance.shape[1]}"
            )
        return torch.cat([geometry, appearance], dim=1)

    def field_params(
        self, ws: Tensor, noise_mode: NoiseMode | None = None, plane_offsets: Tensor | None = None
    ) -> Tensor:
        """What the radiance head reads: tri-planes (B, 3, C (+ A), H, W), or ws for the hash grid.

        With decoupled latents the geometry planes (from the geometry ws) come first on the channel axis,
        then the appearance planes (from the appearance ws). ``plane_offsets`` (B, 3, C (+ A), H, W), e.g. from
        a :class:`~pix2nerf.networks.residual.PlaneResidual`, are added to the planes.
        """
        if self.backbone.synthesis is None:
            if plane_offsets is not None:
                raise ValueError(
                    "plane offsets need tri-planes; the hash-grid head's grid is shared by all latents, so it has "
                    "no per-image planes to offset (use field='triplane', or no plane residual)"
                )
            return ws
        planes = self._planes(ws, noise_mode)
        if plane_offsets is None:
            return planes
        if plane_offsets.shape[1:] != planes.shape[1:]:
            raise ValueError(
                f"plane offsets {tuple(plane_offsets.shape)} do not fit this generator's planes "
                f"{tuple(planes.shape)}; build the plane residual with plane_resolution={planes.shape[-1]} and "
                f"plane_channels={planes.shape[2]}"
            )
        return planes + plane_offsets.to(planes.dtype)

    def _planes(self, ws: Tensor, noise_mode: NoiseMode | None) -> Tensor:
        """(B, 3, C (+ A), H, W) tri-planes of ws from the synthesis network(s)."""
        noise_mode = noise_mode or ("random" if self.training else "const")

        def planes(synthesis: SynthesisNetwork, latents: Tensor, channels: int) -> Tensor:
            out = synthesis(latents, noise_mode)
            return out.reshape(out.shape[0], 3, channels, *out.shape[-2:])

        synthesis, appearance_synthesis = self.backbone.synthesis, self.backbone.appearance_synthesis
        assert synthesis is not None, "tri-plane generators have a synthesis network"
        if appearance_synthesis is None:
            return planes(synthesis, ws, self.plane_channels)
        geometry, appearance = self.split_ws(ws)
        return torch.cat(
            [
                planes(synthesis, geometry, self.plane_channels),
                planes(appearance_synthesis, appearance, self.appearance_channels),
            ],
            dim=2,
        )

    def query(self, points: Tensor, params: Tensor) -> FieldOutput:
        """The field at points (B, N, 3) for field parameters from :meth:`field_params`."""
        return self.head(points, params)

    def render_rays(
        self,
        params: Tensor,
        origins: Tensor,
        directions: Tensor,
        num_coarse: int | None = None,
        num_importance: int | None = None,
        rng: torch.Generator | None = None,
        proposal: Proposal | None = None,
    ) -> Composite:
        """Volume-render the fields of ``params`` (from :meth:`field_params`) along rays (B, R, 3), from a
        coarse pass of their own or, given one, from a ``proposal`` for these rays (see :meth:`propose`).

        Returns the composite: values (B, R, F + K) are the colour features in [0, 1] (over zero, or over white
        with ``white_background``) followed, for semantic generators, by the class probabilities: each sample's
        softmax composited with the colour weights, over ``BACKGROUND_CLASS`` where the ray leaves the field (so
        every pixel's sum is 1).
        Depth is distance along the rays. The field and the compositing run in float32 under any autocast: they
        cost a few per cent of a step, and bf16 densities would visibly shift depth.
        """
        params = at_least_float32(params)
        bundle = RayBundle.between(origins, directions, self.ray_start, self.ray_end)
        background = None
        if self.num_semantic_classes or self.white_background:
            background = torch.zeros(self.feature_dim + self.num_semantic_classes, device=origins.device)
            background[: self.feature_dim] = float(self.white_background)
            if self.num_semantic_classes:
                background[self.feature_dim + BACKGROUND_CLASS] = 1.0
        with full_precision(origins.device):
            return self.renderer(
                self._field_fn(params),
                bundle,
                background=background,
                rng=rng,
                num_coarse=num_coarse,
                num_importance=num_importance,
                proposal=proposal,
            )

    def _field_fn(self, params: Tensor) -> FieldFn:
        """The field of ``params`` as the renderer reads it: semantic probabilities follow the colour features."""

        def field(points: Tensor) -> tuple[Tensor, Tensor]:
            out = self.head(points, params)
            if out.semantics is None:
                return out.sigma, out.features
            return out.sigma, torch.cat([out.features, out.semantics.softmax(dim=-1)], dim=-1)

        return field

    def propose(
        self,
        params: Tensor,
        cameras: Cameras,
        resolution: int,
        coarse_stride: int,
        num_coarse: int | None = None,
        rng: torch.Generator | None = None,
    ) -> Proposal:
        """A coarse pass of the fields of ``params`` rendered ``coarse_stride`` times smaller than
        ``resolution``^2, shared with the full-resolution rays of ``cameras`` (see
        :func:`~pix2nerf.rendering.samplers.upsample_proposal`)."""
        low = math.ceil(resolution / coarse_stride)
        origins, directions = rays(cameras, low)
        bundle = RayBundle.between(origins, directions, self.ray_start, self.ray_end)
        with full_precision(origins.device):
            coarse = self.renderer.propose(self._field_fn(at_least_float32(params)), bundle, rng, num_coarse)
        return Proposal(
            *upsample_proposal(coarse.t, coarse.weights, (low, low), (resolution, resolution), PROPOSAL_DILATION)
        )

    def synthesis(
        self,
        ws: Tensor,
        cameras: Cameras,
        neural_resolution: int | None = None,
        num_coarse: int | None = None,
        num_importance: int | None = None,
        noise_mode: NoiseMode | None = None,
        rng: torch.Generator | None = None,
        params: Tensor | None = None,
        plane_offsets: Tensor | None = None,
        super_resolve: bool = True,
        coarse_stride: int | None = None,
    ) -> GeneratorOutput:
        """Render the fields of ``ws`` (B, num_ws, w_dim) from ``cameras`` (B of them).

        Resolution and samples per ray default to the constructor's and can be changed per call.
        ``params``: the field parameters of ws from :meth:`field_params`, when already computed (e.g. planes
        of a few latents indexed for many views). ``plane_offsets``: see :meth:`field_params` (ignored with
        ``params``, which already hold them). ``super_resolve=False`` skips super-resolution (``image`` is then
        ``image_raw``), e.g. for cheap per-image optimisation of large models. ``coarse_stride`` overrides the
        constructor's for this call.
        """
        if len(cameras) != ws.shape[0]:
            raise ValueError(f"got {ws.shape[0]} latents but {len(cameras)} cameras; pass one camera per latent")
        resolution = neural_resolution or self.neural_resolution
        params = self.field_params(ws, noise_mode, plane_offsets) if params is None else params
        origins, directions = rays(cameras, resolution)
        stride = (
            self.coarse_stride
            if coarse_stride is None
            else check_coarse_stride(coarse_stride, self.renderer.importance_mode)
        )
        proposal = None
        if stride > 1:
            proposal = self.propose(params, cameras, resolution, stride, num_coarse, rng)
        composite = self.render_rays(params, origins, directions, num_coarse, num_importance, rng, proposal)

        def to_image(values: Tensor) -> Tensor:
            return values.transpose(1, 2).reshape(values.shape[0], values.shape[2], resolution, resolution)

        features = to_image(composite.values[..., : self.feature_dim]) * 2.0 - 1.0
        semantics = None
        if self.num_semantic_classes:
            probabilities = to_image(composite.values[..., self.feature_dim :])
            semantics = probabilities.clamp_min(SEMANTIC_PROBABILITY_FLOOR).log()
        image_raw = features[:, :3]
        image = image_raw
        if self.superresolution is not None and super_resolve:
            image, refined_raw = self.superresolution(image_raw, features, ws, self.sr_noise_mode)
            if self.eg3d_raw_image and resolution == self.superresolution.input_resolution:
                image_raw = refined_raw
        return GeneratorOutput(
            image=image,
            image_raw=image_raw,
            depth=to_image(z_depth(composite.depth, directions, cameras)),
            opacity=to_image(composite.opacity),
            semantics=semantics,
            features=features,
            ws=ws,
        )

    def forward(
        self,
        z: Tensor,
        c: Tensor,
        cameras: Cameras | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        **synthesis_kwargs,
    ) -> GeneratorOutput:
        """Map z with conditioning labels c (B, 25) and render from ``cameras`` (default: the cameras of c)."""
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff)
        return self.synthesis(ws, cameras if cameras is not None else Cameras.from_label(c), **synthesis_kwargs)
