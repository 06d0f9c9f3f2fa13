"""Single-image novel-view synthesis: a face photo -> orbit video, yaw x pitch grid, depth, semantics, mesh.

python tools/novel_view.py input=face.png checkpoint=checkpoints/synthetic_heads_64.safetensors
python tools/novel_view.py input=photos/ checkpoint=run.ckpt refine.steps=0 path=spiral num_frames=96

Bad input (a missing or corrupt file, a tiny image, a checkpoint of another kind, an output_dir that cannot be
written, an unquoted value with spaces) ends with a one-line error and exit code 2. In a folder run, a bad image
is reported (stderr and ``reports.json``) and the others still run; the exit code is then 2.
Options: configs/infer/novel_view.yaml.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from pix2nerf.inference import INPUT_ERROR_EXIT_CODE, InputError, configs, load_model
from pix2nerf.inference.errors import check_command_line, check_output_folder
from pix2nerf.inference.inputs import collect_inputs
from pix2nerf.inference.pipeline import NovelViewOptions, novel_views

# The config: the tool's own keys (values in configs/infer/novel_view.yaml), then NovelViewOptions' fields (defaults
# from the dataclass; ``refine`` holds RefineOptions').
TOOL_KEYS = ("input", "checkpoint", "output_dir", "device", "precision", "seed", "progress")
configs.store("novel_view_schema", configs.tool_schema("NovelViewConfig", TOOL_KEYS, options=NovelViewOptions))


def options_from_config(cfg: DictConfig) -> NovelViewOptions:
    """The tool's config -> :class:`NovelViewOptions` (same key names; ``refine`` nested)."""
    return configs.options_from_config(NovelViewOptions, cfg)


def run(cfg: DictConfig) -> list[dict]:
    device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else cfg.device
    device = "cpu" if device == "auto" else device
    torch.manual_seed(cfg.seed)
    inputs = collect_inputs(cfg.input)
    check_output_folder(cfg.output_dir, "output_dir")
    start = time.perf_counter()
    model = load_model(cfg.checkpoint, device, cfg.precision)
    print(
        f"loaded {cfg.checkpoint} in {time.perf_counter() - start:.2f} s "
        f"({model.image_resolution}^2, {device}, {model.precision})"
    )
    options = options_from_config(cfg)
    reports: list[dict] = []
    failures = []
    for image_path in inputs:
        output = Path(cfg.output_dir) / image_path.stem
        try:
            report = novel_views(model, image_path, output, options, progress=cfg.progress)
        except InputError as error:
            if len(inputs) == 1:
                raise
            print(f"novel_view: error: {image_path}: {error}", file=sys.stderr)
            failures.append(str(image_path))
            reports.append({"input": str(image_path), "error": str(error)})
            continue
        reports.append(report)
        timings = ", ".join(f"{k} {v:.2f} s" for k, v in report["timings_seconds"].items())
        print(f"{image_path} -> {output}: PSNR {report['psnr_reconstruction']:.2f} dB; {timings}")
    if len(reports) > 1:
        (Path(cfg.output_dir) / "reports.json").write_text(json.dumps(reports, indent=2))
    if failures:
        raise InputError(f"{len(failures)} of {len(inputs)} images failed ({', '.join(failures)}); see above")
    return reports


@hydra.main(version_base=None, config_path="../configs/infer", config_name="novel_view")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except InputError as error:
        print(f"novel_view: error: {error}", file=sys.stderr)
        sys.exit(INPUT_ERROR_EXIT_CODE)


if __name__ == "__main__":
    check_command_line("novel_view", output_folders=("output_dir",))
    main()
