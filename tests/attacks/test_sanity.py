"""Evaluation checks (medis.attacks.sanity): each warns on the victim it is meant for, and only there."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from medis.attacks import Attack, run_attack
from medis.attacks.rules.pgd import PGD
from medis.attacks.sanity import check_victim
from medis.models.frontend import Victim

SIZE = 16


class Red(nn.Module):
    """Logit = 10·(red − 0.5), optionally through dropout that stays on, or a rounding step."""

    def __init__(self, kind: str = "plain") -> None:
        super().__init__()
        self.kind = kind
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = x[:, :1]
        if self.kind == "stochastic":
            red = F.dropout(red, p=0.5, training=True)  # MC dropout: random even in eval mode
        if self.kind == "masked":
            red = torch.round(red * 4) / 4  # a quantiser: zero gradient almost everywhere
        return self.scale * (red - 0.5)


def victim(kind: str = "plain") -> Victim:
    return Victim(Red(kind), SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), fusion="clean").eval()


def images_and_masks(n: int = 3) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    torch.manual_seed(0)
    images = [torch.rand(3, SIZE, SIZE) * 0.6 + 0.2 for _ in range(n)]
    masks = [(image[:1] > 0.5).float() for image in images]  # what the plain model predicts
    return images, masks


def test_a_sound_victim_passes_every_check() -> None:
    images, masks = images_and_masks()
    checks = check_victim(victim(), images, masks)
    assert checks.warnings == []
    assert checks.output_change == 0.0 and checks.zero_gradient_share < 0.5 and checks.clean_failure_share == 0.0


def test_stochastic_victim_is_flagged() -> None:
    images, masks = images_and_masks()
    checks = check_victim(victim("stochastic"), images, masks)
    assert checks.output_change > 1e-3
    assert any("stochastic" in w for w in checks.warnings)


def test_gradient_masking_is_flagged() -> None:
    images, masks = images_and_masks()
    checks = check_victim(victim("masked"), images, masks)
    assert checks.zero_gradient_share > 0.9
    assert any("gradient masking" in w for w in checks.warnings)


def test_clean_failures_are_flagged() -> None:
    images, masks = images_and_masks()
    checks = check_victim(victim(), images, [1 - m for m in masks])  # ground truth the model never matches
    assert checks.clean_failure_share == 1.0
    assert any("already fails" in w for w in checks.warnings)


def test_train_mode_victim_warns_and_is_restored() -> None:
    images, masks = images_and_masks(1)
    attacked = victim()
    attacked.model.train()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_attack(attacked, images, masks, Attack(budget={"steps": 1}), losses=["bce"])
    assert any("train mode" in str(w.message) for w in caught)
    assert attacked.model.training  # the caller's mode comes back


def test_eps_zero_changes_nothing_and_asr_grows_with_eps() -> None:
    """An ε = 0 budget leaves every image untouched; on a fixed set the ASR does not fall as ε grows."""
    torch.manual_seed(1)
    images = [torch.rand(3, SIZE, SIZE) * (0.04 + 0.04 * i) + 0.5 - (0.02 + 0.02 * i) for i in range(6)]
    masks = [(image[:1] > 0.5).float() for image in images]  # red within ±0.02..0.12 of the boundary
    asr = []
    for eps in (0.0, 2 / 255, 8 / 255, 32 / 255):
        attack = Attack(rule=PGD(step_size=4 / 255), budget={"eps": eps}, losses=["bce", "dice"])
        records = run_attack(victim(), images, masks, attack).records
        if eps == 0.0:
            assert all(r["linf"] == 0.0 and r["l2"] == 0.0 for r in records)
        asr.append(sum(r["success"] for r in records) / len(records))
    assert asr == sorted(asr) and asr[-1] > asr[0]


def test_nan_output_is_flagged() -> None:
    images, masks = images_and_masks()
    images[0][0, 0, 0] = float("nan")  # one NaN pixel makes that image's prediction NaN there
    checks = check_victim(victim(), images, masks)
    assert any("NaN on clean images" in w for w in checks.warnings)
