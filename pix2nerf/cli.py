"""The ``pix2nerf`` command: Lightning's CLI (``fit | validate | test | predict``) over the package's systems,
plus ``pix2nerf export`` (a training checkpoint -> an inference bundle).

Models and data modules are chosen in YAML by ``class_path``; see ``configs/train/``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import ArgsType, LightningCLI

from pix2nerf.data import DatasetFormatError, ImageReadError
from pix2nerf.inference import INPUT_ERROR_EXIT_CODE, InputError
from pix2nerf.systems.gan import TrainingDivergedError

DIVERGED_EXIT_CODE = 1
"""A run stopped by non-finite losses or weights: not a user error (2), but said in one line."""

DATA_ERRORS = (FileNotFoundError, DatasetFormatError, ImageReadError)
"""What the data modules raise for a data set that is missing or malformed (a missing path, a corrupt
``dataset.json``, an undecodable image); their messages name the file and the problem."""
DATA_PACKAGE = "pix2nerf.data"
SUBCOMMANDS = ("fit", "validate", "test", "predict")


class Pix2NeRFCLI(LightningCLI):
    """LightningCLI with the package's defaults: optimizers are injected into systems, never auto-configured, and
    CPU threads adapt to competing load (:class:`~pix2nerf.systems.AdaptiveThreads`; ``PIX2NERF_NUM_THREADS``
    fixes the count). A data set that cannot be read raises :class:`InputError`, leaving no empty run folder."""

    def __init__(self, *args, **kwargs) -> None:
        from pix2nerf.systems.callbacks import AdaptiveThreads

        defaults = dict(kwargs.pop("trainer_defaults", None) or {})
        defaults["callbacks"] = [*defaults.get("callbacks", []), AdaptiveThreads()]
        kwargs["trainer_defaults"] = defaults
        try:
            super().__init__(*args, **kwargs)
        except DATA_ERRORS as error:
            if not _raised_in_data_package(error):
                raise
            _remove_empty_log_folders(getattr(self, "trainer", None))
            raise InputError(str(error)) from error


def _raised_in_data_package(error: BaseException) -> bool:
    """Whether ``error`` was raised by the data modules themselves, not passed through them (a bug elsewhere, or an
    error a DataLoader worker re-raises, keeps its traceback)."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and frame.tb_frame.f_globals.get("__name__", "").startswith(DATA_PACKAGE)


def _remove_empty_log_folders(trainer: Trainer | None) -> None:
    """Remove the folders the loggers made for a run that never started (version, name and save folders, while
    empty)."""
    for logger in trainer.loggers if trainer is not None else []:
        for folder in (logger.log_dir, logger.root_dir, logger.save_dir):
            if folder is not None:
                with contextlib.suppress(OSError):  # not empty, or never made
                    os.rmdir(folder)


def export(args: list[str]) -> None:
    """``pix2nerf export CHECKPOINT OUTPUT.safetensors [--full-precision]``."""
    from pix2nerf.inference import export_bundle

    parser = argparse.ArgumentParser(prog="pix2nerf export", description="Write an inference bundle (safetensors).")
    parser.add_argument("checkpoint", help="a Lightning .ckpt of a GAN3D/Pix2NeRF run (or a bundle to re-export)")
    parser.add_argument("output", help="the bundle to write (.safetensors; a readable .yaml is written beside it)")
    parser.add_argument("--full-precision", action="store_true", help="keep fp32 weights (default: fp16)")
    options = parser.parse_args(args)
    try:
        path = export_bundle(options.checkpoint, options.output, half_precision=not options.full_precision)
    except InputError as error:
        print(f"pix2nerf export: error: {error}", file=sys.stderr)
        sys.exit(INPUT_ERROR_EXIT_CODE)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB) and {path.with_suffix('.yaml')}")


def main(args: ArgsType = None) -> None:
    argv = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else None
    if argv and argv[0] == "export":
        export(argv[1:])
        return
    try:
        Pix2NeRFCLI(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            args=args,
        )
    except (InputError, TrainingDivergedError) as error:
        command = f"pix2nerf {argv[0]}" if argv and argv[0] in SUBCOMMANDS else "pix2nerf"
        print(f"{command}: error: {error}", file=sys.stderr)
        sys.exit(INPUT_ERROR_EXIT_CODE if isinstance(error, InputError) else DIVERGED_EXIT_CODE)


if __name__ == "__main__":
    main()
