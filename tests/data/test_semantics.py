"""Semantic label maps: one-hot encoding, resizing, colours, CelebAMask-HQ part masks, and batches with masks."""

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from pix2nerf.data import FaceDataModule
from pix2nerf.data.semantics import (
    CELEBAMASK_HQ_CLASSES,
    PALETTE,
    celebamask_label_map,
    colorize_labels,
    one_hot_labels,
    resize_labels,
)

from .test_eg3d import make_dataset


def test_one_hot_resize_and_colours_of_a_known_map():
    labels = torch.tensor([[[0, 1], [17, 13]]])
    one_hot = one_hot_labels(labels, 19)
    assert one_hot.shape == (1, 19, 2, 2) and torch.equal(one_hot.argmax(1), labels) and one_hot.sum() == 4
    big = resize_labels(labels, 4)
    assert torch.equal(big, labels.repeat_interleave(2, 1).repeat_interleave(2, 2))
    assert torch.equal(resize_labels(big, 2), labels)
    colours = colorize_labels(labels)
    assert torch.equal(colours[0, :, 1, 0], PALETTE[17]) and torch.equal(colours[0, :, 0, 0], torch.zeros(3))
    with pytest.raises(ValueError, match="0..18"):
        one_hot_labels(torch.tensor([[[19]]]), 19)


def test_celebamask_part_masks_become_one_label_map(tmp_path):
    folder = tmp_path / "CelebAMask-HQ-mask-anno" / "1"
    folder.mkdir(parents=True)
    skin = np.zeros((4, 4), np.uint8)
    skin[1:, :] = 255
    hair = np.zeros((4, 4, 3), np.uint8)  # some releases store RGB masks
    hair[:2, :] = 255
    iio.imwrite(folder / "02001_skin.png", skin)
    iio.imwrite(folder / "02001_hair.png", hair)
    labels = celebamask_label_map(tmp_path / "CelebAMask-HQ-mask-anno", 2001)
    skin_id, hair_id = CELEBAMASK_HQ_CLASSES.index("skin"), CELEBAMASK_HQ_CLASSES.index("hair")
    expected = torch.tensor([[hair_id] * 4, [hair_id] * 4, [skin_id] * 4, [skin_id] * 4])
    assert torch.equal(labels, expected)  # hair (id 13) is painted over skin (id 1) where both are set
    assert torch.equal(
        celebamask_label_map(tmp_path / "CelebAMask-HQ-mask-anno", 2001, resolution=2)[:, 0],
        torch.tensor([hair_id, skin_id]),
    )
    with pytest.raises(FileNotFoundError, match="no CelebAMask-HQ part masks"):
        celebamask_label_map(tmp_path / "CelebAMask-HQ-mask-anno", 2002)


@pytest.mark.parametrize("source", ["synthetic", "eg3d"])
def test_batches_carry_label_maps_when_asked(tmp_path, source):
    if source == "eg3d":
        make_dataset(tmp_path / "ds", size=8, count=4)
    data = FaceDataModule(
        source=source,
        path=str(tmp_path / "ds") if source == "eg3d" else None,
        resolution=8,
        batch_size=2,
        num_identities=4,
        epoch_length=4,
        val_size=2,
        with_semantics=True,
    )
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["semantics"].shape == (2, 8, 8) and batch["semantics"].dtype == torch.long
    if source == "eg3d":
        assert (batch["semantics"][:, :, :4] == 4).all() and (batch["semantics"][:, :, 4:] == 0).all()
    else:
        assert (batch["semantics"] > 0).any() and (batch["semantics"][:, 0, 0] == 0).all()  # a head, empty corners
