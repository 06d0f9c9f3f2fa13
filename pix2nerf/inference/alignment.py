"""Align in-the-wild face photos from five landmarks, and estimate their camera from the same points.

Points are (x, y) in continuous pixels, the frame of :mod:`pix2nerf.inference.landmarks`: pixel (row i, column j)
covers [j, j + 1) x [i, i + 1), so its centre is (j + 0.5, i + 0.5). Five points in the order left eye, right eye,
nose tip, left mouth corner, right mouth corner, left/right as seen in the image (``LANDMARK_NAMES`` of
:mod:`pix2nerf.data.heads`, whose synthetic heads give exact ones).

* :func:`crop_from_landmarks` frames a face like the training images (FFHQ's recipe, constants measured on the
  synthetic heads rendered with the EG3D camera), :func:`align_face` resamples a photo to that crop, and
  :func:`warp_crop` resamples any :class:`AlignedCrop`.
* :func:`fit_pose` and :func:`pose_from_landmarks` estimate yaw and pitch by fitting a 3D face template, seen by the
  model's camera (its prior's sphere, pivot and focal length), to the points (PnP), with roll, scale and offset of
  the framing and the face's proportions (a shape model of the synthetic heads' landmarks) as free parameters.

The pose fit is invariant to a similarity transform of the points: it takes them in the photo's pixels or in the
aligned crop's alike (:meth:`AlignedCrop.to_crop` maps them), and describes the camera of the model's framing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import jacrev, vmap

from pix2nerf.cameras import FACE_PRIOR, WORLD_UP, PosePrior
from pix2nerf.errors import InputError

NUM_LANDMARKS = 5
"""Left eye, right eye, nose tip, left mouth corner, right mouth corner (left/right as seen in the image)."""

# --- Framing: FFHQ's recipe (Karras et al. 2019, ffhq-dataset's recreate_aligned_images), re-calibrated. ------------
# The crop's x axis is eye_to_eye - rot90(eye_to_mouth) (its roll); its side is
# max(CROP_SIDE_PER_EYE_DISTANCE * |eye_to_eye|, CROP_SIDE_PER_EYE_TO_MOUTH * |eye_to_mouth|); its centre is
# eye_centre + CROP_CENTRE_ALONG_EYE_TO_MOUTH * eye_to_mouth (FFHQ: 4.0, 3.6 and 0.1, for its tighter framing), plus
# CROP_CENTRE_ACROSS_NOSE times the nose tip's offset from the eye centre along the crop's x axis (our addition: the
# landmarks lie in front of the cameras' pivot, so a turned head shifts them sideways in the image, by ~4 % of it at
# 30 degrees, and the nose, furthest in front, shows how much; it halves the centre's error on turned heads).
# Measured over 4000 synthetic training heads (seeds 0..3999), each from one camera drawn from FACE_PRIOR, at the
# training framing (the crop is then the whole image): the centre constants are the least-squares fit of the image
# centre, the side constants minimise the mean squared log of the side; see measure_crop_constants in
# tests/inference/test_alignment.py (``python -m tests.inference.test_alignment`` prints them). The synthetic heads'
# proportions vary (the eye distance alone by +-12 %), so single heads keep errors of a few percent (see the tests).
CROP_CENTRE_ALONG_EYE_TO_MOUTH = 0.3504
CROP_CENTRE_ACROSS_NOSE = -0.6528
CROP_SIDE_PER_EYE_DISTANCE = 4.5692
CROP_SIDE_PER_EYE_TO_MOUTH = 4.2542

ANTIALIAS_ABOVE = 1.25
"""When a crop shrinks the photo by more than this, the region is first shrunk with an antialiasing filter."""

# --- Pose: a mean face and its shape modes (world units, the synthetic heads' frame: y up, the face looks to +z). ---
# Measured with ``measure_face_template`` in tests/inference/test_alignment.py over 4000 synthetic training heads
# (seeds 0..3999): the mean of pix2nerf.data.heads.head_landmarks, and the principal modes of its variation (each
# scaled to one standard deviation; all 8 non-zero ones: the landmarks are mirror-symmetric). A mode is 8 numbers,
# (eye x, y, z, nose y, z, mouth x, y, z) of the right-hand (world +x) eye and mouth corner; the left ones mirror x.
MEAN_FACE_LANDMARKS = (
    (-0.06253, 0.04724, 0.23969),
    (0.06253, 0.04724, 0.23969),
    (0.00000, -0.03768, 0.29656),
    (-0.03697, -0.08670, 0.24560),
    (0.03697, -0.08670, 0.24560),
)
FACE_SHAPE_MODES = (
    (0.000048, 0.005121, 0.000361, 0.010800, -0.000435, -0.000135, 0.011768, 0.003688),
    (-0.000033, -0.000770, 0.001144, -0.001700, 0.010514, -0.000008, -0.001612, 0.009210),
    (-0.001233, 0.000076, 0.009218, -0.000064, -0.000775, -0.000978, -0.000081, -0.000722),
    (-0.000335, -0.000581, 0.000565, 0.000254, 0.000832, 0.005712, 0.000359, -0.000504),
    (-0.000043, 0.005058, -0.000003, -0.000579, 0.000637, 0.000566, -0.001819, -0.000312),
    (0.004246, 0.000009, 0.000582, -0.000045, 0.000087, 0.000176, 0.000019, -0.000107),
    (-0.000059, -0.000052, -0.000051, 0.000092, 0.003484, -0.000464, 0.000627, -0.001869),
    (0.000018, -0.000274, 0.000002, 0.002908, 0.000230, -0.000042, -0.001182, -0.000093),
)

LANDMARK_NOISE = 0.005
"""Standard deviation of the landmarks' position error assumed by the pose fit, in units of the model's framing (the
crop's side): a landmark detector's error; the face's own variation is the shape modes' business."""
POSE_ITERATIONS = 15
"""Levenberg-Marquardt iterations of the pose fit (it converges to 0.05 degrees in about 12 from the prior's mean)."""
_INITIAL_DAMPING = 1e-2
_DAMPING_FACTOR = 3.0


def _check_points(points: Tensor) -> Tensor:
    points = torch.as_tensor(points)
    if points.ndim < 2 or points.shape[-2:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"landmarks must have shape (..., {NUM_LANDMARKS}, 2), got {tuple(points.shape)}")
    if not torch.isfinite(points).all():
        raise InputError("the face landmarks are not finite numbers")
    return points if points.is_floating_point() else points.float()


def _rotation(roll: Tensor) -> Tensor:
    """(..., 2, 2) rotations by ``roll`` in image coordinates (x right, y down: positive turns x toward y)."""
    cos, sin = torch.cos(roll), torch.sin(roll)
    return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)


# ---------------------------------------------------------------------------------------------------
# Framing
# ---------------------------------------------------------------------------------------------------


@dataclass
class AlignedCrop:
    """A square crop of a photo, rotated by ``roll``: the face framed like the model's training images.

    Attributes:
        centre: (..., 2) the crop's centre in the photo's pixels.
        side: (...) the crop's side in the photo's pixels.
        roll: (...) radians: the crop's x axis is (cos roll, sin roll) in the photo (y down), so a face whose eye
            line descends to the right has a positive roll; the crop undoes it.
    """

    centre: Tensor
    side: Tensor
    roll: Tensor

    def crop_to_image(self, resolution: int) -> Tensor:
        """(..., 2, 3) affine map from the pixels of a ``resolution``-sided crop to the photo's pixels."""
        linear = _rotation(self.roll) * (self.side / resolution)[..., None, None]
        offset = self.centre - (linear @ self.centre.new_tensor([resolution / 2, resolution / 2])[:, None])[..., 0]
        return torch.cat([linear, offset[..., None]], -1)

    def from_crop(self, points: Tensor, resolution: int) -> Tensor:
        """Points (..., N, 2) in the pixels of a ``resolution``-sided crop -> the photo's pixels."""
        affine = self.crop_to_image(resolution).to(points.dtype)
        return points @ affine[..., :2].transpose(-1, -2) + affine[..., None, :, 2]

    def to_crop(self, points: Tensor, resolution: int) -> Tensor:
        """Points (..., N, 2) in the photo's pixels -> the pixels of a ``resolution``-sided crop."""
        affine = self.crop_to_image(resolution).to(points.dtype)
        return (points - affine[..., None, :, 2]) @ torch.linalg.inv(affine[..., :2]).transpose(-1, -2)


def crop_from_landmarks(points: Tensor) -> AlignedCrop:
    """The training framing of a face from its five landmarks (..., 5, 2) in pixels (see the module's docstring).

    FFHQ's recipe: the eye centre, the mouth centre and the vector between them give the crop's centre, side and
    roll (its x axis is the eye-to-eye vector plus the eye-to-mouth vector turned by 90 degrees, which keeps it
    stable for turned heads); the nose's sideways offset corrects the centre for the head's turn. Constants:
    ``CROP_*``. A rotation, scaling or shift of the points moves the crop with them (exactly).
    """
    points = _check_points(points)
    eye_left, eye_right, nose, mouth_left, mouth_right = points.unbind(-2)
    eye_centre = 0.5 * (eye_left + eye_right)
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = 0.5 * (mouth_left + mouth_right) - eye_centre
    x_axis = eye_to_eye + torch.stack([eye_to_mouth[..., 1], -eye_to_mouth[..., 0]], -1)
    side = torch.maximum(
        CROP_SIDE_PER_EYE_DISTANCE * eye_to_eye.norm(dim=-1), CROP_SIDE_PER_EYE_TO_MOUTH * eye_to_mouth.norm(dim=-1)
    )
    if not bool((side > 0).all()):
        raise InputError("the face landmarks coincide; cannot frame the face")
    x_axis = x_axis / x_axis.norm(dim=-1, keepdim=True)
    nose_across = ((nose - eye_centre) * x_axis).sum(-1, keepdim=True) * x_axis
    return AlignedCrop(
        centre=eye_centre + CROP_CENTRE_ALONG_EYE_TO_MOUTH * eye_to_mouth + CROP_CENTRE_ACROSS_NOSE * nose_across,
        side=side,
        roll=torch.atan2(x_axis[..., 1], x_axis[..., 0]),
    )


def warp_crop(image: Tensor, crop: AlignedCrop, resolution: int) -> Tensor:
    """Resample ``crop`` of ``image`` (3, H, W) in [-1, 1] to (3, resolution, resolution) (bilinear).

    Beyond the photo the crop repeats its edge pixels (like :func:`pix2nerf.inference.inputs.crop_to_face`). A crop
    that shrinks the photo by more than ``ANTIALIAS_ABOVE`` is antialiased: the region it covers is first shrunk with
    a filter as wide as the step (``F.interpolate(antialias=True)``) to the crop's scale, then rotated into place.
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must have shape (3, H, W), got {tuple(image.shape)}")
    if crop.centre.shape != (2,):
        raise ValueError(f"warp_crop takes one crop (centre of shape (2,)), got {tuple(crop.centre.shape)}")
    height, width = image.shape[-2:]
    centre, side, roll = (torch.as_tensor(v, dtype=torch.float64).cpu() for v in (crop.centre, crop.side, crop.roll))
    step = float(side) / resolution  # photo pixels per crop pixel

    # The photo region the crop covers (its rotated square's bounding box, plus the filters' reach), inside the photo.
    reach = 0.5 * float(side) * (abs(math.cos(roll)) + abs(math.sin(roll))) + 2.0 * max(step, 1.0) + 2.0
    x0 = min(max(math.floor(float(centre[0]) - reach), 0), width - 1)
    y0 = min(max(math.floor(float(centre[1]) - reach), 0), height - 1)
    x1 = max(min(math.ceil(float(centre[0]) + reach), width), x0 + 1)
    y1 = max(min(math.ceil(float(centre[1]) + reach), height), y0 + 1)
    region = image[None, :, y0:y1, x0:x1]
    if step > ANTIALIAS_ABOVE:
        size = (max(round((y1 - y0) / step), 1), max(round((x1 - x0) / step), 1))
        region = F.interpolate(region, size=size, mode="bilinear", align_corners=False, antialias=True)
    region_height, region_width = region.shape[-2:]

    # Crop pixel centres -> photo pixels -> the region's normalised coordinates (grid_sample, align_corners=False).
    offsets = (torch.arange(resolution, dtype=torch.float64) + 0.5 - resolution / 2) * step
    grid_y, grid_x = torch.meshgrid(offsets, offsets, indexing="ij")
    photo = centre + torch.stack([grid_x, grid_y], -1) @ _rotation(roll).t()
    scale = torch.tensor([region_width / (x1 - x0), region_height / (y1 - y0)], dtype=torch.float64)
    normalised = (photo - torch.tensor([x0, y0], dtype=torch.float64)) * scale
    normalised = normalised * 2.0 / torch.tensor([region_width, region_height], dtype=torch.float64) - 1.0
    grid = normalised.to(device=image.device, dtype=region.dtype)[None]
    warped = F.grid_sample(region, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return warped[0].clamp(-1.0, 1.0)


def align_face(image: Tensor, points: Tensor, resolution: int) -> Tensor:
    """A photo (3, H, W) in [-1, 1] with its five landmarks (5, 2) in pixels -> the face in the model's framing,
    (3, resolution, resolution), upright (roll removed): :func:`crop_from_landmarks` then :func:`warp_crop`."""
    points = _check_points(points)
    if points.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"align_face takes one face's landmarks, shape (5, 2); got {tuple(points.shape)}")
    return warp_crop(image, crop_from_landmarks(points), resolution)


# ---------------------------------------------------------------------------------------------------
# Pose
# ---------------------------------------------------------------------------------------------------


def _symmetric_landmarks(values: Tensor) -> Tensor:
    """(..., 8) eye x, y, z, nose y, z, mouth x, y, z of the world +x side -> (..., 5, 3) landmarks."""
    eye, nose, mouth = values[..., 0:3], values[..., 3:5], values[..., 5:8]
    mirror = values.new_tensor([-1.0, 1.0, 1.0])
    nose = torch.cat([torch.zeros_like(nose[..., :1]), nose], -1)
    return torch.stack([eye * mirror, eye, nose, mouth * mirror, mouth], -2)


def face_template(dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """The mean face (5, 3) and its shape modes (K, 5, 3) in world units (from ``MEAN_FACE_LANDMARKS`` and
    ``FACE_SHAPE_MODES``)."""
    mean = torch.tensor(MEAN_FACE_LANDMARKS, dtype=dtype)
    modes = _symmetric_landmarks(torch.tensor(FACE_SHAPE_MODES, dtype=dtype))
    return mean, modes


def project_template(yaw: Tensor, pitch: Tensor, template: Tensor, prior: PosePrior = FACE_PRIOR) -> Tensor:
    """Project world points (N, 3) with the camera at (yaw, pitch) (scalars) on ``prior``'s sphere.

    Returns (N, 2) coordinates relative to the image centre in units of the image side: ``uv - 0.5`` of
    ``look_at(yaw, pitch, prior.radius, prior.target, prior.focal).project`` (the same construction, written without
    in-place operations so that ``torch.func`` can differentiate and batch it).
    """
    origin = prior.radius * torch.stack(
        [torch.cos(pitch) * torch.sin(yaw), torch.sin(pitch), torch.cos(pitch) * torch.cos(yaw)]
    )
    forward = template.new_tensor(prior.target) - origin
    forward = forward / forward.norm()
    right = -torch.linalg.cross(template.new_tensor(WORLD_UP), forward)
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    down = down / down.norm()
    relative = template - origin
    depth = relative @ forward
    return prior.focal * torch.stack([relative @ right, relative @ down], -1) / depth[:, None]


@dataclass
class PoseFit:
    """The camera that sees the face template as the landmarks show it (:func:`fit_pose`).

    Attributes:
        yaw_pitch: (..., 2) radians, the package's convention (:func:`pix2nerf.cameras.yaw_pitch`).
        roll: (...) radians, the rotation of the model's framing in the points' frame (as :class:`AlignedCrop`).
        scale: (...) side of the model's framing in units of the points' frame size (``image_size``).
        offset: (..., 2) centre of the model's framing minus the frame's centre, in units of the frame size.
        shape: (..., K) coefficients of the shape modes (standard deviations of the synthetic heads' variation).
        residual: (...) root-mean-square distance in pixels between the points and the fitted template's projection.
    """

    yaw_pitch: Tensor
    roll: Tensor
    scale: Tensor
    offset: Tensor
    shape: Tensor
    residual: Tensor


def _frame(image_size: int | tuple[int, int]) -> tuple[float, tuple[float, float]]:
    """The unit (pixels) and the centre (pixels) of a points' frame of ``image_size`` (side, or (H, W))."""
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    if height <= 0 or width <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    return float(max(height, width)), (width / 2.0, height / 2.0)


def fit_pose(
    points: Tensor,
    image_size: int | tuple[int, int],
    prior: PosePrior = FACE_PRIOR,
    landmark_noise: float = LANDMARK_NOISE,
    iterations: int = POSE_ITERATIONS,
) -> PoseFit:
    """Fit the model's camera to five landmarks (..., 5, 2) in the pixels of a frame of ``image_size`` (PnP).

    The mean face (``MEAN_FACE_LANDMARKS``) plus its shape modes is projected by the camera at (yaw, pitch) on
    ``prior``'s sphere (radius, pivot, focal length: the model's intrinsics), then rotated (roll), scaled and shifted
    in the image; Levenberg-Marquardt minimises the landmarks' reprojection error, in units of the fitted framing
    over ``landmark_noise``, plus the shape coefficients' squares (a Gaussian prior on the face's proportions).
    Yaw and pitch start at the prior's mean, roll, scale and offset at the 2D similarity that best maps the mean
    face's projection there onto the points. Batched (vectorised over the leading dimensions) in float64.

    The result does not depend on the points' frame (photo or aligned crop, any similarity of them): the residuals
    are measured in the fitted framing; ``image_size`` is the unit of ``scale`` and ``offset`` (a non-square frame's
    unit is its longer side, offsets are from its centre).
    """
    points = _check_points(points)
    unit, frame_centre = _frame(image_size)
    batch_shape = points.shape[:-2]
    observed = (points.to(torch.float64).reshape(-1, NUM_LANDMARKS, 2) - points.new_tensor(frame_centre)) / unit
    mean, modes = face_template()
    mean, modes = mean.to(observed.device), modes.to(observed.device)
    num_modes = len(modes)

    def residuals(params: Tensor, seen: Tensor) -> Tensor:
        yaw, pitch, roll, log_scale = params[0], params[1], params[2], params[3]
        template = mean + (params[6:, None, None] * modes).sum(0)
        projected = project_template(yaw, pitch, template, prior)
        cos, sin = torch.cos(roll), torch.sin(roll)
        shifted = seen - params[4:6]
        in_framing = torch.stack([cos * shifted[:, 0] + sin * shifted[:, 1], cos * shifted[:, 1] - sin * shifted[:, 0]])
        in_framing = in_framing.t() / torch.exp(log_scale)
        return torch.cat([(in_framing - projected).flatten() / landmark_noise, params[6:]])

    # Start: the prior's mean pose, and the similarity (complex least squares) from the mean face's projection.
    angles = observed.new_tensor([prior.yaw_mean, prior.pitch_mean])
    start = project_template(angles[0], angles[1], mean, prior)
    u = torch.complex(start[:, 0], start[:, 1])
    p = torch.complex(observed[..., 0], observed[..., 1])
    u_centred, p_centred = u - u.mean(), p - p.mean(-1, keepdim=True)
    similarity = (u_centred.conj() * p_centred).sum(-1) / (u_centred.abs() ** 2).sum()
    if not bool((similarity.abs() > 0).all()):
        raise InputError("the face landmarks coincide; cannot estimate the camera")
    shift = p.mean(-1) - similarity * u.mean()
    params = torch.cat(
        [
            angles.expand(len(observed), 2),
            torch.stack([similarity.angle(), similarity.abs().log(), shift.real, shift.imag], -1),
            observed.new_zeros(len(observed), num_modes),
        ],
        -1,
    )

    batched_residuals = vmap(residuals)
    jacobian = vmap(jacrev(residuals))
    r = batched_residuals(params, observed)
    cost = (r * r).sum(-1)
    damping = torch.full_like(cost, _INITIAL_DAMPING)
    for _ in range(iterations):
        j = jacobian(params, observed)
        normal = j.transpose(1, 2) @ j
        gradient = j.transpose(1, 2) @ r[..., None]
        normal = normal + damping[:, None, None] * torch.diag_embed(normal.diagonal(dim1=1, dim2=2) + 1e-9)
        trial = params - torch.linalg.solve(normal, gradient)[..., 0]
        r_trial = batched_residuals(trial, observed)
        cost_trial = (r_trial * r_trial).sum(-1)
        better = cost_trial < cost
        params = torch.where(better[:, None], trial, params)
        r = torch.where(better[:, None], r_trial, r)
        cost = torch.where(better, cost_trial, cost)
        damping = torch.where(better, damping / _DAMPING_FACTOR, damping * _DAMPING_FACTOR)

    scale = params[:, 3].exp()
    pixels = r[:, : 2 * NUM_LANDMARKS] * landmark_noise * scale[:, None] * unit
    dtype = points.dtype

    def shaped(value: Tensor, *tail: int) -> Tensor:
        return value.reshape(tuple(batch_shape) + tail).to(dtype)

    return PoseFit(
        yaw_pitch=shaped(params[:, :2], 2),
        roll=shaped(params[:, 2]),
        scale=shaped(scale),
        offset=shaped(params[:, 4:6], 2),
        shape=shaped(params[:, 6:], num_modes),
        residual=shaped(pixels.pow(2).reshape(-1, NUM_LANDMARKS, 2).sum(-1).mean(-1).sqrt()),
    )


def pose_from_landmarks(points: Tensor, image_size: int | tuple[int, int], prior: PosePrior = FACE_PRIOR) -> Tensor:
    """Yaw and pitch (..., 2) in radians of the camera that sees a face as its landmarks (..., 5, 2) show it.

    Pass the points in the aligned crop's pixels (:meth:`AlignedCrop.to_crop`, ``image_size`` its resolution) or in
    the photo's: the fit (:func:`fit_pose`) does not depend on the frame, and the pose is that of the model's
    framing (roll removed). ``prior`` gives the camera's sphere, pivot and focal length (those the model was trained
    with, e.g. ``FaceModel.prior``).
    """
    return fit_pose(points, image_size, prior).yaw_pitch


def crop_from_pose(fit: PoseFit, image_size: int | tuple[int, int]) -> AlignedCrop:
    """The model's framing that a pose fit found in the points' frame: a crop that also accounts for the head's turn
    (the parallax of the landmarks in front of the pivot) and the face's fitted proportions."""
    unit, frame_centre = _frame(image_size)
    centre = fit.offset * unit + fit.offset.new_tensor(frame_centre)
    return AlignedCrop(centre=centre, side=fit.scale * unit, roll=fit.roll)
