"""Import an EG3D network pickle (``network-snapshot-*.pkl``) as a pix2nerf inference bundle.

python tools/import_eg3d.py pickle=network-snapshot-001000.pkl output=checkpoints/eg3d.safetensors

The pickle is read with an allow-list of globals: it cannot run code, and a pickle that asks to ends with a
one-line error naming the refused global and exit code 2 (as does a missing, corrupt, malformed or unsupported
file, or an output that cannot be written).
Options: configs/infer/import_eg3d.yaml.
"""

from __future__ import annotations

import sys
import time
import warnings

import hydra
from omegaconf import DictConfig

from pix2nerf.inference import INPUT_ERROR_EXIT_CODE, InputError
from pix2nerf.inference.errors import check_command_line, check_output_file
from pix2nerf.io import import_eg3d


def run(cfg: DictConfig) -> None:
    check_output_file(cfg.output, "output")
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = import_eg3d(cfg.pickle, cfg.output, which=cfg.network, half_precision=cfg.half_precision)
    seconds = time.perf_counter() - start
    for warning in caught:
        print(f"note: {warning.message}")
    print(f"imported {cfg.network} of {cfg.pickle} -> {path} in {seconds:.2f} s")


@hydra.main(version_base=None, config_path="../configs/infer", config_name="import_eg3d")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except InputError as error:  # includes UnsafePickleError
        print(f"import_eg3d: error: {error}", file=sys.stderr)
        sys.exit(INPUT_ERROR_EXIT_CODE)


if __name__ == "__main__":
    check_command_line("import_eg3d")
    main()
