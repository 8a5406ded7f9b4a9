"""Deterministic, well-scaled weights for any module, independent of PyTorch's init code paths."""

from __future__ import annotations

import torch
from torch import nn


def fill_seeded(model: nn.Module, seed: int) -> nn.Module:
    """Overwrite every parameter and batch-norm buffer from a seeded generator, in state_dict order.

    Conv/linear weights ~ N(0, 1/fan_in) (activations stay O(1)), biases and BN means ~ N(0, 0.1²),
    BN scales and variances ~ U(0.5, 1.5). Returns ``model``.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if not value.is_floating_point():
                continue
            if key.endswith("running_var") or (value.dim() == 1 and key.endswith("weight")):
                value.copy_(torch.rand(value.shape, generator=generator, dtype=torch.float64) + 0.5)
            elif value.dim() == 1:
                value.copy_(torch.randn(value.shape, generator=generator, dtype=torch.float64) * 0.1)
            else:
                fan_in = value[0].numel()
                value.copy_(torch.randn(value.shape, generator=generator, dtype=torch.float64) / fan_in**0.5)
    return model
