"""One LightningDataModule for every image source: synthetic heads, EG3D-format sets, plain folders."""

from __future__ import annotations

from typing import Literal, cast

import lightning as L
import torch
from lightning.fabric.utilities.data import AttributeDict
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from pix2nerf.cameras import FACE_PRIOR, PosePrior
from pix2nerf.data.batch import BATCH_KEYS, FaceBatch
from pix2nerf.data.eg3d import EG3DDataset
from pix2nerf.data.folder import ImageFolderDataset
from pix2nerf.data.synthetic import SyntheticHeads

Source = Literal["synthetic", "eg3d", "folder"]
NOT_SET_UP = "the data module is not set up: call setup() before asking for a data loader"


class EpochSeededSampler(Sampler[int]):
    """A random permutation per epoch, from ``seed + epoch``: resuming at any epoch reproduces the order.

    Lightning calls ``set_epoch`` at the start of every epoch (as for ``DistributedSampler``).
    """

    def __init__(self, length: int, seed: int = 0) -> None:
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        rng = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.length, generator=rng).tolist())

    def __len__(self) -> int:
        return self.length


def _collate(items: list[dict]) -> FaceBatch:
    """Stack the tensors a system may use (synthetic items also carry ground-truth depth and identity)."""
    present = [key for key in BATCH_KEYS if key in items[0]]
    return cast(FaceBatch, {key: torch.stack([torch.as_tensor(item[key]) for item in items]) for key in present})


class FaceDataModule(L.LightningDataModule):
    """Training images with camera labels.

    Args:
        source: ``"synthetic"`` (procedural heads, no preparation), ``"eg3d"`` (folder or zip with
            ``dataset.json``) or ``"folder"`` (plain images; poses from ``prior``).
        path: data location for ``"eg3d"`` and ``"folder"``.
        resolution: image size.
        batch_size, num_workers: loader settings.
        xflip: add mirrored copies (EG3D format; poses mirrored with ``flip_yaw``).
        num_identities, epoch_length: synthetic heads: identities, and items per epoch.
        prior: camera prior of synthetic training views and of folder images.
        val_size: validation items (synthetic: held-out test identities seen from yaw 0 or +-15 degrees;
            otherwise the first items).
        test_size: test items (synthetic: the frontal views of the first ``test_size`` held-out identities,
            the protocol of ``tools/evaluate.py``; otherwise the validation items).
        with_semantics: also load semantic masks (synthetic heads always have them; EG3D needs ``masks/``).
        target_views: synthetic heads: K extra exact views of each training item's head (multi-view supervision,
            see :class:`~pix2nerf.data.SyntheticHeads`); batches then hold ``target_*`` tensors (B, K, ...).
        seed: shuffling, synthetic camera and data loader (worker base seed) seed.
    """

    def __init__(
        self,
        source: Source = "synthetic",
        path: str | None = None,
        resolution: int = 64,
        batch_size: int = 8,
        num_workers: int = 0,
        xflip: bool = False,
        num_identities: int = 10_000,
        epoch_length: int = 10_000,
        prior: PosePrior = FACE_PRIOR,
        val_size: int = 8,
        test_size: int = 64,
        with_semantics: bool = False,
        seed: int = 0,
        target_views: int = 0,
    ) -> None:
        super().__init__()
        if source not in ("synthetic", "eg3d", "folder"):
            raise ValueError(f"source must be 'synthetic', 'eg3d' or 'folder', got {source!r}")
        if target_views and source != "synthetic":
            raise ValueError("target_views needs source='synthetic': only synthetic heads have exact extra views")
        if source != "synthetic" and not path:
            raise ValueError(f"source={source!r} needs data.path (a folder or zip of images)")
        self.save_hyperparameters(ignore=["prior"])
        # Config parsers may hand the prior over as a mapping.
        self.prior = PosePrior(**prior) if isinstance(prior, dict) else prior
        self.train_set: SyntheticHeads | EG3DDataset | ImageFolderDataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @property
    def hparams(self) -> AttributeDict:
        """The saved hyperparameters, read as attributes (Lightning's annotation also admits a plain mapping)."""
        return cast(AttributeDict, super().hparams)

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if h.source == "synthetic":
            self.train_set = SyntheticHeads(
                "train",
                h.resolution,
                h.num_identities,
                h.epoch_length,
                self.prior,
                seed=h.seed,
                target_views=h.target_views,
            )
            test = SyntheticHeads("test", h.resolution, num_identities=max(1, h.val_size))
            views = len(test.eval_grid)
            # Inputs at pitch 0 and the central yaws, cycled over identities, so pose error is measured off-frontal
            # too while the +-30 degree novel views stay inside the prior.
            level = min(abs(pitch) for _, pitch in test.eval_grid)
            central = sorted(
                (v for v, (yaw, pitch) in enumerate(test.eval_grid) if abs(pitch) == level),
                key=lambda v: abs(test.eval_grid[v][0]),
            )[:3]
            self.val_set = Subset(test, [i * views + central[i % len(central)] for i in range(h.val_size)])
            held_out = SyntheticHeads("test", h.resolution, num_identities=max(1, h.test_size))
            frontal = held_out.eval_grid.index((0.0, 0.0))
            self.test_set = Subset(held_out, [i * views + frontal for i in range(h.test_size)])
        else:
            data: EG3DDataset | ImageFolderDataset
            if h.source == "eg3d":
                data = EG3DDataset(h.path, h.resolution, h.xflip, load_masks=h.with_semantics)
            else:
                data = ImageFolderDataset(h.path, h.resolution, self.prior, h.seed)
            self.train_set = data
            self.val_set = Subset(data, list(range(min(h.val_size, len(data)))))
            self.test_set = self.val_set

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        train_set = self.train_set
        if train_set is None:
            raise RuntimeError(NOT_SET_UP)
        return DataLoader(
            train_set,
            batch_size=h.batch_size,
            sampler=EpochSeededSampler(len(train_set), h.seed),
            drop_last=True,
            num_workers=h.num_workers,
            persistent_workers=h.num_workers > 0,
            collate_fn=_collate,
            generator=self._rng(),
        )

    def val_dataloader(self) -> DataLoader:
        h = self.hparams
        return DataLoader(
            _set_up(self.val_set), batch_size=h.val_size, num_workers=0, collate_fn=_collate, generator=self._rng()
        )

    def test_dataloader(self) -> DataLoader:
        h = self.hparams
        return DataLoader(
            _set_up(self.test_set), batch_size=h.val_size, num_workers=0, collate_fn=_collate, generator=self._rng()
        )

    def _rng(self) -> torch.Generator:
        """A loader's own generator: starting an iteration draws the loader's base seed (of worker seeds) from it, not
        from the global RNG, so the training stream a checkpoint keeps does not depend on when Lightning starts
        iterations (a resumed run may start one more than an uninterrupted one) or on validations."""
        return torch.Generator().manual_seed(self.hparams.seed)


def _set_up(dataset: Dataset | None) -> Dataset:
    """``dataset``, which :meth:`FaceDataModule.setup` creates before Lightning asks for its loader."""
    if dataset is None:
        raise RuntimeError(NOT_SET_UP)
    return dataset
