"""The attacks beyond MedIS, each on its defining behaviour: SegPGD's weight schedule, CosPGD's
per-pixel scaling, APGD's checkpoints and step halving, ASMA's adaptive step, DAG's shrinking pixel
set; transfer evaluation and the ensemble's composition."""

from __future__ import annotations

import math

import pytest
import torch

from medis.attacks import Attack, Budget, Ensemble, run_attack
from medis.attacks.engine.phases import advance
from medis.attacks.ensemble import build_ensemble
from medis.attacks.rules import StepInfo
from medis.attacks.rules.apgd import APGD, checkpoints
from medis.attacks.rules.asma import ASMA
from medis.attacks.rules.dag import DAG
from medis.attacks.rules.pgd import PGD
from medis.attacks.rules.sign import SignStep
from medis.errors import ConfigError
from medis.losses import LossContext, build_loss
from medis.losses.logits import pixel_set
from medis.losses.pixel_weighted import cospgd_loss, segpgd_loss
from medis.models.frontend import Victim

from .test_engine import SIZE, Threshold, staircase, toy_victim


def _prob_and_mask(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    prob = torch.rand(2, 1, 6, 6, generator=gen, dtype=torch.float64) * 0.98 + 0.01
    mask = (torch.rand(2, 1, 6, 6, generator=gen) > 0.5).double()
    return prob, mask


def _bce_grad(prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """d BCE / dz per pixel at z = logit(P), by hand: P − M."""
    return prob - mask


# ----------------------------------------------------------------------------- SegPGD


def test_segpgd_weights_move_from_right_to_wrong_pixels() -> None:
    prob, mask = _prob_and_mask()
    right = (prob > 0.5) == (mask > 0.5)
    assert right.any() and (~right).any()
    n = prob[0].numel()
    for targeted in (False, True):
        todo = ~right if targeted else right  # the pixels still to be won get the early weight
        for t, total in ((0, 10), (4, 10), (10, 10)):
            z = torch.logit(prob).requires_grad_()
            segpgd_loss(z, mask, t, total, targeted).sum().backward()
            lam = t / (2 * total)
            weight = torch.where(todo, 1 - lam, lam)
            torch.testing.assert_close(z.grad, weight * _bce_grad(prob, mask) / n)


def test_segpgd_sees_the_step_and_the_total_through_the_engine() -> None:
    seen: list[tuple[int, int]] = []
    segpgd = build_loss("segpgd")

    def spy(out, reference, ctx: LossContext):
        seen.append((ctx.step, ctx.total_steps))
        return segpgd(out, reference, ctx)

    image, gt = staircase(flip_rows=False)  # every pixel needs 3 steps: no early stop before step 3
    attack = Attack(rule=PGD(step_size=1 / 255), budget={"steps": 5, "eps": 8 / 255}, criteria={"stop": 0.0})
    run_attack(toy_victim(), image, gt, attack, losses={"segpgd": spy})
    assert seen[:3] == [(0, 5), (1, 5), (2, 5)]
    assert [step for step, _ in seen] == list(range(len(seen)))


# ----------------------------------------------------------------------------- CosPGD


@pytest.mark.parametrize("targeted", [False, True])
def test_cospgd_scales_each_pixel_by_the_detached_cosine(targeted: bool) -> None:
    prob, mask = _prob_and_mask(1)
    z = torch.logit(prob).requires_grad_()
    cospgd_loss(z, mask, targeted).sum().backward()
    cos = (prob * mask + (1 - prob) * (1 - mask)) / torch.sqrt(prob ** 2 + (1 - prob) ** 2)  # |M| = 1
    weight = 1 - cos if targeted else cos
    torch.testing.assert_close(z.grad, weight * _bce_grad(prob, mask) / prob[0].numel())
    assert weight.std() > 0.05  # really per pixel, not one factor


# ----------------------------------------------------------------------------- APGD


def test_apgd_checkpoints_follow_the_paper() -> None:
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert checkpoints(300)[:3] == [66, 123, 171]  # p_j = 0.22, 0.41, 0.57


def _apgd_run(objective: list[float], total: int = 100):
    """APGD's state after feeding it ``objective`` (the loss at positions 0, 1, ...), one replica."""
    rule, budget = APGD(step_size_eps=2.0, track="loss"), Budget(eps=8 / 255)
    x0 = torch.full((1, 1, 4, 4), 0.5)
    grad = torch.ones_like(x0)
    state, x = rule.init(x0, budget), x0.clone()
    history = []
    for position, value in enumerate(objective):
        info = StepInfo(torch.tensor([value]), torch.tensor([0.5]), position, total)
        before = x.clone()
        x, state = advance(rule, x, grad * (-1) ** position, x0, torch.tensor([1.0]), state, info, budget)
        history.append((before, state["eta"].item(), state["x_best"].clone()))
    return history, budget


def test_apgd_halves_the_step_and_restarts_from_the_best_when_the_loss_stalls() -> None:
    falling = [1.0 - 0.01 * k for k in range(23)]  # never improves after position 0
    history, budget = _apgd_run(falling)
    etas = [eta for _, eta, _ in history]
    assert etas[:22] == [pytest.approx(2 * budget.eps)] * 22  # constant until the checkpoint w1 = 22
    assert etas[22] == pytest.approx(budget.eps)  # halved at w1
    assert torch.equal(history[22][2], torch.full((1, 1, 4, 4), 0.5))  # the best point is the start


def test_apgd_keeps_its_step_while_the_loss_keeps_rising() -> None:
    rising = [0.01 * k for k in range(42)]
    history, budget = _apgd_run(rising)
    assert [eta for _, eta, _ in history] == [pytest.approx(2 * budget.eps)] * 42


def test_apgd_follows_the_tracked_cross_entropy_not_the_masked_loss() -> None:
    """A masked loss falls as pixels are won while the attack progresses (its cross-entropy rises):
    tracking the loss would keep the first iterate as the best and halve the step at every
    checkpoint; SEA's tracked cross-entropy keeps the step and the latest point."""
    rule, budget = APGD(step_size_eps=2.0), Budget(eps=8 / 255)
    assert (rule.tracked_loss("masked_bce"), rule.tracked_loss("masked_logit")) == ("bce", "normalized_logit")  # SEA
    assert APGD(track="ce").tracked_loss("masked_logit") == "bce" and APGD(track="loss").tracked_loss("js") is None
    x0 = torch.full((1, 1, 4, 4), 0.5)
    for tracked, halves in (("ce", False), ("loss", True)):
        rule = APGD(step_size_eps=2.0, track=tracked)
        state, x = rule.init(x0, budget), x0.clone()
        for position in range(23):
            info = StepInfo(torch.tensor([1.0 - 0.01 * position]), torch.tensor([0.5]), position, 100,
                            tracked=torch.tensor([0.01 * position]))
            x, state = advance(rule, x, torch.ones_like(x0) * (-1) ** position, x0, torch.tensor([1.0]), state, info,
                                 budget)
        assert (state["eta"].item() < 2 * budget.eps) == halves, tracked
    with pytest.raises(ConfigError, match=r"attack\.rule\.track"):
        APGD(track="acc")


def test_apgd_stays_in_the_ball_and_succeeds_on_the_toy_victim() -> None:
    image, gt = staircase(flip_rows=False)
    eps = 4 / 255
    attack = Attack(name="apgd", rule=APGD(step_size_eps=2.0), budget={"eps": eps},
                    losses=["masked_bce", "js", "masked_logit"])
    result = run_attack(toy_victim(), image, gt, attack)
    assert all(r["linf"] <= eps + 1e-6 for r in result.records)
    assert all(r["success"] and r["attack"] == "apgd" for r in result.records)


# ----------------------------------------------------------------------------- ASMA


def test_asma_step_grows_with_the_overlap_with_the_target() -> None:
    rule, budget = ASMA(tau=1e-3, beta=1e-2, l2=0.0), Budget()
    x0 = torch.full((2, 1, 3, 3), 0.5)
    grad = torch.linspace(-1, 1, 9).view(1, 1, 3, 3).repeat(2, 1, 1, 1)
    iou = torch.tensor([0.2, 0.8])
    info = StepInfo(torch.zeros(2), iou, 1, 10)
    moved, _ = advance(rule, x0, grad, x0, torch.tensor([-1.0, -1.0]), {}, info, budget)
    for r in range(2):
        multiplier = 1e-2 * iou[r].item() + 1e-3
        torch.testing.assert_close(moved[r] - x0[r], -multiplier * grad[r])
    # the L2 penalty alone pulls the image back toward the clean one
    rule = ASMA(tau=0.1, beta=0.0, l2=1.0)
    x = x0 + 0.04
    back, _ = advance(rule, x, torch.zeros_like(x), x0, torch.tensor([-1.0, -1.0]), {}, info, budget)
    torch.testing.assert_close(back - x0, (x - x0) * (1 - 2 * 0.1))


def test_asma_reaches_a_target_on_the_toy_victim() -> None:
    image, gt = staircase(flip_rows=False)
    target = 1 - gt
    attack = Attack(rule=ASMA(tau=1e-3, beta=1e-2), budget={"steps": 30}, losses=["asma"])
    (record,) = run_attack(toy_victim(), image, target, attack, target="random").records
    assert record["success"] and record["trajectory"][-1] > record["trajectory"][0]


# ----------------------------------------------------------------------------- DAG


def test_dag_pixel_set_shrinks_until_empty_and_the_attack_stops() -> None:
    sizes: list[int] = []
    dag = build_loss("dag")

    def spy(out, reference, ctx: LossContext):
        sizes.append(int(pixel_set(out.logit, reference, ctx.targeted).sum()))
        return dag(out, reference, ctx)

    image, gt = staircase(flip_rows=True)  # row r flips after r + 1 steps of 1/255
    attack = Attack(rule=DAG(step_size=1 / 255), budget={"steps": 40}, criteria={"stop": "exact"})
    (record,) = run_attack(toy_victim(), image, gt, attack, losses={"dag": spy}).records
    assert sizes[0] == SIZE * SIZE
    assert all(later < earlier for earlier, later in zip(sizes, sizes[1:]))  # one row per step
    assert record["trajectory"][-1] == 0.0  # the set is empty: every pixel flipped
    assert len(record["trajectory"]) == SIZE + 1 < attack.budget.steps + 1  # stopped there, not at the limit


# ----------------------------------------------------------------------------- transfer


class Shifted(Threshold):
    """A second model: foreground iff red > 0.5 + ``shift``/255 (a different decision boundary)."""

    def __init__(self, shift: float) -> None:
        super().__init__()
        self.boundary = 0.5 + shift / 255

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (x[:, :1] - self.boundary)


@pytest.mark.parametrize("shift", [1.5, 5.1])
def test_transfer_judges_both_images_and_sets_aside_what_the_other_model_fails(shift: float) -> None:
    """The staircase's pixels sit 2.5/255 from 0.5 and all flip after 3 sign steps of 1/255. A model
    whose boundary lies 1.5/255 higher gets the clean image right and the adversarial one wrong: a
    transfer. One 5.1/255 higher already calls every clean pixel background: its verdict on the
    adversarial image says nothing about the attack, and is set aside."""
    image, gt = staircase(flip_rows=False)
    other = Victim(Shifted(shift), SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), fusion="clean")
    attack = Attack(budget={"steps": 6}, criteria={"stop": "exact"}, losses=["bce"])
    (record,) = run_attack(toy_victim(), image, gt, attack, transfer_to=other).records
    assert record["success"] and record["steps"] == 3 and record["worst_steps"] == 3
    assert record["transfer_metric"] == record["worst_transfer_metric"] == pytest.approx(0.25)  # all background
    if shift < 2.5:
        assert record["transfer_success"] is True and record["worst_transfer_success"] is True
    else:
        assert record["transfer_success"] is None and record["worst_transfer_success"] is None
    assert run_attack(toy_victim(), image, gt, attack).records[0]["transfer_metric"] is None


# ----------------------------------------------------------------------------- ensemble plan


def test_ensemble_members_qualify_losses_and_inherit_shared_settings() -> None:
    ensemble = build_ensemble({"medis": {"rule": SignStep(), "losses": ["bce"]},
                               "apgd": {"rule": APGD(step_size_eps=2.0), "losses": ["js", "masked_bce"],
                                        "budget": {"steps": 9}}},
                              budget={"eps": 8 / 255, "steps": 7}, criteria={"stop": "exact"})
    assert ensemble.labels == ["medis/bce", "apgd/js", "apgd/masked_bce"]
    medis, apgd = ensemble.members
    assert (medis.budget.steps, apgd.budget.steps) == (7, 9) and apgd.budget.eps == 8 / 255
    assert apgd.rule.alpha(apgd.budget) == pytest.approx(16 / 255) and apgd.name == "apgd"
    assert math.isclose(apgd.judged(True).stop_at, 1.0)
    assert ensemble.with_losses(["dice"]) == ensemble  # every member has its own losses
    bare = build_ensemble({"medis": {"rule": "sign"}}).with_losses(["dice"])
    assert bare.labels == ["medis/dice"] and isinstance(bare, Ensemble)
    with pytest.raises(ConfigError, match=r"attack 'apgd': unknown loss"):
        build_ensemble({"apgd": {"rule": "apgd", "losses": ["nope"], "budget": {"eps": 0.1}}})
    with pytest.raises(ConfigError, match=r"attack\.budget\.eps"):
        build_ensemble({"apgd": {"rule": "apgd", "losses": ["js"]}})
    with pytest.raises(ConfigError, match=r"attack\.criteria\.stop"):
        build_ensemble({"medis": {"rule": "sign"}}, criteria={"stop": "sometimes"})
    with pytest.raises(ConfigError, match=r"attack\.members\.x needs a rule"):
        build_ensemble({"x": {"losses": ["bce"]}})
