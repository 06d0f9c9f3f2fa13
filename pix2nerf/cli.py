"""The ``pix2nerf`` command: Lightning's CLI (``fit | validate | test | predict``) over the package's systems.

Models and data modules are chosen in YAML by ``class_path``; see ``configs/train/``.
"""

from __future__ import annotations

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import ArgsType, LightningCLI


class Pix2NeRFCLI(LightningCLI):
    """LightningCLI with the package's defaults: optimizers are injected into systems, never auto-configured."""


def main(args: ArgsType = None) -> None:
    Pix2NeRFCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        args=args,
    )


if __name__ == "__main__":
    main()
