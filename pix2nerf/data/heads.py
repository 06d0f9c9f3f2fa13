"""Procedural 3D heads: per-identity parameters, a signed-distance head and a batched sphere tracer.

A head is a composition of simple signed-distance primitives in world units (the face looks toward +z,
the face pivot is (0, 0, 0.2), see :mod:`pix2nerf.cameras`): skull and jaw, chin, brow ridge, nose,
ears and neck are smoothly unioned into one skin surface; eyes (sclera, iris, pupil), brows, lips and
hair sit on it. Every quantity that varies between identities is drawn from an integer seed, so
``sample_heads([seed])`` always rebuilds the same head. Shading is Lambertian with a light fixed in
the world, so a surface point has the same colour from every camera (multi-view consistent ground truth).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from pix2nerf.cameras import Cameras, rays, z_depth

# Semantic class ids of CelebAMask-HQ (19-class face parsing). "l_" is the subject's left (world +x).
SEMANTIC_CLASSES = {
    "background": 0,
    "skin": 1,
    "nose": 2,
    "l_eye": 4,
    "r_eye": 5,
    "l_brow": 6,
    "r_brow": 7,
    "l_ear": 8,
    "r_ear": 9,
    "u_lip": 11,
    "l_lip": 12,
    "hair": 13,
    "neck": 17,
}
NUM_SEMANTIC_CLASSES = 19
"""Size of the CelebAMask-HQ label space (ids 3, 10, 14-16, 18 never occur in synthetic heads)."""

HAIRSTYLES = ("short", "long", "bob", "bun", "buzz")

_SKIN_TONES = torch.tensor(
    [[0.96, 0.80, 0.69], [0.90, 0.70, 0.56], [0.78, 0.57, 0.44], [0.60, 0.42, 0.30], [0.40, 0.27, 0.19]]
)
_HAIR_COLOURS = torch.tensor(
    [
        [0.08, 0.06, 0.05],
        [0.25, 0.16, 0.09],
        [0.45, 0.30, 0.17],
        [0.80, 0.65, 0.40],
        [0.55, 0.22, 0.10],
        [0.62, 0.62, 0.62],
    ]
)
_IRIS_COLOURS = torch.tensor(
    [[0.35, 0.20, 0.10], [0.25, 0.45, 0.70], [0.30, 0.50, 0.30], [0.50, 0.40, 0.20], [0.45, 0.50, 0.55]]
)
_ZERO = torch.zeros(1, dtype=torch.float64)
_SCLERA = (0.93, 0.92, 0.88)
_PUPIL = (0.03, 0.03, 0.03)

NECK_BOTTOM = -0.55
"""The neck (and the rest of the body) is cut off below this height, outside every face camera's view."""
HEAD_BOUND_CENTRE = (0.0, 0.02, 0.03)
HEAD_BOUND_RADIUS = 0.43
"""A sphere containing every head above the neck: skull, hair, bun, nose, ears, chin."""
COLUMN_BOUND_AXIS = (0.0, -0.03)
COLUMN_BOUND_RADIUS = 0.3
COLUMN_BOUND_HEIGHT = (NECK_BOTTOM - 0.05, 0.1)
"""A vertical cylinder (x, z axis; radius; y range) containing the neck and long hair."""

SKIN_BLEND = 0.04
"""Smooth-union radius of the large skin parts (skull, jaw, neck)."""
FEATURE_BLEND = 0.015
"""Smooth-union radius of small skin features (nose, ears, brow ridge, chin)."""
NOSE_TIP_SETBACK = 0.008
"""The rounded tip of the nose is a sphere centred this far behind the nose tip parameter (world z)."""


# ---------------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------------


class _Rows:
    """A named block of ``width`` rows of :attr:`HeadParams.packed`, read as a (width, M, ...) view."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.rows = slice(0)

    def __get__(self, params: HeadParams, owner: type | None = None) -> Tensor:
        return params.packed[self.rows]


class HeadParams:
    """Per-identity head parameters for M rows (identities, or one row per ray).

    Stored structure-of-arrays as ``packed`` (PARAM_DIM, M): ``params.skull_radii`` is a (3, M) view
    whose rows are contiguous, which keeps the per-point SDF arithmetic vectorised and cache friendly.
    Every quantity the SDF and the colouring read is one attribute below (its width in rows), packed into
    one matrix so that sphere tracing can compact rays and their heads with a single gather.
    """

    skull_centre = _Rows(3)
    skull_radii = _Rows(3)
    jaw_centre = _Rows(3)
    jaw_radii = _Rows(3)
    chin_centre = _Rows(3)
    chin_radius = _Rows(1)
    ridge_centre = _Rows(3)
    ridge_radii = _Rows(3)
    eye_centre = _Rows(3)  # the subject's left eye; the right one mirrors it in x
    eye_radius = _Rows(1)
    iris_cos = _Rows(1)
    pupil_cos = _Rows(1)
    brow_centre = _Rows(3)
    brow_radii = _Rows(3)
    brow_tilt = _Rows(1)
    nose_root = _Rows(3)
    nose_tip = _Rows(3)
    nose_radius = _Rows(1)
    tip_radius = _Rows(1)
    ala_centre = _Rows(3)
    ala_radius = _Rows(1)
    upper_lip_centre = _Rows(3)
    upper_lip_radii = _Rows(3)
    lower_lip_centre = _Rows(3)
    lower_lip_radii = _Rows(3)
    ear_centre = _Rows(3)
    ear_radii = _Rows(3)
    neck_top = _Rows(3)
    neck_radius = _Rows(1)
    hair_radii = _Rows(3)
    hairline = _Rows(1)
    hairline_slope = _Rows(1)
    hairstyle = _Rows(1)
    hair_fall_top = _Rows(1)
    bun_centre = _Rows(3)
    bun_radius = _Rows(1)
    skin_colour = _Rows(3)
    lip_colour = _Rows(3)
    hair_colour = _Rows(3)
    iris_colour = _Rows(3)
    background = _Rows(3)
    light = _Rows(3)
    ambient = _Rows(1)
    texture_freq = _Rows(3)
    texture_phase = _Rows(3)

    def __init__(self, packed: Tensor) -> None:
        if packed.ndim < 2 or packed.shape[0] != PARAM_DIM:
            raise ValueError(f"packed head parameters must be ({PARAM_DIM}, M, ...), got {tuple(packed.shape)}")
        self.packed = packed

    def __len__(self) -> int:
        return self.packed.shape[1]

    def take(self, index: Tensor) -> HeadParams:
        """The parameters of rows ``index`` (M',) (long), e.g. one row per ray."""
        return HeadParams(self.packed.index_select(1, index))

    def to(self, device: torch.device | str) -> HeadParams:
        return HeadParams(self.packed.to(device))


_LAYOUT = {name: rows for name, rows in vars(HeadParams).items() if isinstance(rows, _Rows)}
"""The packed order of :class:`HeadParams`' attributes (their definition order)."""
PARAM_DIM = 0
for _rows in _LAYOUT.values():
    _rows.rows = slice(PARAM_DIM, PARAM_DIM + _rows.width)
    PARAM_DIM += _rows.width


def _uniform(rng: torch.Generator, low: float, high: float, *shape: int) -> Tensor:
    return low + (high - low) * torch.rand(shape or (1,), generator=rng, dtype=torch.float64)


def _choice(rng: torch.Generator, table: Tensor) -> Tensor:
    index = int(torch.randint(len(table), (1,), generator=rng))
    return table[index].double()


def _ellipsoid_front_z(centre: Tensor, radii: Tensor, x: float | Tensor, y: float | Tensor) -> Tensor:
    """z of an ellipsoid's front surface above the point (x, y) (clamped at its silhouette)."""
    inside = 1.0 - ((x - centre[0]) / radii[0]) ** 2 - ((y - centre[1]) / radii[1]) ** 2
    return centre[2] + radii[2] * torch.as_tensor(inside).clamp_min(0.0).sqrt()


def _one_head(seed: int, random_light: bool) -> Tensor:
    """Draw one identity's parameters from ``seed`` and lay its features out on its skull."""
    g = torch.Generator().manual_seed(int(seed))
    u = lambda low, high, n=1: _uniform(g, low, high, n)  # noqa: E731 - local shorthand
    p: dict[str, Tensor] = {}

    skull_radii = torch.cat([u(0.165, 0.19), u(0.205, 0.23), u(0.2, 0.225)])
    skull_centre = torch.tensor([0.0, 0.05, 0.035], dtype=torch.float64) + torch.cat(
        [_ZERO, u(-0.01, 0.01), u(-0.01, 0.01)]
    )
    p["skull_centre"], p["skull_radii"] = skull_centre, skull_radii
    jaw_width = u(0.115, 0.15)
    p["jaw_centre"] = torch.cat([_ZERO, u(-0.075, -0.055), u(0.07, 0.1)])
    p["jaw_radii"] = torch.cat([jaw_width, u(0.14, 0.16), u(0.16, 0.18)])
    p["chin_centre"] = torch.cat([_ZERO, p["jaw_centre"][1:2] - p["jaw_radii"][1:2] + u(0.05, 0.065), u(0.19, 0.22)])
    p["chin_radius"] = u(0.03, 0.042)

    eye_x, eye_y = u(0.055, 0.07), u(0.035, 0.06)
    eye_radius = u(0.024, 0.029)
    face_z = torch.maximum(
        _ellipsoid_front_z(skull_centre, skull_radii, eye_x, eye_y),
        _ellipsoid_front_z(p["jaw_centre"], p["jaw_radii"], eye_x, eye_y),
    )
    p["eye_centre"] = torch.cat([eye_x, eye_y, face_z - eye_radius + u(0.004, 0.008)])
    p["eye_radius"] = eye_radius
    iris_angle = u(0.42, 0.52)
    p["iris_cos"], p["pupil_cos"] = torch.cos(iris_angle), torch.cos(iris_angle * u(0.35, 0.5))
    p["ridge_centre"] = torch.cat([eye_x, eye_y + 0.04, face_z - 0.012])
    p["ridge_radii"] = torch.cat([u(0.04, 0.05), u(0.014, 0.02), u(0.018, 0.024)])
    p["brow_centre"] = torch.cat([eye_x + u(0.0, 0.008), eye_y + u(0.04, 0.055), face_z + u(0.006, 0.01)])
    p["brow_radii"] = torch.cat([u(0.03, 0.04), u(0.005, 0.009), u(0.012, 0.016)])
    p["brow_tilt"] = u(-0.25, 0.2)

    centre_z = _ellipsoid_front_z(skull_centre, skull_radii, 0.0, eye_y)
    nose_length = u(0.07, 0.1)
    tip_y = eye_y - nose_length
    tip_face_z = torch.maximum(
        _ellipsoid_front_z(skull_centre, skull_radii, 0.0, tip_y),
        _ellipsoid_front_z(p["jaw_centre"], p["jaw_radii"], 0.0, tip_y),
    )
    p["nose_root"] = torch.cat([_ZERO, eye_y - 0.01, centre_z - 0.006])
    p["nose_tip"] = torch.cat([_ZERO, tip_y, tip_face_z + u(0.022, 0.038)])
    p["nose_radius"], p["tip_radius"] = u(0.011, 0.016), u(0.018, 0.026)
    p["ala_centre"] = torch.cat([u(0.016, 0.024), tip_y - 0.006, tip_face_z + 0.006])
    p["ala_radius"] = u(0.012, 0.017)

    mouth_y = tip_y - u(0.04, 0.055)
    mouth_z = torch.maximum(
        _ellipsoid_front_z(skull_centre, skull_radii, 0.0, mouth_y),
        _ellipsoid_front_z(p["jaw_centre"], p["jaw_radii"], 0.0, mouth_y),
    )
    mouth_width = u(0.032, 0.048)
    p["upper_lip_centre"] = torch.cat([_ZERO, mouth_y + 0.007, mouth_z - 0.008])
    p["upper_lip_radii"] = torch.cat([mouth_width, u(0.007, 0.011), u(0.014, 0.018)])
    p["lower_lip_centre"] = torch.cat([_ZERO, mouth_y - 0.01, mouth_z - 0.01])
    p["lower_lip_radii"] = torch.cat([mouth_width * 0.9, u(0.009, 0.014), u(0.014, 0.018)])

    ear_scale = u(0.85, 1.15)
    p["ear_centre"] = torch.cat([skull_radii[0:1] - 0.008, eye_y - u(0.015, 0.03), skull_centre[2:3] - u(0.0, 0.03)])
    p["ear_radii"] = torch.cat([u(0.014, 0.02), 0.055 * ear_scale, 0.034 * ear_scale])
    p["neck_top"] = torch.cat([_ZERO, u(-0.13, -0.1), u(-0.02, 0.02)])
    p["neck_radius"] = u(0.075, 0.095)

    hairstyle = int(torch.randint(len(HAIRSTYLES), (1,), generator=g))
    thickness = u(0.004, 0.008) if HAIRSTYLES[hairstyle] == "buzz" else u(0.015, 0.035)
    p["hair_radii"] = skull_radii + thickness * torch.tensor([1.0, 1.4, 1.0], dtype=torch.float64)
    p["hairline"] = eye_y + u(0.095, 0.135)
    p["hairline_slope"] = u(0.7, 1.1)
    p["hairstyle"] = torch.tensor([float(hairstyle)], dtype=torch.float64)
    p["hair_fall_top"] = u(-0.05, 0.0)
    p["bun_centre"] = torch.cat([_ZERO, u(0.18, 0.24), u(-0.2, -0.14)])
    p["bun_radius"] = u(0.06, 0.085)

    tone = torch.rand(1, generator=g, dtype=torch.float64) * (len(_SKIN_TONES) - 1)
    low = int(tone.floor().clamp(max=len(_SKIN_TONES) - 2))
    frac = tone - low
    p["skin_colour"] = (1 - frac) * _SKIN_TONES[low].double() + frac * _SKIN_TONES[low + 1].double()
    p["lip_colour"] = p["skin_colour"] * torch.tensor([0.85, 0.55, 0.55], dtype=torch.float64) + u(0.0, 0.08)
    p["hair_colour"] = (_choice(g, _HAIR_COLOURS) * u(0.85, 1.15)).clamp(0, 1)
    p["iris_colour"] = (_choice(g, _IRIS_COLOURS) * u(0.8, 1.2)).clamp(0, 1)
    p["background"] = u(0.35, 0.9) * torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64) + u(-0.08, 0.08, 3)
    light = torch.cat([u(-0.6, 0.6), u(0.1, 0.7), u(0.8, 1.0)]) if random_light else torch.tensor([0.3, 0.45, 1.0])
    p["light"] = light.double() / light.norm()
    p["ambient"] = u(0.3, 0.45) if random_light else torch.tensor([0.38], dtype=torch.float64)
    p["texture_freq"] = u(25.0, 45.0, 3)
    p["texture_phase"] = u(0.0, 2 * math.pi, 3)
    return torch.cat([p[name].reshape(-1) for name in _LAYOUT])


def sample_heads(seeds: Sequence[int] | Tensor, random_light: bool = True) -> HeadParams:
    """Build the heads of identity ``seeds`` (deterministic: one seed is always the same head).

    Args:
        seeds: B integer identity seeds.
        random_light: draw light direction and ambient level per identity; False uses one fixed light.
    """
    seeds = [int(s) for s in seeds]
    return HeadParams(torch.stack([_one_head(s, random_light) for s in seeds], dim=1).float())


# ---------------------------------------------------------------------------------------------------
# Signed distances
# ---------------------------------------------------------------------------------------------------


# Points inside this module are structure-of-arrays, (3, ...): row 0 is x, row 1 is y, row 2 is z, and
# parameters broadcast against them: (k, M) for M points with a head each, or (k, B, 1) for B heads
# with many points each.


def _length(v: Tensor) -> Tensor:
    return (v * v).sum(dim=0).sqrt()


def _sphere(p: Tensor, centre: Tensor, radius: Tensor) -> Tensor:
    return _length(p - centre) - radius[0]


def _ellipsoid(p: Tensor, centre: Tensor | float, radii: Tensor) -> Tensor:
    """Close approximation of an ellipsoid's signed distance (Quilez's k0 (k0 - 1) / k1)."""
    scaled = (p - centre) / radii
    k0 = _length(scaled)
    k1 = _length(scaled / radii).clamp_min(1e-9)
    return k0 * (k0 - 1.0) / k1


def _capsule(p: Tensor, a: Tensor, b: Tensor, radius: Tensor) -> Tensor:
    pa, ba = p - a, b - a
    h = ((pa * ba).sum(dim=0) / (ba * ba).sum(dim=0)).clamp(0.0, 1.0)
    return _length(pa - ba * h) - radius[0]


def _smooth_union(a: Tensor, b: Tensor, k: float) -> Tensor:
    """Polynomial smooth minimum: blends two surfaces within distance ``k`` of each other."""
    h = (k - (a - b).abs()).clamp_min(0.0) / k
    return torch.minimum(a, b) - h * h * (k * 0.25)


def _mirror(p: Tensor) -> Tensor:
    """Fold x onto the subject's left: symmetric features are modelled once."""
    return torch.cat([p[:1].abs(), p[1:]], dim=0)


def _tilted(p: Tensor, centre: Tensor, angle: Tensor) -> Tensor:
    """Points relative to ``centre``, rotated by ``angle`` about z (for brows)."""
    q = p - centre
    cos, sin = torch.cos(angle[0]), torch.sin(angle[0])
    return torch.stack([cos * q[0] + sin * q[1], cos * q[1] - sin * q[0], q[2]], dim=0)


def _constant(values: tuple[float, ...], like: Tensor) -> Tensor:
    """A (3, 1, ...) constant that broadcasts against ``like`` (3, ...)."""
    return torch.tensor(values, device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


@dataclass
class HeadParts:
    """Signed distances (M,) of each part at M points; the head is their union."""

    skin: Tensor
    nose: Tensor
    ears: Tensor
    neck: Tensor
    eyes: Tensor
    brows: Tensor
    upper_lip: Tensor
    lower_lip: Tensor
    hair: Tensor

    def union(self) -> Tensor:
        features = torch.minimum(torch.minimum(self.eyes, self.brows), torch.minimum(self.upper_lip, self.lower_lip))
        return torch.minimum(torch.minimum(self.skin, features), self.hair)

    def stacked(self) -> Tensor:
        """(9, M) distances in the order of ``_PART_CLASSES``."""
        return torch.stack(
            [
                self.skin,
                self.nose,
                self.ears,
                self.neck,
                self.eyes,
                self.brows,
                self.upper_lip,
                self.lower_lip,
                self.hair,
            ]
        )


def _parts(p: Tensor, h: HeadParams) -> HeadParts:
    sym = _mirror(p)
    head = _smooth_union(
        _ellipsoid(p, h.skull_centre, h.skull_radii), _ellipsoid(p, h.jaw_centre, h.jaw_radii), SKIN_BLEND
    )
    head = _smooth_union(head, _sphere(p, h.chin_centre, h.chin_radius), 2 * FEATURE_BLEND)
    head = _smooth_union(head, _ellipsoid(sym, h.ridge_centre, h.ridge_radii), FEATURE_BLEND)

    nose = torch.minimum(
        _capsule(p, h.nose_root, h.nose_tip, h.nose_radius),
        _sphere(p, h.nose_tip - _constant((0.0, 0.0, NOSE_TIP_SETBACK), p), h.tip_radius),
    )
    nose = torch.minimum(nose, _sphere(sym, h.ala_centre, h.ala_radius))
    ears = _ellipsoid(sym, h.ear_centre, h.ear_radii)
    neck_bottom = h.neck_top * _constant((0.0, 0.0, 1.0), p) + _constant((0.0, NECK_BOTTOM, 0.0), p)
    neck = torch.maximum(_capsule(p, h.neck_top, neck_bottom, h.neck_radius), NECK_BOTTOM + 0.02 - p[1])

    skin = _smooth_union(_smooth_union(head, nose, FEATURE_BLEND), ears, FEATURE_BLEND)
    skin = _smooth_union(skin, neck, SKIN_BLEND)
    eyes = _sphere(sym, h.eye_centre, h.eye_radius)
    brows = _ellipsoid(_tilted(sym, h.brow_centre, h.brow_tilt), 0.0, h.brow_radii)
    upper_lip = _ellipsoid(p, h.upper_lip_centre, h.upper_lip_radii)
    lower_lip = _ellipsoid(p, h.lower_lip_centre, h.lower_lip_radii)
    return HeadParts(skin, nose, ears, neck, eyes, brows, upper_lip, lower_lip, _hair(p, h))


def _hair(p: Tensor, h: HeadParams) -> Tensor:
    """Hair: a shell over the skull above a tilted hairline, plus the volume of the hairstyle."""
    shell = _ellipsoid(p, h.skull_centre, h.hair_radii)
    slope = h.hairline_slope[0]
    hairline = h.hairline[0] - slope * (HAIRLINE_FRONT_Z - p[2]).clamp_min(0.0)
    hair = torch.maximum(shell, (hairline - p[1]) / torch.sqrt(1.0 + slope * slope))

    style = h.hairstyle[0]
    long_hair = style == HAIRSTYLES.index("long")
    has_fall = long_hair | (style == HAIRSTYLES.index("bob"))
    if bool(has_fall.any()):
        # Long hair and bobs: a rounded slab behind and beside the head, kept off the face.
        top = h.hair_fall_top[0]
        bottom = torch.where(long_hair, -0.34, -0.17)
        half_size = torch.stack([h.hair_radii[0] + 0.01, 0.5 * (top - bottom), torch.full_like(top, 0.14)])
        centre = torch.stack([torch.zeros_like(top), 0.5 * (top + bottom), h.skull_centre[2] - 0.06])
        q = (p - centre).abs() - half_size + HAIR_ROUNDING
        fall = _length(q.clamp_min(0.0)) + q.amax(dim=0).clamp_max(0.0) - HAIR_ROUNDING
        fall = torch.maximum(fall, p[2] - (h.skull_centre[2] + 0.07))
        hair = torch.where(has_fall, _smooth_union(hair, fall, 0.03), hair)
    bun = style == HAIRSTYLES.index("bun")
    if bool(bun.any()):
        hair = torch.where(bun, _smooth_union(hair, _sphere(p, h.bun_centre, h.bun_radius), 0.02), hair)
    return hair


HAIRLINE_FRONT_Z = 0.2
"""The hairline is at its parameter height in front of this z and falls with its slope behind it."""
HAIR_ROUNDING = 0.04


def head_sdf(points: Tensor, h: HeadParams) -> Tensor:
    """Signed distance (M,) of the whole head at ``points`` (M, 3) of heads ``h`` (M rows)."""
    return _parts(points.t(), h).union()


# ---------------------------------------------------------------------------------------------------
# Labels and colours of surface points
# ---------------------------------------------------------------------------------------------------

_PART_CLASSES = ("skin", "nose", "ear", "neck", "eye", "brow", "u_lip", "l_lip", "hair")
LABEL_MARGIN = 0.5 * FEATURE_BLEND
"""A blended skin point belongs to the nose, an ear or the neck when that part is this close to it."""


def _labels(p: Tensor, h: HeadParams) -> Tensor:
    distances = _parts(p, h).stacked()
    distances[0] += LABEL_MARGIN
    nearest = distances.argmin(dim=0)
    left = p[0] >= 0
    ids = torch.empty_like(nearest)
    c = SEMANTIC_CLASSES
    for part, name in enumerate(_PART_CLASSES):
        if name in c:
            value = torch.full_like(nearest, c[name])
        else:
            value = torch.where(left, c[f"l_{name}"], c[f"r_{name}"])
        ids = torch.where(nearest == part, value, ids)
    return ids


def _albedo(p: Tensor, labels: Tensor, h: HeadParams) -> Tensor:
    """Surface colour (3, M) in [0, 1]."""
    c = SEMANTIC_CLASSES
    wave = torch.sin(p * h.texture_freq + h.texture_phase)
    pores = 1.0 + 0.035 * wave.prod(dim=0) + 0.02 * wave[0]
    sym = _mirror(p)
    cheek_centre = h.eye_centre + _constant((0.02, -0.06, 0.0), p)
    blush = torch.exp(-((sym - cheek_centre) ** 2).sum(dim=0) / 0.002)
    skin = h.skin_colour * pores * (1.0 - 0.12 * blush * _constant((0.0, 1.0, 1.0), p))
    strands = 1.0 + 0.12 * torch.sin(140.0 * (p[0] + 0.35 * p[2]) + 20.0 * p[1])
    eye_cos = (sym[2] - h.eye_centre[2]) / _length(sym - h.eye_centre).clamp_min(1e-9)
    eye = torch.where(eye_cos > h.iris_cos[0], h.iris_colour, _constant(_SCLERA, p))
    eye = torch.where(eye_cos > h.pupil_cos[0], _constant(_PUPIL, p), eye)

    albedo = skin
    albedo = torch.where(labels == c["nose"], skin * _constant((1.02, 0.95, 0.95), p), albedo)
    albedo = torch.where(labels == c["neck"], skin * 0.9, albedo)
    albedo = torch.where((labels == c["u_lip"]) | (labels == c["l_lip"]), h.lip_colour * pores, albedo)
    albedo = torch.where((labels == c["l_brow"]) | (labels == c["r_brow"]), h.hair_colour * 0.8, albedo)
    albedo = torch.where(labels == c["hair"], h.hair_colour * strands, albedo)
    albedo = torch.where((labels == c["l_eye"]) | (labels == c["r_eye"]), eye, albedo)
    return albedo.clamp(0.0, 1.0)


NORMAL_STEP = 5e-4
"""Finite-difference step for surface normals (well below a pixel at 512^2)."""
_TETRAHEDRON = ((1.0, -1.0, -1.0), (-1.0, -1.0, 1.0), (-1.0, 1.0, -1.0), (1.0, 1.0, 1.0))


def _normals(p: Tensor, h: HeadParams) -> Tensor:
    """Unit outward normals (3, M): the SDF gradient from 4 tetrahedral probes."""
    corners = torch.tensor(_TETRAHEDRON, device=p.device, dtype=p.dtype)  # (4, 3)
    probes = (p[:, None, :] + corners.t()[:, :, None] * NORMAL_STEP).reshape(3, -1)
    values = _parts(probes, HeadParams(h.packed.repeat(1, len(corners)))).union().reshape(len(corners), -1)
    gradient = (corners.t()[:, :, None] * values[None]).sum(dim=1)
    return gradient / _length(gradient).clamp_min(1e-12)


# ---------------------------------------------------------------------------------------------------
# Sphere tracing
# ---------------------------------------------------------------------------------------------------

MAX_STEPS = 96
HIT_EPSILON = 1e-4
"""A ray has hit the surface once the SDF is below this (world units; a 512^2 pixel is ~1e-3 wide)."""
STEP_SCALE = 0.9
"""Under-relaxation of sphere-tracing steps: the SDF is approximate (ellipsoids, smooth unions)."""
COMPACT_FRACTION = 0.3
"""Finished rays are dropped from the marching set once they make up this fraction of it."""


@dataclass
class HeadImages:
    """Rendered views of heads.

    Attributes:
        image: (B, 3, H, W) shaded RGB in [-1, 1] over the head's background colour.
        depth: (B, 1, H, W) depth along the camera z axis; +inf where the ray misses the head.
        mask: (B, 1, H, W) bool foreground mask (exactly where depth is finite).
        semantics: (B, H, W) int64 CelebAMask-HQ class ids (0 = background).
    """

    image: Tensor
    depth: Tensor
    mask: Tensor
    semantics: Tensor


def _sphere_interval(o: Tensor, d: Tensor, centre: tuple, radius: float) -> tuple[Tensor, Tensor]:
    """Entry and exit distances (M,) of unit rays (3, M) through a sphere (entry > exit on a miss)."""
    offset = o - _constant(centre, o)
    b = (offset * d).sum(dim=0)
    disc = b * b - ((offset * offset).sum(dim=0) - radius**2)
    root = torch.where(disc > 0, disc.clamp_min(0.0).sqrt(), -math.inf)
    return -b - root, -b + root


def _column_interval(o: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    """Entry and exit distances (M,) of unit rays (3, M) through the bounding cylinder (entry > exit on a miss)."""
    ox, oz = o[0] - COLUMN_BOUND_AXIS[0], o[2] - COLUMN_BOUND_AXIS[1]
    a = (d[0] * d[0] + d[2] * d[2]).clamp_min(1e-12)
    b = ox * d[0] + oz * d[2]
    disc = b * b - a * (ox * ox + oz * oz - COLUMN_BOUND_RADIUS**2)
    root = torch.where(disc > 0, disc.clamp_min(0.0).sqrt(), -math.inf)
    dy = torch.where(d[1].abs() < 1e-12, 1e-12, d[1])
    y0 = (COLUMN_BOUND_HEIGHT[0] - o[1]) / dy
    y1 = (COLUMN_BOUND_HEIGHT[1] - o[1]) / dy
    return torch.maximum((-b - root) / a, torch.minimum(y0, y1)), torch.minimum((-b + root) / a, torch.maximum(y0, y1))


class _Marching(NamedTuple):
    """Rays still being traced, packed per image: every field is (B, C) (or (3, B, C) for o and d)."""

    ray: Tensor  # index of the ray in its image's row
    t: Tensor
    t_exit: Tensor
    done: Tensor
    hit: Tensor
    o: Tensor
    d: Tensor

    def packed(self) -> _Marching:
        """Move each image's unfinished rays to the front of its row; drop the columns no image needs."""
        order = torch.argsort(self.done.to(torch.uint8), dim=1, stable=True)
        order = order[:, : max(int((~self.done).sum(dim=1).max()), 1)]
        ray, t, t_exit, done, hit = (x.gather(1, order) for x in (self.ray, self.t, self.t_exit, self.done, self.hit))
        o, d = (x.gather(2, order.expand(3, -1, -1)) for x in (self.o, self.d))
        return _Marching(ray, t, t_exit, done, hit, o, d)

    def write_to(self, t: Tensor, hit: Tensor) -> None:
        t.scatter_(1, self.ray, self.t)
        hit.scatter_(1, self.ray, self.hit)


def trace(origins: Tensor, directions: Tensor, heads: HeadParams) -> tuple[Tensor, Tensor]:
    """Sphere-trace the unit rays (B, R, 3) of B images against their heads (B rows).

    Rays start where they enter the heads' bounding volumes (rays that miss them are background at no
    cost). Rays still marching are packed to the front of each image's row, so every step evaluates
    a (B, C) block with C <= R, and head parameters broadcast per image instead of being copied per ray.

    Returns:
        t: (B, R) distance to the surface along each ray, +inf on a miss.
        hit: (B, R) bool.
    """
    batch, num_rays = origins.shape[:2]
    o, d = origins.permute(2, 0, 1).contiguous(), directions.permute(2, 0, 1).contiguous()
    head_in, head_out = _sphere_interval(o, d, HEAD_BOUND_CENTRE, HEAD_BOUND_RADIUS)
    column_in, column_out = _column_interval(o, d)
    head_hit, column_hit = head_out > head_in, column_out > column_in
    start = torch.minimum(torch.where(head_hit, head_in, math.inf), torch.where(column_hit, column_in, math.inf))
    end = torch.maximum(torch.where(head_hit, head_out, -math.inf), torch.where(column_hit, column_out, -math.inf))
    misses = ~((head_hit | column_hit) & (end > 0))
    ray = torch.arange(num_rays, device=o.device).expand(batch, -1)
    rays_left = _Marching(ray, start.clamp_min(0.0), end, misses, torch.zeros_like(misses), o, d).packed()
    params = HeadParams(heads.packed[:, :, None])

    t, hit = torch.full((batch, num_rays), math.inf, device=o.device), torch.zeros_like(misses)
    for _ in range(MAX_STEPS):
        r = rays_left
        distance = _parts(r.o + r.t * r.d, params).union()
        arrived = (distance < HIT_EPSILON) & ~r.done
        t_next = r.t + torch.where(r.done | arrived, 0.0, distance * STEP_SCALE)
        done = r.done | arrived | (t_next >= r.t_exit)
        rays_left = r._replace(t=t_next, done=done, hit=r.hit | arrived)
        num_done = int(done.sum())
        if num_done == done.numel():
            break
        if num_done > COMPACT_FRACTION * done.numel():
            rays_left.write_to(t, hit)
            rays_left = rays_left.packed()
    rays_left.write_to(t, hit)
    return torch.where(hit, t, math.inf), hit


def render_heads(heads: HeadParams, cameras: Cameras, resolution: int | tuple[int, int]) -> HeadImages:
    """Render B heads, one per camera, at ``resolution`` by batched sphere tracing."""
    if len(heads) != len(cameras):
        raise ValueError(f"render_heads needs one camera per head, got {len(heads)} heads and {len(cameras)} cameras")
    height, width = (resolution, resolution) if isinstance(resolution, int) else resolution
    heads = heads.to(cameras.device)
    batch, pixels = len(cameras), height * width
    origins, directions = rays(cameras, (height, width))
    t, hit = trace(origins, directions, heads)
    t, hit = t.reshape(-1), hit.reshape(-1)
    ray_heads = torch.arange(batch, device=cameras.device).repeat_interleave(pixels)

    index = torch.nonzero(hit).squeeze(-1)
    surface_heads = heads.take(ray_heads[index])
    points = (origins.reshape(-1, 3)[index] + t[index, None] * directions.reshape(-1, 3)[index]).t().contiguous()
    labels = _labels(points, surface_heads)
    albedo = _albedo(points, labels, surface_heads)
    lambert = (_normals(points, surface_heads) * surface_heads.light).sum(dim=0).clamp_min(0.0)
    ambient = surface_heads.ambient[0]
    shaded = albedo * (ambient + (1.0 - ambient) * lambert)

    colour = heads.background.repeat_interleave(pixels, dim=1)
    colour[:, index] = shaded
    semantics = torch.zeros(batch * pixels, dtype=torch.long, device=cameras.device)
    semantics[index] = labels
    image = colour.reshape(3, batch, height, width).permute(1, 0, 2, 3) * 2.0 - 1.0
    return HeadImages(
        image=image.contiguous(),
        depth=z_depth(t.reshape(batch, -1, 1), directions, cameras).reshape(batch, 1, height, width),
        mask=hit.reshape(batch, 1, height, width),
        semantics=semantics.reshape(batch, height, width),
    )


def head_labels(points: Tensor, h: HeadParams) -> Tensor:
    """CelebAMask-HQ class ids (M,) of surface points (M, 3): the part nearest to each point."""
    return _labels(points.t(), h)


def head_normals(points: Tensor, h: HeadParams) -> Tensor:
    """Unit outward surface normals (M, 3) at points (M, 3)."""
    return _normals(points.t().contiguous(), h).t()


# ---------------------------------------------------------------------------------------------------
# Facial landmarks
# ---------------------------------------------------------------------------------------------------

LANDMARK_NAMES = ("left_eye", "right_eye", "nose_tip", "left_mouth", "right_mouth")
"""The five landmarks, left/right as seen in the image of a frontal view (image left is world -x, the subject's
right), the order of MTCNN and of :mod:`pix2nerf.inference.alignment`."""
LIP_END_STEPS = 24
"""Bisection steps locating where a lip disappears into the skin (the lip is ~0.04 wide: 2e-9 world units)."""


def _lip_front(centre: Tensor, radii: Tensor, x: Tensor) -> Tensor:
    """The point (3, B) of a lip ellipsoid's front surface on its horizontal midline, at x (B,)."""
    inside = (1.0 - (x / radii[0]) ** 2).clamp_min(0.0)
    return torch.stack([centre[0] + x, centre[1], centre[2] + radii[2] * inside.sqrt()])


def _lip_end(h: HeadParams, centre: Tensor, radii: Tensor) -> Tensor:
    """The visible lateral end (3, B) of a lip (on the subject's left, +x): the last point of its front midline
    that lies outside the skin, found by bisection (the lip's tip itself when it sticks out of the skin)."""
    visible = lambda x: _parts(_lip_front(centre, radii, x), h).skin > 0  # noqa: E731 - local shorthand
    low, high = torch.zeros_like(radii[0]), radii[0].clone()
    whole = visible(high)
    for _ in range(LIP_END_STEPS):
        middle = 0.5 * (low + high)
        seen = visible(middle)
        low, high = torch.where(seen, middle, low), torch.where(seen, high, middle)
    return _lip_front(centre, radii, torch.where(whole, radii[0], low))


def head_landmarks(params: HeadParams) -> Tensor:
    """World positions (B, 5, 3) of the five facial landmarks of B heads, in :data:`LANDMARK_NAMES` order.

    * eyes: the front pole of each eyeball, the centre of the pupil (the eyes look straight ahead, along +z);
    * nose tip: the most forward point of the nose (the front of its rounded tip, or of its bridge's end cap);
    * mouth corners: where the lips end, midway between the visible lateral ends of the upper and the lower lip
      (each found where the lip's front midline disappears into the skin, or at its tip when it sticks out).

    Projected with a view's camera (:meth:`pix2nerf.cameras.Cameras.project`) they are the view's exact 2D landmarks.
    """
    h = HeadParams(params.packed.double())
    zero = torch.zeros_like(h.eye_radius[0])
    eye = h.eye_centre + torch.stack([zero, zero, h.eye_radius[0]])
    forward = torch.maximum(h.nose_radius[0], h.tip_radius[0] - NOSE_TIP_SETBACK)
    nose = h.nose_tip + torch.stack([zero, zero, forward])
    mouth = 0.5 * (
        _lip_end(h, h.upper_lip_centre, h.upper_lip_radii) + _lip_end(h, h.lower_lip_centre, h.lower_lip_radii)
    )
    mirror = torch.tensor([-1.0, 1.0, 1.0], dtype=eye.dtype, device=eye.device)[:, None]
    points = torch.stack([eye * mirror, eye, nose, mouth * mirror, mouth], dim=-1)  # (3, B, 5)
    return points.permute(1, 2, 0).to(params.packed.dtype)
