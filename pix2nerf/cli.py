"""The ``pix2nerf`` command: Lightning's CLI (``fit | validate | test | predict``) over the package's systems,
plus ``pix2nerf export`` (a training checkpoint -> an inference bundle).

Models and data modules are chosen in YAML by ``class_path``; see ``configs/train/``.
"""

from __future__ import annotations

import argparse
import sys

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import ArgsType, LightningCLI


class Pix2NeRFCLI(LightningCLI):
    """LightningCLI with the package's defaults: optimizers are injected into systems, never auto-configured, and
    CPU threads adapt to competing load (:class:`~pix2nerf.systems.AdaptiveThreads`; ``PIX2NERF_NUM_THREADS``
    fixes the count)."""

    def __init__(self, *args, **kwargs) -> None:
        from pix2nerf.systems.callbacks import AdaptiveThreads

        defaults = dict(kwargs.pop("trainer_defaults", None) or {})
        defaults["callbacks"] = [*defaults.get("callbacks", []), AdaptiveThreads()]
        super().__init__(*args, trainer_defaults=defaults, **kwargs)


def export(args: list[str]) -> None:
    """``pix2nerf export CHECKPOINT OUTPUT.safetensors [--full-precision]``."""
    from pix2nerf.inference import INPUT_ERROR_EXIT_CODE, InputError, export_bundle

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
