"""The parts of the strongest protocol: PAdam (Adam state, AMSGrad, projection, random start), SEA's
progressive radius (stages, warm starts, what is recorded), the cosine loss, and the cascade (only
unbroken images go on; never worse than any member)."""

from __future__ import annotations

import math

import pytest
import torch

from medis.attacks import Attack, EngineOptions, run_attack
from medis.attacks.budget import Budget
from medis.attacks.engine.phases import advance
from medis.attacks.ensemble import Ensemble, run_ensemble
from medis.attacks.rules import StepInfo
from medis.attacks.rules.apgd import APGD
from medis.attacks.rules.padam import PAdam
from medis.errors import ConfigError
from medis.losses import build_loss
from medis.losses.divergence import cosine_loss

from .test_engine import SIZE, staircase, toy_victim

EPS = 8 / 255


def info(position: int, total: int = 10, score: float = 0.5) -> StepInfo:
    return StepInfo(loss=torch.zeros(2), score=torch.full((2,), score), position=position, total=total)


# ----------------------------------------------------------------------------- PAdam


def test_padam_is_pytorch_adam_with_amsgrad_on_the_perturbation_then_projected() -> None:
    """Ten steps of the rule equal torch.optim.Adam(amsgrad=True, maximize=True) on delta, clamped to
    the ball and the image range after each step, for a changing gradient."""
    x0 = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    rule, budget = PAdam(step_size=0.01), Budget(steps=10, eps=EPS)
    x, state = x0.clone(), rule.init(x0, budget)
    delta = torch.zeros_like(x0, requires_grad=True)
    adam = torch.optim.Adam([delta], lr=0.01, amsgrad=True, maximize=True)
    for t in range(10):
        grad = torch.sin((t + 1) * (x0 + 3 * (x - x0))) * (0.5 ** t)  # shrinking: AMSGrad's max matters
        x, state = advance(rule, x, grad, x0, torch.ones(2), state, info(t), budget)
        delta.grad = grad.clone()
        adam.step()
        with torch.no_grad():
            delta.copy_((x0 + delta.clamp(-EPS, EPS)).clamp(0, 1) - x0)
        torch.testing.assert_close(x, x0 + delta.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(state["v_max"], adam.state[delta]["max_exp_avg_sq"])
    assert bool((state["v_max"] >= state["v"]).all()) and bool((state["v_max"] > state["v"]).any())
    assert state["t"].tolist() == [10.0, 10.0]


def test_padam_descends_toward_a_target_and_stays_in_the_ball() -> None:
    x0 = torch.full((1, 1, 4, 4), 0.5)
    rule, budget = PAdam(), Budget(steps=5, eps=EPS)
    x, state = x0.clone(), rule.init(x0, budget)
    for t in range(5):
        x, state = advance(rule, x, torch.ones_like(x), x0, torch.tensor([-1.0]), state, info(t), budget)
    assert bool((x < x0).all())  # direction −1: against the gradient
    assert float((x - x0).abs().max()) <= EPS + 1e-7


def test_padam_random_start_is_uniform_in_the_ball() -> None:
    image, gt = staircase()
    attack = Attack(name="padam", rule=PAdam(), losses=("cosine",), budget=Budget(steps=1, eps=EPS, random_start=True))
    result = run_attack(toy_victim(), image, gt, attack, options=EngineOptions(keep_images=True))
    # the chosen image of a replica that did not succeed at its start is its last evaluated one: inside the ball
    assert float((result.adversarial[("0", "cosine")] - image[0]).abs().max()) <= EPS + 1e-6
    with pytest.raises(ConfigError, match="attack.rule.beta2 must be in"):
        PAdam(beta2=1.0)
    with pytest.raises(ConfigError, match="needs a budget"):
        Attack(rule=PAdam())


# ----------------------------------------------------------------------------- cosine loss


def test_cosine_loss_on_log_probabilities_has_a_gradient_where_logits_would_not() -> None:
    z = torch.tensor([[[[4.0, -4.0, 0.0, 30.0]]]], requires_grad=True)
    mask = torch.tensor([[[[1.0, 1.0, 0.0, 1.0]]]])
    loss = cosine_loss(z, mask)
    (grad,) = torch.autograd.grad(loss.sum(), z)
    assert 1.0 <= float(loss) <= 2.0
    assert bool((grad[..., :3] != 0).all())  # right, wrong and undecided pixels all move
    assert float(grad[..., 0]) < 0 and float(grad[..., 1]) < 0  # ascending lowers a foreground logit
    right, wrong = (float(cosine_loss(torch.tensor([[[[v]]]]), torch.ones(1, 1, 1, 1))) for v in (8.0, -8.0))
    assert right == pytest.approx(1.0, abs=1e-3) and wrong == pytest.approx(2.0, abs=1e-3)


# ----------------------------------------------------------------------------- SEA's radius schedule


def sea_rule() -> APGD:
    return APGD(radii=(2.0, 1.5, 1.0), stages=(0.3, 0.3, 0.4))


def test_radius_stages_split_the_iterations_with_one_warm_start_move_between_two() -> None:
    rule = sea_rule()
    stages = [rule.stage(p, 302) for p in range(303)]
    assert [(s.start, s.length, s.radius) for s in dict.fromkeys(stages)] == [(0, 90, 2.0), (91, 90, 1.5),
                                                                               (182, 120, 1.0)]
    assert [s.admissible for s in (stages[0], stages[181], stages[182], stages[302])] == [False, False, True, True]
    with pytest.raises(ConfigError, match="end with 1"):
        APGD(radii=(2.0, 1.5), stages=(0.5, 0.5))
    with pytest.raises(ConfigError, match="need at least 5 steps"):
        Attack(rule=sea_rule(), budget=Budget(steps=4, eps=EPS))


def test_each_stage_restarts_apgd_at_its_radius_from_the_previous_best_iterate() -> None:
    """Stage 0 lives in the 2eps ball with step 4eps; its best iterate BY SCORE (not its last one) is
    projected onto the 1.5eps ball by the warm-start move; stage 1 starts with step 3eps."""
    rule, budget, total = sea_rule(), Budget(steps=12, eps=EPS), 12  # stages of 3, 3, 4 iterations
    assert [(s.start, s.length) for s in dict.fromkeys(rule.stage(p, total) for p in range(13))] == [
        (0, 3), (4, 3), (8, 4)]
    x0 = torch.full((2, 1, 4, 4), 0.5)
    state = rule.init(x0, budget)
    assert torch.allclose(state["eta"], torch.full((2,), 4 * EPS))
    x, seen = x0.clone(), {}
    scores = {0: 0.9, 1: 0.2, 2: 0.6, 3: 0.7}  # the best (lowest, untargeted) at position 1
    for position in range(4):
        seen[position] = x.clone()
        step_info = StepInfo(loss=torch.zeros(2), score=torch.full((2,), scores[position]), position=position,
                             total=total, tracked=torch.full((2,), float(position)))
        x, state = advance(rule, x, torch.ones_like(x), x0, torch.ones(2), state, step_info, budget)
        assert float((x - x0).abs().max()) <= 2 * EPS + 1e-7
    torch.testing.assert_close(x, Budget(eps=1.5 * EPS).project(seen[1], x0))  # the move
    step_info = StepInfo(loss=torch.zeros(2), score=torch.full((2,), 0.5), position=4, total=total,
                         tracked=torch.zeros(2))
    _, state = advance(rule, x, torch.ones_like(x), x0, torch.ones(2), state, step_info, budget)
    assert torch.allclose(state["eta"], torch.full((2,), 3 * EPS))


def test_the_engine_records_only_the_iterates_within_eps() -> None:
    image, gt = staircase()
    attack = Attack(name="sea", rule=sea_rule(), losses=("masked_bce",),
                    budget=Budget(steps=12, eps=EPS, random_start=True), criteria={"stop": "exact"})
    (record,) = run_attack(toy_victim(), image, gt, attack).records
    assert len(record.trajectory) == 5  # positions 8..12: the last stage's warm start and its 4 iterations
    assert record.steps is None or record.steps >= 8
    assert record.linf <= EPS + 1e-6


# ----------------------------------------------------------------------------- the cascade


def cascade(warm: bool = False, floor: float = 0.0) -> Ensemble:
    """Two sign-step members in a 16/255 ball, 2 then 4 steps: on the staircase (row r flips after
    r + 1 steps) the second gets 4 rows alone, 6 from the first's best image."""
    sign = Attack(name="short", losses=("bce",), budget=Budget(steps=2, eps=16 / 255))
    longer = Attack(name="long", losses=("bce", "dice"), budget=Budget(steps=4, eps=16 / 255))
    return Ensemble((sign, longer), cascade=True, floor=floor, warm_start=warm)


def test_the_cascade_passes_on_only_the_images_still_standing() -> None:
    """The staircase is broken (mIoU 0) after 16 steps: an image whose rows all flip after 2 steps
    leaves after the first member; the others go on."""
    steep, gt = staircase(flip_rows=False)  # every pixel flips after 3 steps of 1/255
    slow, _ = staircase()
    images = torch.cat([steep, slow, steep])
    references = torch.cat([gt, gt, gt])
    members = (Attack(name="first", losses=("bce",), budget=Budget(steps=4, eps=EPS)),
               Attack(name="second", losses=("bce", "dice"), budget=Budget(steps=4, eps=EPS)))
    result = run_ensemble(toy_victim(), images, references, Ensemble(members, cascade=True), ids=["a", "b", "c"])
    first = {r.image_id for r in result.records if r.attack == "first"}
    second = {r.image_id for r in result.records if r.attack == "second"}
    assert first == {"a", "b", "c"} and second == {"b"}
    broken = [r for r in result.records if r.attack == "first" and r.image_id in "ac"]
    assert all(min(r.trajectory) == 0.0 and r.steps == 3 for r in broken)
    parallel = run_ensemble(toy_victim(), images, references, Ensemble(members), ids=["a", "b", "c"])
    assert {r.image_id for r in parallel.records if r.attack == "second"} == {"a", "b", "c"}
    spent = lambda res: sum(r.forwards + r.backwards for r in res.records)  # noqa: E731
    assert spent(result) < spent(parallel)


def test_an_image_stops_all_its_losses_once_one_breaks_it() -> None:
    steep, gt = staircase(flip_rows=False)
    member = Attack(name="m", losses=("bce", "dice"), budget=Budget(steps=8, eps=EPS))
    records = run_ensemble(toy_victim(), steep, gt, Ensemble((member,), cascade=True)).records
    assert {len(r.trajectory) for r in records} == {4}  # both stop at record 3, where one broke it


def lowest(records, attack: str | None = None) -> float:
    return min(min(v for v in r.trajectory if not math.isnan(v)) for r in records if attack in (None, r.attack))


@pytest.mark.parametrize("warm", [False, True])
def test_the_cascade_is_never_worse_than_any_member_on_an_image(warm: bool) -> None:
    """Per image, the cascade's result (the best over its records) is at least as good as what each
    member finds alone; a warm-started member starts at the best image found so far."""
    image, gt = staircase()
    result = run_ensemble(toy_victim(), image, gt, cascade(warm=warm), ids=["x"])
    alone = run_ensemble(toy_victim(), image, gt, Ensemble(cascade().members), ids=["x"])  # every member, cold
    for member in ("short", "long"):
        assert lowest(result.records) <= lowest(alone.records, member)
    if warm:
        second = [r for r in result.records if r.attack == "long"]
        assert all(r.trajectory[0] == pytest.approx(lowest(result.records, "short")) for r in second)
        assert all(r.steps is None or r.steps >= 2 for r in second)


def test_warm_starts_make_the_later_member_stronger_than_alone() -> None:
    image, gt = staircase()
    alone = run_ensemble(toy_victim(), image, gt, Ensemble(cascade().members[1:]), ids=["x"])
    warm = run_ensemble(toy_victim(), image, gt, cascade(warm=True), ids=["x"])
    low = lambda res: min(min(r.trajectory) for r in res.records)  # noqa: E731
    assert low(alone) == pytest.approx((16 - 4) / (16 + 4)) and low(warm) == pytest.approx((16 - 6) / (16 + 6))
    second = [r for r in warm.records if r.attack == "long"]
    assert all(r.steps == 2 + 4 for r in second if r.success)  # counted from the clean image


def test_floor_and_members_are_checked() -> None:
    member = Attack(losses=("bce",))
    with pytest.raises(ConfigError, match="attack.floor must be < 1"):
        Ensemble((member,), cascade=True, floor=1.0)
    with pytest.raises(ConfigError, match="attack.warm_start must be true or false"):
        Ensemble((member,), warm_start="yes")
    assert Ensemble((member,), cascade=True, floor=0.1).broken_at(targeted=True) == pytest.approx(0.9)
    assert build_loss("cosine") is not None and SIZE == 16
