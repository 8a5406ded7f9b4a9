"""The rules' gradient hooks: NI-FGSM takes its gradient at the Nesterov look-ahead point (Lin et
al., ICLR 2020); EOT averages the gradients of random transforms of the input (Athalye et al., ICML
2018) around any rule, is the plain rule for one identity draw, and draws per replica."""

from __future__ import annotations

import pytest
import torch

from medis.attacks import Attack, EngineOptions, run_attack
from medis.attacks.rules.base import Gradient
from medis.attacks.rules.eot import EOT, draw_seed
from medis.attacks.rules.mifgsm import MIFGSM
from medis.attacks.rules.nifgsm import NIFGSM
from medis.attacks.rules.pgd import PGD
from medis.errors import ConfigError
from medis.models.frontend import Victim
from medis.models.pranet import pranet_lite

from .test_engine import staircase, toy_victim

ALPHA = 1 / 255


class Spy:
    """A victim that records every input it is called on, and whether a gradient is taken there."""

    def __init__(self, victim: Victim) -> None:
        self.victim, self.model, self.calls = victim, victim.model, []

    def __call__(self, x: torch.Tensor, *size):
        self.calls.append((x.detach().clone(), x.requires_grad))
        return self.victim(x, *size)


def lite_victim() -> Victim:
    torch.manual_seed(0)
    return Victim(pranet_lite(channel=8), 64, fusion="clean").double().freeze()


def images(n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """n random images (n, 3, 40, 48) and, as their ground truths, the victim's own predictions (no
    image is set aside)."""
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(n, 3, 40, 48, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        masks = (lite_victim()(x).prob > 0.5).double()
    return x, masks


def same_records(a: list, b: list, ignore: tuple[str, ...] = ()) -> None:
    assert len(a) == len(b)
    for left, right in zip(a, b):
        for key in left:
            if key in ignore or key == "attack":
                continue
            want = right[key]
            if isinstance(want, float):
                assert left[key] == pytest.approx(want, rel=1e-9, abs=1e-12), key
            elif isinstance(want, tuple):
                assert left[key] == pytest.approx(want, rel=1e-9, abs=1e-12), key
            else:
                assert left[key] == want, key


# ----------------------------------------------------------------------------- NI-FGSM


def test_ni_fgsm_takes_its_gradient_at_the_look_ahead_point() -> None:
    """After the first step, the gradient is taken at x + α·μ·g: a displacement from the scored
    iterate along the first step's direction whose mean size per pixel is α·μ (g = ∇/mean|∇|)."""
    spy = Spy(lite_victim())
    x, masks = images(1)
    momentum = 0.8
    attack = Attack(name="ni", rule=NIFGSM(momentum=momentum), budget={"steps": 3}, criteria={"stop": "never"})
    run_attack(spy, x, masks, attack, losses=["bce"])
    scored = [inputs for inputs, grad in spy.calls if not grad]
    ahead = [inputs for inputs, grad in spy.calls if grad]
    assert len(ahead) == 3 and len(scored) >= 4  # one gradient pass per update; the iterates scored apart
    torch.testing.assert_close(ahead[0], x)  # g = 0 at the start: the point is the iterate
    iterate = scored[-3]  # the clean pass, then x0, x1, x2, x3: x1 is the 3rd from the end
    look = ahead[1] - iterate
    first_step = iterate - x
    assert float(look.abs().mean()) == pytest.approx(ALPHA * momentum, rel=1e-6)
    moved = first_step.abs() > 0
    assert bool((torch.sign(look[moved]) == torch.sign(first_step[moved])).all())


def test_ni_fgsm_without_momentum_is_i_fgsm_with_a_second_pass() -> None:
    x, masks = images()
    victim = lite_victim()
    plain = run_attack(victim, x, masks, Attack(budget={"steps": 4}), losses=["bce", "dice"]).records
    ni = run_attack(victim, x, masks, Attack(rule=NIFGSM(momentum=0.0), budget={"steps": 4}),
                    losses=["bce", "dice"]).records
    same_records(ni, plain, ignore=("forwards",))
    assert all(n["forwards"] > p["forwards"] for n, p in zip(ni, plain) if p["backwards"])


def test_ni_fgsm_differs_from_mi_fgsm_only_in_where_the_gradient_is_taken() -> None:
    """Both start with g = 0, so their first updates are equal; later ones are not."""
    x, masks = images()
    victim = lite_victim()

    def run(rule, steps: int) -> list:
        attack = Attack(rule=rule, budget={"steps": steps, "eps": 8 / 255}, criteria={"stop": "never", "success": 0.0})
        return run_attack(victim, x, masks, attack, losses=["bce"]).records

    for steps, equal in ((1, True), (6, False)):
        mi, ni = run(MIFGSM(momentum=1.0), steps), run(NIFGSM(momentum=1.0), steps)
        assert ([r["l2"] for r in mi] == pytest.approx([r["l2"] for r in ni])) == equal, steps


# ----------------------------------------------------------------------------- EOT


@pytest.mark.parametrize("mode", ["clean", "paper"])
def test_eot_of_one_identity_draw_is_the_plain_rule(mode: str) -> None:
    image, gt = staircase()
    rule = PGD(step_size=1 / 255)
    budget = {"steps": 10, "eps": 8 / 255}
    plain = run_attack(toy_victim(mode), image, gt, Attack(mode=mode, rule=rule, budget=budget),
                       losses=["bce", "dice"]).records
    eot = run_attack(toy_victim(mode), image, gt, Attack(mode=mode, rule=EOT(rule=rule, samples=1, transform="identity"),
                                                          budget=budget), losses=["bce", "dice"]).records
    same_records(eot, plain)  # passes included: the draw reuses the pass that scored the iterate


class _FakeAt:
    """``at(point, transform)``: the gradient of Σ w·t(point)² (a known function) through ``transform``."""

    def __init__(self, weights: torch.Tensor, seeds: list[int]) -> None:
        self.weights, self.seeds, self.calls = weights, seeds, 0

    def __call__(self, point: torch.Tensor, transform=None) -> Gradient:
        self.calls += 1
        inputs = point.detach().requires_grad_(True)
        seen = inputs if transform is None else transform(inputs)
        values = (self.weights * seen ** 2).flatten(1).sum(1)
        (grad,) = torch.autograd.grad(values.sum(), inputs)
        return Gradient(grad, values.detach(), values.detach() * 2)


def test_eot_gradient_is_the_mean_of_the_per_draw_gradients() -> None:
    """With Gaussian noise n_i of std σ, ∇ Σ w·(x + σ n_i)² = 2w(x + σ n_i): the mean over the draws,
    each drawn from the replica's own generator."""
    generator = torch.Generator().manual_seed(0)
    point = torch.rand(3, 3, 8, 8, generator=generator, dtype=torch.float64)
    weights = torch.rand(3, 3, 8, 8, generator=generator, dtype=torch.float64)
    seeds = [11, 22, 33]
    eot = EOT(rule="sign", samples=5, transform="noise", sigma=0.1)
    at = _FakeAt(weights, seeds)
    found = eot.gradient(point, at)
    assert at.calls == 5
    draws = []
    for i in range(5):
        noise = torch.stack([torch.randn(point.shape[1:], generator=torch.Generator().manual_seed(draw_seed(s, i)))
                             for s in seeds]).double()
        draws.append(2 * weights * (point + 0.1 * noise))
    torch.testing.assert_close(found.grad, torch.stack(draws).mean(0))
    assert found.tracked is not None and torch.allclose(found.tracked, 2 * found.loss)
    assert not torch.allclose(draws[0], draws[1])  # the draws differ


@pytest.mark.parametrize("transform", ["rescale", "noise", "jpeg"])
def test_eot_draws_do_not_depend_on_the_batch(transform: str) -> None:
    x, masks = images(2)
    victim = lite_victim()
    attack = Attack(rule=EOT(rule="pgd", samples=2, transform=transform), budget={"steps": 3, "eps": 8 / 255})
    both = run_attack(victim, x, masks, attack, losses=["bce"], ids=["a", "b"], seed=4).records
    alone = run_attack(victim, x[1:], masks[1:], attack, losses=["bce"], ids=["b"], seed=4).records
    same_records(alone, both[1:])
    other = run_attack(victim, x[1:], masks[1:], attack, losses=["bce"], ids=["b"], seed=5).records
    assert other[0]["l2"] != pytest.approx(alone[0]["l2"])  # another seed, other draws


def test_eot_passes_are_counted_per_draw_and_keep_the_wrapped_rule_schedule() -> None:
    x, masks = images(1)
    attack = Attack(rule=EOT(rule={"name": "apgd", "radii": [2.0, 1.0], "stages": [0.5, 0.5]}, samples=3,
                             transform="noise"), budget={"steps": 9, "eps": 4 / 255}, criteria={"stop": "never"})
    (record,) = run_attack(lite_victim(), x, masks, attack, losses=["bce"],
                           options=EngineOptions(max_batch=1)).records
    assert record["backwards"] == 9 * 3  # three draws per update
    assert record["forwards"] == 1 + 10 + 9 * 3  # the clean pass, every iterate scored, every draw
    assert record["linf"] <= 4 / 255 + 1e-9
    assert len(record["trajectory"]) == 5  # only the last stage's iterates are within eps


def test_eot_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"attack\.rule\.transform"):
        EOT(transform="blur")
    with pytest.raises(ConfigError, match=r"attack\.rule\.samples"):
        EOT(samples=0)
    with pytest.raises(ConfigError, match=r"attack\.rule\.scale"):
        EOT(scale=(1.2, 0.8))
    with pytest.raises(ConfigError, match=r"attack\.rule\.rule"):
        EOT(rule="adamw")
    with pytest.raises(ConfigError, match=r"attack\.budget\.eps"):
        Attack(rule=EOT(rule="apgd"), budget={"steps": 5})
