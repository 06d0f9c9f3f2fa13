"""MTCNN five-point landmarks: networks and error paths always; real detections when facenet-pytorch's weights are
installed (pip install --no-deps facenet-pytorch==2.6.0)."""

import importlib.util
import math

import pytest
import torch
from skimage import data

from pix2nerf.data import SyntheticHeads
from pix2nerf.errors import InputError
from pix2nerf.inference import landmarks
from pix2nerf.inference.landmarks import (
    INSTALL_COMMAND,
    WEIGHT_FILES,
    LandmarkDetector,
    ONet,
    PNet,
    RNet,
    landmark_detector_available,
    load_mtcnn_weights,
)

LEFT_EYE, RIGHT_EYE, NOSE, LEFT_MOUTH, RIGHT_MOUTH = range(5)
MAX_EYE_TILT_DEGREES = 10.0
# facenet-pytorch 2.6.0's own MTCNN on the astronaut (x, y pixels, same point order); ours crops with roi_align
# and uses continuous pixel coordinates, so a few pixels of difference are expected.
ASTRONAUT_REFERENCE_POINTS = [[205.0, 101.7], [246.8, 103.7], [224.7, 129.0], [201.7, 139.2], [245.3, 141.9]]
REFERENCE_TOLERANCE_PX = 4.0

needs_weights = pytest.mark.skipif(
    not landmark_detector_available(), reason=f"MTCNN weights not installed ({INSTALL_COMMAND})"
)


@pytest.fixture(scope="module")
def detector() -> LandmarkDetector:
    return LandmarkDetector()


def _astronaut() -> torch.Tensor:
    """skimage's astronaut (512x512 portrait) as (3, H, W) in [-1, 1]."""
    return torch.from_numpy(data.astronaut()).permute(2, 0, 1).float() / 127.5 - 1


def _assert_plausible_face(face: landmarks.FaceLandmarks) -> None:
    points, (x0, y0, x1, y1) = face.points, face.box.tolist()
    assert face.box.shape == (4,) and points.shape == (5, 2)
    assert ((points[:, 0] > x0) & (points[:, 0] < x1) & (points[:, 1] > y0) & (points[:, 1] < y1)).all(), face
    eyes_y, nose_y, mouth_y = points[[LEFT_EYE, RIGHT_EYE], 1], points[NOSE, 1], points[[LEFT_MOUTH, RIGHT_MOUTH], 1]
    assert eyes_y.max() < nose_y < mouth_y.min(), points
    assert points[LEFT_EYE, 0] < points[RIGHT_EYE, 0]
    assert points[LEFT_MOUTH, 0] < points[RIGHT_MOUTH, 0]


def test_missing_package_raises_input_error_with_the_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == landmarks.WEIGHTS_PACKAGE else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert not landmark_detector_available()
    with pytest.raises(InputError) as error:
        LandmarkDetector()
    message = str(error.value)
    assert INSTALL_COMMAND in message and "detector=haar" in message and "\n" not in message


def test_missing_or_broken_weight_file_names_the_file_and_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(landmarks, "_weights_folder", lambda: tmp_path)
    (tmp_path / WEIGHT_FILES["pnet"]).write_bytes(b"")
    assert not landmark_detector_available()
    with pytest.raises(InputError, match=f"{WEIGHT_FILES['rnet']}, {WEIGHT_FILES['onet']} missing") as error:
        load_mtcnn_weights()
    assert INSTALL_COMMAND in str(error.value)
    for name in WEIGHT_FILES.values():
        (tmp_path / name).write_bytes(b"not a state dict")
    with pytest.raises(InputError, match=f"{WEIGHT_FILES['pnet']} cannot be read") as error:
        load_mtcnn_weights()
    assert INSTALL_COMMAND in str(error.value) and "\n" not in str(error.value)


def test_networks_output_shapes_on_random_weights():
    offsets, probability = PNet()(torch.randn(2, 3, 40, 30))
    assert offsets.shape == (2, 4, 15, 10) and probability.shape == (2, 15, 10)
    assert ((probability >= 0) & (probability <= 1)).all()
    assert [t.shape for t in PNet()(torch.randn(1, 3, 12, 12))] == [(1, 4, 1, 1), (1, 1, 1)]
    offsets, probability = RNet()(torch.randn(5, 3, 24, 24))
    assert offsets.shape == (5, 4) and probability.shape == (5,)
    offsets, points, probability = ONet()(torch.randn(5, 3, 48, 48))
    assert offsets.shape == (5, 4) and points.shape == (5, 5, 2) and probability.shape == (5,)


def test_min_overlap_nms_matches_greedy_suppression():
    boxes = torch.tensor(
        [
            [10.0, 10.0, 20.0, 20.0],  # best; inside box 1, so it suppresses it although their IoU is small
            [0.0, 0.0, 40.0, 40.0],
            [100.0, 100.0, 120.0, 120.0],  # chain: 2 suppresses 3, so 4 (overlapped only by 3) survives
            [102.0, 102.0, 124.0, 124.0],
            [105.0, 105.0, 127.0, 127.0],  # overlap with 3: 19x19 / 22x22 > 0.7; with 2: 15x15 / 20x20 < 0.7
        ]
    )
    scores = torch.tensor([0.99, 0.9, 0.95, 0.93, 0.8])
    kept = landmarks._nms_min_overlap(boxes, scores, 0.7)
    assert kept.tolist() == [0, 2, 4]


@needs_weights
def test_shipped_weights_match_our_networks_exactly():
    weights = load_mtcnn_weights()
    for name, net in (("pnet", PNet()), ("rnet", RNet()), ("onet", ONet())):
        expected = {key: value.shape for key, value in net.state_dict().items()}
        assert {key: value.shape for key, value in weights[name].items()} == expected


@needs_weights
def test_astronaut_landmarks(detector):
    face = detector.detect(_astronaut(), "astronaut")
    _assert_plausible_face(face)
    assert face.score > landmarks.ONET_THRESHOLD
    eye_line = face.points[RIGHT_EYE] - face.points[LEFT_EYE]
    assert abs(math.degrees(math.atan2(eye_line[1], eye_line[0]))) < MAX_EYE_TILT_DEGREES
    reference = torch.tensor(ASTRONAUT_REFERENCE_POINTS)
    assert (face.points - reference).abs().max() < REFERENCE_TOLERANCE_PX, face.points


@needs_weights
def test_synthetic_head_is_detected(detector):
    head = SyntheticHeads("test", resolution=64, num_identities=1)[0]["image"]
    _assert_plausible_face(detector.detect(head, "synthetic head"))


@needs_weights
def test_no_face_raises_input_error_naming_the_image(detector):
    with pytest.raises(InputError, match="no face found in blank.png.*frontal photo"):
        detector.detect(torch.zeros(3, 96, 96), "blank.png")
