"""Write a synthetic-heads data set in EG3D format, with masks, depth and a contact sheet.

python tools/make_synthetic_heads.py output=data/heads_train_64 num_images=10000
python tools/make_synthetic_heads.py split=test num_identities=50 resolution=128
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import hydra
import imageio.v3 as iio
import numpy as np
import torch
from omegaconf import DictConfig
from torchvision.utils import make_grid
from tqdm import tqdm

from pix2nerf.data.eg3d import DEPTH_DIR, MASK_DIR
from pix2nerf.data.heads import SEMANTIC_CLASSES
from pix2nerf.data.images import to_uint8, write_image
from pix2nerf.data.synthetic import TEST_SEED_OFFSET, HeadView, SyntheticHeads, render_views
from pix2nerf.inference.errors import check_command_line

IMAGES_PER_FOLDER = 1000


def image_name(index: int) -> str:
    return f"{index // IMAGES_PER_FOLDER:05d}/img{index:08d}.png"


def write_dataset(dataset: SyntheticHeads, output: Path, batch_size: int) -> float:
    """Render every item of ``dataset`` into ``output``; returns images per second."""
    labels, identities = [], []
    start = time.perf_counter()
    with tqdm(total=len(dataset), desc=f"rendering {dataset.split} heads", unit="img") as progress:
        for first in range(0, len(dataset), batch_size):
            indices = list(range(first, min(first + batch_size, len(dataset))))
            for index, item in zip(indices, dataset.__getitems__(indices), strict=True):
                name = image_name(index)
                write_image(output / name, item["image"])
                (output / MASK_DIR / name).parent.mkdir(parents=True, exist_ok=True)
                iio.imwrite(output / MASK_DIR / name, item["semantics"].to(torch.uint8).numpy())
                (output / DEPTH_DIR / name).parent.mkdir(parents=True, exist_ok=True)
                np.save(output / DEPTH_DIR / name.replace(".png", ".npy"), item["depth"][0].numpy())
                labels.append([name, item["camera"].tolist()])
                identities.append(item["identity"])
            progress.update(len(indices))
    seconds = time.perf_counter() - start
    meta = {
        "labels": labels,
        "identities": identities,
        "semantic_classes": SEMANTIC_CLASSES,
        "generator": {"name": "pix2nerf.synthetic_heads", "split": dataset.split, "resolution": dataset.resolution},
    }
    (output / "dataset.json").write_text(json.dumps(meta))
    return len(dataset) / seconds


def contact_sheet(dataset: SyntheticHeads, identities: int, yaws: list[float]) -> np.ndarray:
    """A grid of identities (rows) x views (columns) of the split."""
    first = TEST_SEED_OFFSET if dataset.split == "test" else 0
    views = [HeadView(first + i, yaw, 0.0) for i in range(identities) for yaw in yaws]
    out, _ = render_views(views, dataset.resolution, dataset.prior, dataset.random_light)
    grid = make_grid(out.image, nrow=len(yaws), padding=2, pad_value=1.0)
    return to_uint8(grid)


@hydra.main(version_base=None, config_path="../configs/data", config_name="make_synthetic_heads")
def main(cfg: DictConfig) -> None:
    dataset = SyntheticHeads(
        split=cfg.split,
        resolution=cfg.resolution,
        num_identities=cfg.num_identities,
        length=cfg.num_images,
        random_light=cfg.random_light,
        seed=cfg.seed,
    )
    output = Path(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    rate = write_dataset(dataset, output, cfg.batch_size)
    print(f"wrote {len(dataset)} images to {output} ({rate:.1f} images/s including PNG encoding)")
    if cfg.contact_sheet.enabled:
        sheet = output / "contact_sheet.png"
        iio.imwrite(sheet, contact_sheet(dataset, cfg.contact_sheet.identities, list(cfg.contact_sheet.yaws)))
        print(f"contact sheet: {sheet}")
    if cfg.zip:
        archive = shutil.make_archive(str(output), "zip", root_dir=output)
        print(f"zip: {archive}")


if __name__ == "__main__":
    check_command_line("make_synthetic_heads")
    main()
