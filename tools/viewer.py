"""Interactive web viewer: upload a face photo, orbit and zoom around its 3D reconstruction, export views.

python tools/viewer.py checkpoint=checkpoints/synthetic_heads_64.safetensors
python tools/viewer.py checkpoint=run.ckpt input=face.png port=8000 refine_steps=50
python tools/viewer.py checkpoint=run.ckpt host=0.0.0.0 allowed_hosts=[gpu-box.lan]   # from other machines

Open the printed URL (http://127.0.0.1:8765/ by default). A missing or bad checkpoint or input, or a port in use,
ends with a one-line error and exit code 2. Options: configs/infer/viewer.yaml.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from pix2nerf.inference import INPUT_ERROR_EXIT_CODE, InputError, configs, load_model
from pix2nerf.inference.errors import check_command_line
from pix2nerf.runtime import configure_threads
from pix2nerf.viewer import ViewerOptions, ViewerServer, ViewerSession, make_server

# The config: the tool's own keys (values in configs/infer/viewer.yaml), then ViewerOptions' fields (defaults from
# the dataclass).
TOOL_KEYS = ("checkpoint", "input", "host", "port", "allowed_hosts", "device", "precision", "threads")
configs.store("viewer_schema", configs.tool_schema("ViewerConfig", TOOL_KEYS, options=ViewerOptions))


def options_from_config(cfg: DictConfig) -> ViewerOptions:
    """The tool's config -> :class:`ViewerOptions` (same key names)."""
    return configs.options_from_config(ViewerOptions, cfg)


def build(cfg: DictConfig) -> ViewerServer:
    """Load the model (and the optional first face) and bind the server; user errors raise InputError."""
    device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else cfg.device
    device = "cpu" if device == "auto" else device
    configure_threads(cfg.threads)
    start = time.perf_counter()
    model = load_model(cfg.checkpoint, device, cfg.precision)
    print(
        f"loaded {cfg.checkpoint} in {time.perf_counter() - start:.2f} s "
        f"({model.image_resolution}^2, {device}, {model.precision})"
    )
    session = ViewerSession(model, options_from_config(cfg))
    if cfg.input:
        path = Path(cfg.input)
        if not path.is_file():
            raise InputError(f"input {path} does not exist; pass an image or a latent.pt")
        session.set_face(path.read_bytes(), path.name)
    try:
        return make_server(session, cfg.host, cfg.port, cfg.allowed_hosts)
    except OSError as error:
        raise InputError(f"cannot listen on {cfg.host}:{cfg.port} ({error.strerror}); choose another port=") from error


@hydra.main(version_base=None, config_path="../configs/infer", config_name="viewer")
def main(cfg: DictConfig) -> None:
    try:
        server = build(cfg)
    except InputError as error:
        print(f"viewer: error: {error}", file=sys.stderr)
        sys.exit(INPUT_ERROR_EXIT_CODE)
    print(f"pix2nerf viewer: open {server.url} (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    check_command_line("viewer")
    main()
