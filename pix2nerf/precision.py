"""Mixed precision: bf16 autocast for the networks, float32 islands where bf16 would spoil the result.

bf16 keeps float32's range but only an 8-bit mantissa (about 3 significant digits). Convolutions and matrix
products tolerate that and run about twice as fast on CPUs with AMX or AVX512-bf16 and on recent GPUs.
Alpha compositing (transmittance is a product of many factors close to 1), R1 (a gradient of a gradient)
and the density regulariser (a difference of nearby densities) do not, so they run in float32 inside
:func:`full_precision` whatever the caller's autocast says. Every layer may import this module.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Literal, cast

import torch
from torch import Tensor

Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16")
AUTO = "auto"
"""Asks :func:`resolve_precision` to choose by hardware."""


def check_precision(precision: str) -> Precision:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ValueError naming the choices."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} (or {AUTO}), got {precision!r}")
    return cast(Precision, precision)


def bf16_is_fast(device: torch.device | str) -> bool:
    """Whether bf16 convolutions beat float32 on ``device``: CUDA GPUs with bf16 support, CPUs with AMX tiles.

    CPUs with AVX512-bf16 but no AMX run bf16 convolutions *slower* than float32 (measured 1.6x slower for a
    256-channel 3x3 convolution at 64^2 on a 2-core Xeon without AMX).
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return device.type == "cpu" and amx is not None and bool(amx())


def resolve_precision(precision: str, device: torch.device | str) -> Precision:
    """``"auto"`` -> ``"bf16"`` where :func:`bf16_is_fast`, else ``"fp32"``; other values are checked."""
    if precision == AUTO:
        return "bf16" if bf16_is_fast(device) else "fp32"
    return check_precision(precision)


def autocast(precision: str, device: torch.device | str) -> AbstractContextManager:
    """bf16 autocast on ``device`` (CPU or CUDA) when ``precision == "bf16"``; a no-op for ``"fp32"``."""
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=check_precision(precision) == "bf16")


def at_least_float32(x: Tensor) -> Tensor:
    """``x`` in float32 if it is in a 16-bit float type; float32 and float64 tensors pass unchanged."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


def full_precision(device: torch.device | str) -> AbstractContextManager:
    """Run the enclosed code in full precision even inside an autocast region (cast its inputs with
    :func:`at_least_float32`)."""
    return torch.autocast(torch.device(device).type, enabled=False)
