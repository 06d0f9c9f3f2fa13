import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def eg3d_reference_dir() -> Path:
    path = SHARED / "eg3d_reference"
    if not (path / "reference_outputs.safetensors").exists():
        pytest.skip(f"EG3D reference data not found at {path}")
    return path
