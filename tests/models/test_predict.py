"""Victim.predict / real_predict: the forward's binary prediction, bit for bit, with less memory."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medis.attacks.batching.memory import peak_allocated
from medis.models.frontend import Victim, VictimOutput, predict_mask


class TwoSides(nn.Module):
    """Two side outputs whose signs follow the image's content: mixed predictions."""

    def __init__(self) -> None:
        super().__init__()
        self.coarse = nn.Conv2d(3, 1, 3, padding=1)
        self.fine = nn.Conv2d(3, 1, 1)
        torch.manual_seed(0)
        for conv in (self.coarse, self.fine):
            nn.init.normal_(conv.weight, std=2.0)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return nn.functional.avg_pool2d(self.coarse(x), 2), self.fine(x)


CENTRED = dict(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))  # inputs of both signs: mixed predictions


def images() -> torch.Tensor:
    return torch.rand(3, 3, 70, 90, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("fusion", ["clean", "last", "paper"])
def test_predict_is_the_forward_prediction_bit_for_bit(fusion: str) -> None:
    victim = Victim(TwoSides(), 32, fusion=fusion, antialias=True, **CENTRED).freeze()
    x = images()
    with torch.no_grad():
        full = victim(x).prob > 0.5
        assert 0.1 < full.float().mean() < 0.9  # a mixed prediction, so the comparison means something
        assert torch.equal(victim.predict(x), full)
        assert torch.equal(victim.predict(x, (30, 40)), victim(x, (30, 40)).prob > 0.5)
        assert torch.equal(victim.real_predict(x), victim.real_pipeline(x).prob > 0.5)
    assert torch.equal(predict_mask(victim, x), full) and torch.equal(predict_mask(victim, x, real=True),
                                                                      victim.real_predict(x))


def test_predict_keeps_one_map_at_mask_size_instead_of_all() -> None:
    victim = Victim(TwoSides(), 32, fusion="clean", **CENTRED).freeze()
    x = torch.rand(1, 3, 600, 800)
    with torch.no_grad():
        lean = peak_allocated(lambda: victim.predict(x), "cpu")
        full = peak_allocated(lambda: victim(x).prob > 0.5, "cpu")
    assert lean < 0.5 * full


def test_a_victim_whose_forward_differs_is_called_as_it_is() -> None:
    class Shifted(Victim):
        def forward(self, images: torch.Tensor, out_size=None) -> VictimOutput:
            out = super().forward(images, out_size)
            return VictimOutput(out.side_logits, 1.0 - out.prob, out.side_probs, out.logit)

    victim = Shifted(TwoSides(), 32, fusion="clean", **CENTRED).freeze()
    x = images()
    with torch.no_grad():
        assert torch.equal(predict_mask(victim, x), victim(x).prob > 0.5)
