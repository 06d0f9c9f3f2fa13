"""Depth errors on analytic depth maps: scaled depth has zero scale-invariant error and a known absolute one."""

import math

import pytest
import torch

from pix2nerf.metrics import depth_errors


def analytic_depth() -> torch.Tensor:
    """(2, 1, 4, 5) depths 2..3 (a tilted plane) with an infinite background column."""
    ramp = torch.linspace(2.0, 3.0, 20).reshape(1, 1, 4, 5)
    depth = torch.cat([ramp, ramp.flip(-1)])
    depth[..., 0] = math.inf
    return depth


def test_exact_depth_has_no_error():
    target = analytic_depth()
    errors = depth_errors(target.clone(), target)
    for name, value in errors.mean().items():
        assert value.item() == pytest.approx(0.0, abs=1e-6), name


def test_scaled_depth_is_wrong_in_scale_only():
    target = analytic_depth()
    scale = 1.25
    errors = depth_errors(target * scale, target)
    valid = [t[torch.isfinite(t)] for t in target]
    # Scale-aware: |s t - t| = (s - 1) t, so MAE = (s - 1) mean(t) and RMSE = (s - 1) sqrt(mean(t^2)).
    torch.testing.assert_close(errors.mae, torch.stack([(scale - 1) * t.mean() for t in valid]))
    torch.testing.assert_close(errors.rmse, torch.stack([(scale - 1) * t.square().mean().sqrt() for t in valid]))
    # Scale-invariant: zero.
    torch.testing.assert_close(errors.scaled_mae, torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(errors.silog, torch.zeros(2), atol=1e-6, rtol=0)


def test_offset_depth_and_masks():
    target = analytic_depth()
    errors = depth_errors(target + 0.1, target)
    torch.testing.assert_close(errors.mae, torch.full((2,), 0.1))
    torch.testing.assert_close(errors.rmse, torch.full((2,), 0.1))
    assert (errors.silog > 0).all()  # an offset is not a scale: the shape is wrong
    # The mask restricts the pixels: only the last column (error 0.5 there) counts.
    prediction = target.clone()
    prediction[..., -1] += 0.5
    mask = torch.zeros_like(target, dtype=torch.bool)
    mask[..., -1] = True
    torch.testing.assert_close(depth_errors(prediction, target, mask).mae, torch.full((2,), 0.5))
    assert torch.isnan(depth_errors(prediction, target, torch.zeros_like(mask)).mae).all()
