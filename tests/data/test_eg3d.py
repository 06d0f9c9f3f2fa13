import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from pix2nerf.cameras import look_at
from pix2nerf.data.eg3d import DatasetFormatError, EG3DDataset
from pix2nerf.data.images import ImageReadError, read_image


def make_dataset(root, size=8, count=2):
    root.mkdir(parents=True, exist_ok=True)
    cameras = look_at(torch.linspace(-0.4, 0.4, count), torch.zeros(count))
    labels = []
    rng = np.random.default_rng(0)
    for i in range(count):
        name = f"00000/img{i:08d}.png"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(root / name, rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        mask = np.zeros((size, size), dtype=np.uint8)
        mask[:, : size // 2] = 4  # l_eye on the image's left half
        (root / "masks" / name).parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(root / "masks" / name, mask)
        labels.append([name, cameras.label()[i].tolist()])
    (root / "dataset.json").write_text(json.dumps({"labels": labels}))
    return cameras


def test_reads_images_and_labels(tmp_path):
    cameras = make_dataset(tmp_path / "ds")
    dataset = EG3DDataset(tmp_path / "ds", load_masks=True)
    item = dataset[1]
    torch.testing.assert_close(item["camera"], cameras.label()[1])
    raw = iio.imread(tmp_path / "ds" / "00000/img00000001.png")
    torch.testing.assert_close(item["image"], torch.from_numpy(raw).permute(2, 0, 1).float() / 127.5 - 1.0)
    assert item["semantics"][0, 0] == 4


def test_xflip_mirrors_image_pose_and_left_right_classes(tmp_path):
    make_dataset(tmp_path / "ds")
    dataset = EG3DDataset(tmp_path / "ds", xflip=True, load_masks=True)
    assert len(dataset) == 4
    original, mirrored = dataset[0], dataset[2]
    torch.testing.assert_close(mirrored["image"], original["image"].flip(-1))
    # Camera 0 has yaw -0.4; its mirror has yaw +0.4, which is camera 1's label.
    torch.testing.assert_close(mirrored["camera"], dataset[1]["camera"], atol=1e-6, rtol=0)
    assert mirrored["semantics"][0, -1] == 5  # the left eye, mirrored, is a right eye on the right half


def test_resizes_to_requested_resolution(tmp_path):
    make_dataset(tmp_path / "ds", size=16)
    item = EG3DDataset(tmp_path / "ds", resolution=8, load_masks=True)[0]
    assert item["image"].shape == (3, 8, 8) and item["semantics"].shape == (8, 8)


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="data set not found"):
        EG3DDataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match="no dataset.json"):
        EG3DDataset(tmp_path / "empty")
    make_dataset(tmp_path / "ds")
    (tmp_path / "ds" / "00000" / "img00000000.png").write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match="cannot decode image"):
        EG3DDataset(tmp_path / "ds")[0]
    (tmp_path / "ds" / "00000" / "img00000001.png").unlink()
    with pytest.raises(FileNotFoundError, match="missing from"):
        EG3DDataset(tmp_path / "ds")[1]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "dataset.json").write_text(json.dumps({"labels": [["a.png", [0.0] * 24]]}))
    with pytest.raises(DatasetFormatError, match="25"):
        EG3DDataset(bad)


def scaled_rotation(label):
    label[0] *= 2


def mirrored(label):
    label[0], label[4], label[8] = -label[0], -label[4], -label[8]  # det R = -1


def transposed(label):
    label[:16] = np.asarray(label[:16]).reshape(4, 4).T.flatten().tolist()


def no_focal(label):
    label[16] = 0.0


def nan_translation(label):
    label[3] = float("nan")


def infinite_intrinsics(label):
    label[18] = float("inf")


@pytest.mark.parametrize(
    ("corrupt", "problem"),
    [
        (nan_translation, r"is not finite; label \[.*nan"),
        (infinite_intrinsics, r"is not finite; label \[.*inf"),
        (scaled_rotation, "has a cam2world rotation part .* that is not a rotation"),
        (mirrored, "has a cam2world rotation part .* that is not a rotation"),
        (transposed, r"has a cam2world last row .* other than \(0, 0, 0, 1\) \(transposed\?\)"),
        (no_focal, "has intrinsics .* without positive focal lengths"),
    ],
)
def test_implausible_labels_are_refused_naming_file_image_and_problem(tmp_path, corrupt, problem):
    make_dataset(tmp_path / "ds", count=3)
    listing = tmp_path / "ds" / "dataset.json"
    labels = json.loads(listing.read_text())
    for index in (1, 2):
        corrupt(labels["labels"][index][1])
    listing.write_text(json.dumps(labels))
    message = rf"ds/dataset.json: the label of 00000/img00000001.png {problem}.*\(1 more invalid labels\)$"
    with pytest.raises(DatasetFormatError, match=message):
        EG3DDataset(tmp_path / "ds")


def test_malformed_label_entries_are_refused(tmp_path):
    for entry, problem in [
        (["a.png", [0.0] * 24 + ["x"]], r"entry .* is not \[path, \[25 numbers\]\]"),
        (["a.png"], r"entry .* is not \[path, \[25 numbers\]\]"),
        ([3, [0.0] * 25], "does not start with an image path"),
    ]:
        (tmp_path / "dataset.json").write_text(json.dumps({"labels": [entry]}))
        with pytest.raises(DatasetFormatError, match=problem):
            EG3DDataset(tmp_path)


def test_read_image_converts_grayscale_and_rgba(tmp_path):
    iio.imwrite(tmp_path / "gray.png", np.full((4, 5), 255, dtype=np.uint8))
    iio.imwrite(tmp_path / "rgba.png", np.zeros((4, 5, 4), dtype=np.uint8))
    assert torch.equal(read_image(tmp_path / "gray.png"), torch.ones(3, 4, 5))
    assert torch.equal(read_image(tmp_path / "rgba.png"), -torch.ones(3, 4, 5))
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "nope.png")
