import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from pix2nerf.cameras import Cameras, yaw_pitch
from pix2nerf.data import BATCH_KEYS, FaceDataModule
from pix2nerf.data.eg3d import EG3DDataset
from pix2nerf.data.synthetic import EVAL_PITCHES, EVAL_YAWS, TEST_SEED_OFFSET, HeadView, SyntheticHeads, render_views

ROOT = Path(__file__).resolve().parents[2]


def test_items_are_deterministic_whatever_the_batch():
    dataset = SyntheticHeads(resolution=24, num_identities=50, length=200)
    alone = dataset[5]
    batched = dataset.__getitems__([3, 5, 7])[1]
    for key in ("image", "camera", "depth", "mask", "semantics"):
        assert torch.equal(alone[key], batched[key]), key
    assert alone["identity"] == 5 and alone["view"] == -1
    assert alone["image"].shape == (3, 24, 24) and alone["image"].dtype == torch.float32
    assert -1.0 <= alone["image"].min() and alone["image"].max() <= 1.0
    assert alone["semantics"].dtype == torch.int64 and alone["mask"].dtype == torch.bool


def test_training_cameras_follow_the_prior_and_match_labels():
    dataset = SyntheticHeads(resolution=8, num_identities=3, length=400)
    angles = torch.stack([torch.tensor([v.yaw, v.pitch]) for v in map(dataset.view, range(len(dataset)))])
    assert angles[:, 0].std() == pytest.approx(0.3, rel=0.15)
    assert angles[:, 1].std() == pytest.approx(0.155, rel=0.15)
    item = dataset[17]
    torch.testing.assert_close(yaw_pitch(Cameras.from_label(item["camera"]))[0], item["yaw_pitch"], atol=1e-5, rtol=0)
    assert {dataset.view(i).identity for i in range(len(dataset))} == {0, 1, 2}


def test_test_split_is_held_out_and_renders_the_view_grid():
    test = SyntheticHeads(split="test", resolution=16, num_identities=2)
    assert len(test) == 2 * len(EVAL_YAWS) * len(EVAL_PITCHES)
    identities = {test.view(i).identity for i in range(len(test))}
    assert identities == {TEST_SEED_OFFSET, TEST_SEED_OFFSET + 1}
    train = SyntheticHeads(num_identities=10_000)
    assert max(train.view(i).identity for i in range(0, 10_000, 997)) < TEST_SEED_OFFSET
    grid = {(round(test.view(i).yaw, 6), round(test.view(i).pitch, 6)) for i in range(len(EVAL_YAWS) * 3)}
    assert len(grid) == len(EVAL_YAWS) * len(EVAL_PITCHES)
    assert test[0]["view"] == 0 and test[len(EVAL_YAWS)]["view"] == len(EVAL_YAWS)


def test_dataloader_batches_with_one_render_per_batch():
    loader = DataLoader(SyntheticHeads(resolution=16, num_identities=8, length=8), batch_size=4)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["camera"].shape == (4, 25)
    assert batch["identity"].tolist() == [0, 1, 2, 3]


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="unknown split"):
        SyntheticHeads(split="val")
    with pytest.raises(IndexError):
        SyntheticHeads(num_identities=2, length=2)[2]


def test_tool_writes_an_eg3d_dataset_that_loads_back(tmp_path):
    output = tmp_path / "heads"
    command = [
        sys.executable,
        str(ROOT / "tools" / "make_synthetic_heads.py"),
        f"output={output}",
        "split=train",
        "resolution=24",
        "num_identities=5",
        "num_images=6",
        "batch_size=4",
        "zip=true",
        "contact_sheet.identities=2",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (output / "contact_sheet.png").stat().st_size > 0
    meta = json.loads((output / "dataset.json").read_text())
    assert len(meta["labels"]) == 6 and meta["identities"] == [0, 1, 2, 3, 4, 0]

    reference = SyntheticHeads(resolution=24, num_identities=5, length=6)
    for path in (output, output.with_suffix(".zip")):
        loaded = EG3DDataset(path, load_masks=True, load_depth=True)
        assert len(loaded) == 6
        for index in (0, 5):
            item, expected = loaded[index], reference[index]
            torch.testing.assert_close(item["camera"], expected["camera"])
            assert (item["image"] - expected["image"]).abs().max() <= 1.0 / 255 + 1e-6  # 8-bit PNG rounding
            assert torch.equal(item["semantics"], expected["semantics"])
            assert torch.equal(item["depth"], expected["depth"])


def test_datamodule_validation_views_are_held_out_and_not_all_frontal():
    from pix2nerf.data import FaceDataModule

    data = FaceDataModule(resolution=8, batch_size=2, num_identities=4, epoch_length=4, val_size=6)
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    assert batch["identity"].unique().numel() == 6 and (batch["identity"] >= TEST_SEED_OFFSET).all()
    yaws = batch["yaw_pitch"][:, 0]
    assert yaws.abs().max() > 0.2 and (yaws == 0).any() and (batch["yaw_pitch"][:, 1] == 0).all()
    train = next(iter(data.train_dataloader()))
    assert train["image"].shape == (2, 3, 8, 8) and (train["identity"] < TEST_SEED_OFFSET).all()


def test_target_views_are_exact_renders_of_the_same_head():
    data = SyntheticHeads("train", resolution=16, num_identities=3, length=6, target_views=2)
    item = data[4]
    assert item["target_image"].shape == (2, 3, 16, 16) and item["target_camera"].shape == (2, 25)
    views = [HeadView(item["identity"], *angles) for angles in item["target_yaw_pitch"].tolist()]
    direct, cameras = render_views(views, 16, data.prior, data.random_light)
    torch.testing.assert_close(item["target_image"], direct.image)
    torch.testing.assert_close(item["target_depth"], direct.depth)
    torch.testing.assert_close(item["target_camera"], cameras.label())
    assert torch.equal(item["target_mask"], direct.mask)
    assert torch.equal(item["target_semantics"], direct.semantics)
    assert not torch.allclose(item["target_camera"][0], item["camera"])  # other cameras than the source's
    again = data.__getitems__([1, 4])[1]  # the same item whatever the batch
    torch.testing.assert_close(again["target_image"], item["target_image"])


def test_datamodule_batches_carry_target_views():
    data = FaceDataModule(resolution=16, batch_size=2, num_identities=4, epoch_length=4, target_views=3)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["target_image"].shape == (2, 3, 3, 16, 16) and batch["target_depth"].shape == (2, 3, 1, 16, 16)
    assert batch["mask"].shape == (2, 1, 16, 16) and batch["target_yaw_pitch"].shape == (2, 3, 2)
    assert batch["target_semantics"].shape == (2, 3, 16, 16) and batch["target_semantics"].dtype == torch.long
    assert set(batch) == set(BATCH_KEYS)  # synthetic heads give every key of the typed batch
    with pytest.raises(ValueError, match="target_views needs source='synthetic'"):
        FaceDataModule(source="folder", path="photos", target_views=2)


def test_landmarks_of_items_are_their_heads_landmarks_seen_by_their_cameras():
    from pix2nerf.data.heads import head_landmarks, sample_heads

    dataset = SyntheticHeads("test", resolution=40, num_identities=2)
    indices = [0, 7, 16]
    points = dataset.landmarks(indices)
    assert points.shape == (3, 5, 2)
    cameras = Cameras.from_label(torch.stack([item["camera"] for item in dataset.__getitems__(indices)]))
    heads = head_landmarks(sample_heads([dataset.view(i).identity for i in indices]))
    torch.testing.assert_close(points, cameras.project(heads)[0] * 40)
    frontal = dataset.landmarks([dataset.eval_grid.index((0.0, 0.0))])[0]
    assert frontal[0, 0] < frontal[1, 0] and frontal[3, 0] < frontal[4, 0]  # left/right as seen in the image
    assert frontal[0, 1] < frontal[2, 1] < frontal[3, 1]  # eyes above the nose tip above the mouth
