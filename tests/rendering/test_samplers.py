import pytest
import torch

from pix2nerf.rendering import (
    gather_samples,
    importance,
    merge_samples,
    ray_box_intersection,
    sample_pdf,
    smooth_weights,
    stratified,
)


def test_stratified_without_jitter_is_linspace():
    near = torch.full((2, 3, 1), 2.25)
    far = torch.full((2, 3, 1), 3.3)
    t = stratified(near, far, 12)
    torch.testing.assert_close(t, torch.linspace(2.25, 3.3, 12).expand(2, 3, 12))


def test_stratified_jitter_stays_in_its_stratum_and_is_reproducible():
    near, far = torch.zeros(4, 100, 1), torch.ones(4, 100, 1) * 2.0
    t = stratified(near, far, 9, jitter=True, rng=torch.Generator().manual_seed(0))
    grid = torch.linspace(0.0, 2.0, 9)
    offset = t - grid
    assert (offset >= 0).all() and (offset < 0.25).all()
    assert offset.std() > 0.05
    assert (t[..., 1:] > t[..., :-1]).all()
    again = stratified(near, far, 9, jitter=True, rng=torch.Generator().manual_seed(0))
    assert torch.equal(t, again)


def test_ray_box_intersection_known_values():
    origins = torch.tensor([[[0.0, 0.0, 3.0], [0.0, 2.0, 3.0], [0.1, 0.2, 0.0]]])
    directions = torch.tensor([[[0.0, 0.0, -1.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]])
    near, far, hit = ray_box_intersection(origins, directions, -0.5, 0.5)
    assert hit[0, :, 0].tolist() == [True, False, True]
    torch.testing.assert_close(near[0, [0, 2], 0], torch.tensor([2.5, 0.0]))
    torch.testing.assert_close(far[0, [0, 2], 0], torch.tensor([3.5, 0.4]))


def test_sample_pdf_uniform_weights_gives_even_quantiles():
    bins = torch.linspace(1.0, 3.0, 5).expand(2, 5)
    samples = sample_pdf(bins, torch.ones(2, 4), 9, deterministic=True)
    torch.testing.assert_close(samples, torch.linspace(1.0, 3.0, 9).expand(2, 9))


def test_sample_pdf_follows_the_weights():
    bins = torch.tensor([[0.0, 1.0, 2.0]])
    samples = sample_pdf(bins, torch.tensor([[1.0, 3.0]]), 40000, rng=torch.Generator().manual_seed(0))
    assert (samples > 1.0).float().mean() == pytest.approx(0.75, abs=0.01)
    assert samples.min() >= 0.0 and samples.max() <= 2.0


def test_importance_concentrates_on_heavy_interval():
    t = torch.linspace(2.0, 4.0, 33).expand(3, 5, 33)
    weights = torch.zeros(3, 5, 32)
    weights[..., 20] = 0.9  # interval [t_20, t_21]
    fine = importance(t, weights, 64, deterministic=True, smooth=False)
    inside = (fine >= t[..., 20:21]) & (fine <= t[..., 21:22])
    assert inside.float().mean() > 0.95
    smoothed = importance(t, weights, 64, rng=torch.Generator().manual_seed(0))
    near_peak = (smoothed >= t[..., 19:20]) & (smoothed <= t[..., 22:23])
    assert near_peak.float().mean() > 0.5
    assert smoothed.shape == (3, 5, 64) and not smoothed.requires_grad


def test_smooth_weights_widens_a_peak():
    weights = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]])
    torch.testing.assert_close(smooth_weights(weights, floor=0.0), torch.tensor([[0.0, 0.5, 1.0, 0.5, 0.0]]))


def test_merge_samples_sorts_and_gathers_values():
    t_a = torch.tensor([[[1.0, 3.0, 5.0]]])
    t_b = torch.tensor([[[2.0, 4.0]]])
    t, order = merge_samples(t_a, t_b)
    assert t.tolist() == [[[1.0, 2.0, 3.0, 4.0, 5.0]]]
    values = torch.cat([t_a, t_b], dim=-1)[..., None] * 10
    torch.testing.assert_close(gather_samples(values, order)[..., 0], t * 10)
