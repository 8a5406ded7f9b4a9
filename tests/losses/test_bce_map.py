"""bce_map: PyTorch's binary_cross_entropy (values and both gradients) from vectorised ops."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medis.losses.cross_entropy import bce_map_on_prob as bce_map


@pytest.mark.parametrize("soft_mask", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_equals_pytorchs_binary_cross_entropy_and_its_gradients(soft_mask: bool, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(int(soft_mask))
    prob = torch.rand(3, 1, 40, 56, generator=g, dtype=torch.float64).to(dtype)
    # the edges: exactly 0 and 1 (clamped logs, the 1e-12 guard), tiny, near 1, one half
    prob[0, 0, 0, :5] = torch.tensor([0.0, 1.0, 1e-30, 1 - 1e-7, 0.5], dtype=dtype)
    mask = torch.rand(prob.shape, generator=g, dtype=dtype)
    mask = mask if soft_mask else (mask > 0.5).to(dtype)
    weights = torch.rand(prob.shape, generator=g, dtype=dtype)
    results = []
    for fn in (bce_map, lambda p, m: F.binary_cross_entropy(p, m, reduction="none")):
        p, m = prob.clone().requires_grad_(), mask.clone().requires_grad_()
        value = fn(p, m)
        results.append((value, *torch.autograd.grad((value * weights).sum(), (p, m))))
    for ours, theirs in zip(*results):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)  # infinities (mask grad at 0, 1) must match too
    assert torch.isfinite(results[0][0]).all() and torch.isfinite(results[0][1]).all()
