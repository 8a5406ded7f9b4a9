"""Each image's worst case under an ensemble, and the checks' verdicts (src/medis/robustness)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medis.attacks.composition import Attack
from medis.attacks.engine import EngineOptions
from medis.attacks.ensemble import Ensemble, run_ensemble, worst_score
from medis.metrics.segmentation import dice_per_image
from medis.models.frontend import Victim, predict_mask
from medis.robustness.checks import CheckSettings, run_checks
from medis.robustness.worst_case import WorstCases, at_radius, with_steps, worst_cases


def victim() -> Victim:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))
    with torch.no_grad():  # a model that segments bright pixels: clean predictions mostly right
        net[0].weight.zero_()
        net[0].weight[:, :, 1, 1] = 1.0
        net[0].bias.fill_(-1.58)  # channel sum 1.65 inside, 1.35 outside
        net[2].weight.zero_()
        net[2].weight[:, :, 1, 1] = 2.0
        net[2].bias.fill_(-0.5)
    return Victim(net, size=32, mean=(0, 0, 0), std=(1, 1, 1), fusion="last").freeze()


def data(n: int = 3):
    generator = torch.Generator().manual_seed(1)
    masks = torch.zeros(n, 1, 32, 32)
    masks[:, :, 8:24, 10:22] = 1
    images = (0.45 + 0.1 * masks.expand(n, 3, 32, 32) + 0.01 * torch.rand(n, 3, 32, 32, generator=generator)).clamp(0, 1)
    return list(images.unbind(0)), list(masks.unbind(0)), [f"i{k}" for k in range(n)]


def cascade(eps: float = 8 / 255, steps: int = 5) -> Ensemble:
    members = (Attack(name="a", rule={"name": "pgd", "step_size": 1 / 255}, losses=("bce",),
                      budget={"steps": steps, "eps": eps, "random_start": True}),
               Attack(name="b", rule={"name": "pgd", "step_size": 1 / 255}, losses=("bce", "dice"),
                      budget={"steps": steps, "eps": eps}))
    return Ensemble(members, cascade=True, floor=0.005, warm_start=True)


def test_keep_best_gives_one_worst_case_per_image() -> None:
    images, masks, ids = data()
    result = run_ensemble(victim(), images, masks, cascade(), ids=ids, options=EngineOptions(keep_best=True))
    assert sorted(image_id for image_id, _ in result.best) == sorted(ids)
    for (image_id, label), (score, image, _) in result.best.items():
        lowest = min(worst_score(r, False) for r in result.records if r.image_id == image_id)
        assert score == pytest.approx(lowest)
        assert label.split("/")[0] in ("a", "b")
    plain = run_ensemble(victim(), images, masks, cascade(), ids=ids)
    assert plain.best == {}


def test_worst_cases_are_the_lowest_record_and_its_image() -> None:
    images, masks, ids = data()
    model = victim()
    found = worst_cases(model, images, masks, ids, cascade())
    assert isinstance(found, WorstCases) and found.ids == ids
    for image_id, miou, dice in zip(ids, found.miou, found.dice):
        scores = [worst_score(r, False) for r in found.records if r.image_id == image_id]
        assert miou == pytest.approx(min(scores))
        assert 0.0 <= dice <= 1.0
    clean = [float(dice_per_image(predict_mask(model, x[None]), m[None] > 0.5)[0]) for x, m in zip(images, masks)]
    assert found.summary()["dice"] < sum(clean) / len(clean)  # the attack hurt the model
    assert all(p > 0 for p in found.passes)


def test_radius_and_steps_reach_every_member() -> None:
    changed = with_steps(at_radius(cascade(), 2 / 255), 2)
    assert [m.budget.eps for m in changed.members] == [pytest.approx(2 / 255)] * 2
    assert [m.budget.steps for m in changed.members] == [10, 10]


def test_every_check_reports_a_verdict_or_why_not() -> None:
    images, masks, ids = data(2)
    model = victim()
    attack = cascade(4 / 255, steps=3)
    reference = worst_cases(model, images, masks, ids, attack)
    settings = CheckSettings(eps=4 / 255, large_eps=None, seeds=(1,), gradient_images=1, large_eps_max=0.3)
    checks = {c.name: c for c in run_checks(model, images, masks, ids, attack, reference, settings)}
    assert set(checks) == {"more_steps", "transfer", "large_eps", "seeds", "gradients"}
    assert checks["transfer"].passed is None and "transfer_from" in checks["transfer"].detail
    # this toy model's ReLU is off outside the lesion: no input gradient there, and the check says so
    assert checks["gradients"].passed is False
    assert checks["gradients"].measured["zero_gradient_share"] > 0.5
    # and unbounded, the attack can erase the lesion but never paint the background it has no gradient
    # on: the mIoU stays near the background's half, and large_eps flags it too
    assert checks["large_eps"].passed is False
    assert checks["large_eps"].measured["eps"] == 1.0 and checks["large_eps"].measured["worst_miou"] > 0.3
    for check in checks.values():
        assert check.detail
    drop = checks["more_steps"].measured["drop"]
    assert checks["more_steps"].passed == (drop < settings.tolerance)
