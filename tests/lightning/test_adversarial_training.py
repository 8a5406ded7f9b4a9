"""Adversarial training's defining behaviour (issue "robust skin-lesion models"): the training
examples lie in the ball, the network is in eval mode while the attack runs and in train mode after,
the adversarial share of a batch holds, the radius warms up, and the checkpoint says how it was trained."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medis.attacks.composition import Attack
from medis.errors import ConfigError
from medis.lightning.adversarial import AdversarialTraining, adversarial_count, worst_case_examples
from medis.lightning.segmentation_module import SegmentationModule
from medis.models.frontend import Victim

EPS = 4 / 255


class ModeRecorder(nn.Module):
    """A small network with batch norm that records its ``training`` flag at every forward."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return self.body(x)


def pgd(steps: int = 3, eps: float = EPS) -> Attack:
    return Attack(name="pgd_at", rule={"name": "pgd", "step_size": 0.01}, losses=("bce",),
                  budget={"steps": steps, "eps": eps, "random_start": True}, criteria={"stop": "never"})


def batch(n: int = 4, size: int = 32) -> dict:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, size, size, generator=generator)
    masks = torch.zeros(n, 1, size, size)
    masks[:, :, 8:24, 8:24] = 1
    return {"image": images, "mask": masks, "id": [f"img{i}" for i in range(n)]}


def module(share: float = 1.0, warmup: float = 0.0) -> SegmentationModule:
    torch.manual_seed(0)
    return SegmentationModule(ModeRecorder(), optimizer=torch.optim.Adam, scheduler=None, scales=(1.0,),
                              adversarial=AdversarialTraining(pgd(), share=share, warmup_epochs=warmup))


def test_examples_lie_in_the_ball_and_move() -> None:
    data = batch()
    net = ModeRecorder().eval()
    victim = Victim(net, size=32, fusion="last")
    adversarial = worst_case_examples(victim, data["image"], data["mask"], data["id"], pgd(), seed=0)
    assert adversarial.shape == data["image"].shape
    distance = (adversarial - data["image"]).abs().amax(dim=(1, 2, 3))
    assert (distance <= EPS + 1e-6).all(), distance
    assert (distance > EPS / 2).all(), distance  # a random start and sign steps: not the clean image
    assert adversarial.min() >= 0 and adversarial.max() <= 1


def test_network_is_in_eval_mode_during_the_attack_and_in_train_mode_after() -> None:
    lit = module()
    lit.model.train()
    lit.model.modes.clear()
    lit.adversarial_batch(batch(), 0)
    assert lit.model.modes and not any(lit.model.modes), "the attack ran the network in train mode"
    assert lit.model.training
    assert all(m.training for m in lit.model.modules())
    assert all(p.requires_grad for p in lit.model.parameters())
    # batch-norm statistics are not touched by the attack's forwards (eval mode)
    before = lit.model.body[1].running_mean.clone()
    lit.adversarial_batch(batch(), 1)
    assert torch.equal(before, lit.model.body[1].running_mean)


@pytest.mark.parametrize("share, changed", [(1.0, 4), (0.5, 2), (0.25, 1), (0.0, 0)])
def test_adversarial_share_of_the_batch_holds(share: float, changed: int) -> None:
    data = batch()
    lit = module(share=share)
    lit.model.train()
    out = lit.adversarial_batch(data, 0)
    moved = (out - data["image"]).abs().flatten(1).amax(1) > 0
    assert moved.tolist() == [True] * changed + [False] * (4 - changed)
    assert adversarial_count(share, 4) == changed


def test_adversarial_count_rounds_and_keeps_one() -> None:
    assert adversarial_count(0.5, 16) == 8
    assert adversarial_count(0.5, 1) == 1
    assert adversarial_count(0.3, 10) == 3
    assert adversarial_count(0.0, 10) == 0


def test_radius_warms_up_linearly() -> None:
    settings = AdversarialTraining(pgd(), warmup_epochs=2)
    assert settings.radius_factor(0, 0, 4) == pytest.approx(0.125)
    assert settings.radius_factor(0, 3, 4) == pytest.approx(0.5)
    assert settings.radius_factor(1, 3, 4) == pytest.approx(1.0)
    assert settings.radius_factor(5, 0, 4) == 1.0
    assert settings.attack_at(0.5).budget.eps == pytest.approx(EPS / 2)
    assert AdversarialTraining(pgd()).radius_factor(0, 0, 4) == 1.0


def test_warm_up_shrinks_the_ball_of_the_first_batches() -> None:
    data = batch()
    lit = module(warmup=4)
    lit.model.train()
    out = lit.adversarial_batch(data, 0)  # factor 1/4 of the radius (one batch per epoch without a trainer)
    assert (out - data["image"]).abs().max() <= EPS / 4 + 1e-6


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="share"):
        AdversarialTraining(pgd(), share=1.5)
    with pytest.raises(ConfigError, match="losses"):
        AdversarialTraining(Attack(name="x", rule={"name": "pgd"}, budget={"eps": EPS}))
    with pytest.raises(ConfigError, match="module.adversarial"):
        SegmentationModule(ModeRecorder(), optimizer=torch.optim.Adam, adversarial={"attack": "pgd"})


def test_checkpoint_hyperparameters_describe_the_training() -> None:
    lit = module(share=0.5)
    described = lit.hparams["adversarial"]
    assert described["share"] == 0.5
    assert described["attack"]["eps"] == pytest.approx(EPS)
    assert described["attack"]["steps"] == 3 and described["attack"]["losses"] == ["bce"]
