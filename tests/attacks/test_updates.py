"""Update rules (medis.attacks.rules), projections and random starts (medis.attacks.budget,
medis.attacks.projection): sign (I-FGSM), pgd, mifgsm, l2, and every rule's per-replica independence."""

from __future__ import annotations

import pytest
import torch

from medis.attacks.budget import Budget
from medis.attacks.engine.phases import advance
from medis.attacks.rules import RULES, StepInfo, UpdateRule
from medis.errors import ConfigError

ALPHA = 1.0 / 255.0
INFO = StepInfo(loss=torch.zeros(1), score=torch.zeros(1), position=1, total=10)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed))


def linf(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).abs().amax(1)


def l2(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1)


def parts(rule: str = "sign", eps: float | None = None, random_start: bool = False,
          **params) -> tuple[UpdateRule, Budget]:
    """A rule and its budget (an L2 ball for the l2 rule, as its attack configs pair them)."""
    budget = Budget(eps=eps, random_start=random_start, norm="l2" if rule == "l2" else "linf")
    made = RULES[rule](**params)
    made.check(budget)
    return made, budget


def step(x, grad, x0, direction, cfg, momentum=None):
    """One update of the rule of ``cfg`` and the engine's projection; returns (images, momentum buffer or None)."""
    rule, budget = cfg
    state = {"momentum": momentum} if momentum is not None else rule.init(x0, budget)
    moved, state = advance(rule, x, grad, x0, direction, state, INFO, budget)
    return moved, state.get("momentum")


def random_start(x0, cfg, generator):
    return cfg[1].start(x0, generator)


def project(x, x0, cfg):
    return cfg[1].project(x, x0)


# --------------------------------------------------------------------------------------------------
# Configuration


def test_valid_configs():
    assert {"sign", "pgd"} <= set(RULES) and all(cls.name == name for name, cls in RULES.items())
    rule, budget = parts()
    assert rule.name == "sign" and rule.alpha(budget) == pytest.approx(1 / 255) and budget.eps is None
    parts("pgd", eps=8 / 255, random_start=True)
    parts("l2", eps=0.5)
    parts("mifgsm", momentum=0.9)
    parts("sign", eps=0.0)  # a zero budget is allowed


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"rule": "fgsm"}, "attack.rule"),
        ({"rule": "SIGN"}, "attack.rule"),
        ({"step_size": 0.0}, "attack.rule.step_size"),
        ({"step_size": -1 / 255}, "attack.rule.step_size"),
        ({"step_size": "abc"}, "attack.rule.step_size"),
        ({"eps": -0.01}, "attack.budget.eps"),
        ({"rule": "pgd", "eps": -0.01}, "attack.budget.eps"),
        ({"rule": "pgd"}, "attack.budget.eps"),
        ({"rule": "pgd", "eps": None}, "attack.budget.eps"),
        ({"rule": "l2"}, "attack.budget.eps"),
        ({"rule": "apgd"}, "attack.budget.eps"),
        ({"step_size_eps": 0.25}, "attack.budget.eps"),
        ({"step_size_eps": 0.0, "eps": 0.1}, "attack.rule.step_size_eps"),
        ({"eps": "abc"}, "attack.budget.eps"),
    ],
)
def test_config_errors_name_the_key(kwargs, key):
    from medis.attacks import Attack

    kwargs = dict(kwargs)
    rule = kwargs.pop("rule", "sign")
    budget = {"eps": kwargs.pop("eps", None)}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        Attack(rule={"name": rule, **kwargs}, budget=budget)
    assert "\n" not in str(info.value)


def test_unknown_rule_message_names_the_value():
    from medis.attacks import Attack

    with pytest.raises(ConfigError, match="'fgsm'"):
        Attack(rule="fgsm")


def test_budget_values_are_checked():
    for bad, key in (({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"), ({"norm": "l1"}, "norm"),
                     ({"random_start": "yes"}, "random_start")):
        with pytest.raises(ConfigError, match=rf"attack\.budget\.{key}"):
            Budget(**bad)


# --------------------------------------------------------------------------------------------------
# sign (I-FGSM, MedIS's rule)


def _grad_with_zeros(shape, seed=0) -> torch.Tensor:
    g = randn(*shape, seed=seed)
    g[g.abs() < 0.3] = 0.0  # about a quarter of the pixels carry no gradient
    return g


def test_sign_moves_each_pixel_by_exactly_alpha():
    cfg = parts("sign", step_size=ALPHA)
    x0 = torch.full((2, 3, 8, 8), 0.5)
    g1 = _grad_with_zeros((1, 3, 8, 8))
    grad = torch.cat([g1, g1])  # same gradient, opposite directions
    direction = torch.tensor([1.0, -1.0])
    new, mom = step(x0.clone(), grad, x0, direction, cfg)
    assert mom is None
    moved = new - x0
    zero = grad == 0
    assert zero.any() and (~zero).any()
    # |move| is exactly alpha where the gradient is nonzero, 0 where it is zero
    torch.testing.assert_close(moved.abs()[~zero], torch.full_like(moved[~zero], ALPHA), atol=1e-7, rtol=0)
    assert (moved[zero] == 0).all()
    # replica 0 (untargeted, +1) ascends: sign(g); replica 1 (targeted, -1) descends: -sign(g)
    torch.testing.assert_close(moved[0], ALPHA * torch.sign(g1[0]), atol=1e-7, rtol=0)
    torch.testing.assert_close(moved[1], -ALPHA * torch.sign(g1[0]), atol=1e-7, rtol=0)


def test_sign_ignores_gradient_magnitude():
    cfg = parts("sign", step_size=0.02)
    x = torch.full((1, 1, 1, 4), 0.5)
    grad = torch.tensor([1e-8, -1e6, 3.0, -0.001]).view(1, 1, 1, 4)
    new, _ = step(x, grad, x, torch.tensor([1.0]), cfg)
    torch.testing.assert_close(new.flatten(), torch.tensor([0.52, 0.48, 0.52, 0.48]), atol=1e-7, rtol=0)


def test_sign_clamps_to_unit_interval():
    cfg = parts("sign", step_size=0.1)
    # 0.95 + 0.1 -> 1 (clamped); 0.05 - 0.1 -> 0 (clamped); 0.5 + 0.1 = 0.6; 1.0 - 0.1 = 0.9
    x = torch.tensor([0.95, 0.05, 0.5, 1.0]).view(1, 1, 2, 2)
    grad = torch.tensor([1.0, -2.0, 0.5, -1.0]).view(1, 1, 2, 2)
    new, _ = step(x, grad, x, torch.tensor([1.0]), cfg)
    torch.testing.assert_close(new.flatten(), torch.tensor([1.0, 0.0, 0.6, 0.9]), atol=1e-6, rtol=0)
    # targeted: 0.95 - 0.1 = 0.85; 0.05 + 0.1 = 0.15; 0.5 - 0.1 = 0.4; 1.0 + 0.1 -> 1
    new, _ = step(x, grad, x, torch.tensor([-1.0]), cfg)
    torch.testing.assert_close(new.flatten(), torch.tensor([0.85, 0.15, 0.4, 1.0]), atol=1e-6, rtol=0)


def test_sign_without_eps_does_not_project():
    # 20 steps of 0.01 in a constant direction from 0.5: every pixel drifts by exactly 0.2 (= t·α),
    # however far that is from x0 -- the budget is only implicit.
    cfg = parts("sign", step_size=0.01)
    x0 = torch.full((2, 1, 4, 4), 0.5)
    grad = torch.sign(randn(2, 1, 4, 4, seed=3))
    direction = torch.tensor([1.0, -1.0])
    x = x0.clone()
    for _ in range(20):
        x, _ = step(x, grad, x0, direction, cfg)
    expected = x0 + 0.2 * direction.view(-1, 1, 1, 1) * grad
    torch.testing.assert_close(x, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(linf(x - x0), torch.full((2,), 0.2), atol=1e-5, rtol=0)


def test_sign_with_eps_projects_to_linf_ball():
    cfg = parts("sign", step_size=0.01, eps=0.03)
    x0 = torch.full((1, 1, 4, 4), 0.5)
    grad = torch.sign(randn(1, 1, 4, 4, seed=4))
    x = x0.clone()
    for _ in range(10):
        x, _ = step(x, grad, x0, torch.tensor([1.0]), cfg)
    torch.testing.assert_close(x, x0 + 0.03 * grad, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------------
# pgd


def test_pgd_stays_in_linf_ball_and_unit_interval_over_many_steps():
    eps = 8 / 255
    cfg = parts("pgd", step_size=2 / 255, eps=eps)
    x0 = torch.rand(3, 3, 10, 10, generator=gen(5))  # includes pixels near 0 and 1
    direction = torch.tensor([1.0, -1.0, 1.0])
    x = x0.clone()
    for i in range(40):
        x, _ = step(x, randn(3, 3, 10, 10, seed=100 + i), x0, direction, cfg)
        assert (linf(x - x0) <= eps + 1e-6).all()
        assert x.min() >= 0.0 and x.max() <= 1.0
    # the budget is binding somewhere (so the bound above could have failed without projection)
    assert (linf(x - x0) > eps - 1e-6).all()


def test_pgd_projection_after_constant_push():
    # 10 steps of 0.02 along +sign(g) from the interior, eps 0.05: every pixel ends at exactly x0 ± 0.05
    cfg = parts("pgd", step_size=0.02, eps=0.05)
    x0 = 0.25 + 0.5 * torch.rand(2, 1, 6, 6, generator=gen(6))  # in [0.25, 0.75]
    grad = randn(2, 1, 6, 6, seed=7)
    x = x0.clone()
    for _ in range(10):
        x, _ = step(x, grad, x0, torch.tensor([1.0, -1.0]), cfg)
    expected = x0 + 0.05 * torch.tensor([1.0, -1.0]).view(-1, 1, 1, 1) * torch.sign(grad)
    torch.testing.assert_close(x, expected, atol=1e-6, rtol=0)


def test_pgd_random_start():
    eps = 8 / 255
    cfg = parts("pgd", step_size=2 / 255, eps=eps, random_start=True)
    x0 = torch.rand(4, 3, 16, 16, generator=gen(8))
    x0[0] = 0.0  # an all-black image and an all-white one: the start must still be in [0, 1]
    x0[1] = 1.0
    a = random_start(x0, cfg, gen(42))
    b = random_start(x0, cfg, gen(42))
    c = random_start(x0, cfg, gen(43))
    assert a.shape == x0.shape
    torch.testing.assert_close(a, b, atol=0, rtol=0)  # seeded
    assert not torch.allclose(a, c)  # another seed, another start
    assert (linf(a - x0) <= eps + 1e-6).all()
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert (linf(a - x0) > 0).all()  # differs from x0 in every replica
    # uniform in the ball: in the interior replicas the offsets spread over (almost) all of [-eps, eps]
    delta = (a - x0)[2:]
    inner = (x0[2:] > eps) & (x0[2:] < 1 - eps)
    assert delta[inner].max() > 0.9 * eps and delta[inner].min() < -0.9 * eps
    assert abs(delta[inner].mean().item()) < 0.1 * eps


def test_random_start_off_returns_a_copy_of_x0():
    x0 = torch.rand(2, 1, 4, 4, generator=gen(9))
    for cfg in (parts("pgd", eps=0.1), parts("sign"),
                parts("pgd", eps=0.0, random_start=True)):
        start = random_start(x0, cfg, gen(0))
        torch.testing.assert_close(start, x0, atol=0, rtol=0)
        assert start.data_ptr() != x0.data_ptr()


# --------------------------------------------------------------------------------------------------
# mifgsm


def test_mifgsm_momentum_buffer_and_step():
    mu = 0.9
    cfg = parts("mifgsm", step_size=0.01, momentum=mu)
    x = 0.2 + 0.6 * torch.rand(3, 2, 5, 5, generator=gen(10))
    m0 = randn(3, 2, 5, 5, seed=11) * 0.05
    # very different gradient scales per replica: the L1 normalisation is per replica
    grad = randn(3, 2, 5, 5, seed=12) * torch.tensor([1e-4, 1.0, 1e3]).view(-1, 1, 1, 1)
    direction = torch.tensor([1.0, -1.0, 1.0])
    new, m1 = step(x, grad, x, direction, cfg, momentum=m0)
    for r in range(3):
        l1 = sum(abs(v) for v in grad[r].flatten().tolist())  # ‖g_r‖₁, summed by hand
        expected_m = mu * m0[r] + grad[r] / l1
        torch.testing.assert_close(m1[r], expected_m, atol=1e-6, rtol=1e-5)
        expected_x = (x[r] + 0.01 * torch.sign(direction[r] * expected_m)).clamp(0, 1)
        torch.testing.assert_close(new[r], expected_x, atol=1e-6, rtol=0)
    # the buffer accumulates the raw normalised gradient, independently of the direction
    assert m1[1].flatten().dot(grad[1].flatten()) > 0


def test_mifgsm_step_follows_momentum_not_gradient():
    # m0 = 2 everywhere, g = -1 at one pixel (‖g‖₁ = 1), mu = 1:
    #   m1 = 2 + g/1 = [1, 2, 2, 2] > 0 -> every pixel steps +α although that pixel's gradient is negative
    cfg = parts("mifgsm", step_size=0.05, momentum=1.0)
    x = torch.full((1, 1, 2, 2), 0.5)
    grad = torch.tensor([-1.0, 0.0, 0.0, 0.0]).view(1, 1, 2, 2)
    m0 = torch.full((1, 1, 2, 2), 2.0)
    new, m1 = step(x, grad, x, torch.tensor([1.0]), cfg, momentum=m0)
    torch.testing.assert_close(m1.flatten(), torch.tensor([1.0, 2.0, 2.0, 2.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(new.flatten(), torch.full((4,), 0.55), atol=1e-6, rtol=0)
    # targeted: -sign(m1) -> all pixels step -α
    new, _ = step(x, grad, x, torch.tensor([-1.0]), cfg, momentum=m0)
    torch.testing.assert_close(new.flatten(), torch.full((4,), 0.45), atol=1e-6, rtol=0)


def test_mifgsm_first_step_from_zero_buffer_is_a_sign_step():
    # m0 = 0: m1 = g/‖g‖₁; g = [3, -1, 0, 4] -> ‖g‖₁ = 8 -> m1 = [0.375, -0.125, 0, 0.5]
    cfg = parts("mifgsm", step_size=0.1, momentum=1.0)
    x = torch.full((1, 1, 2, 2), 0.5)
    grad = torch.tensor([3.0, -1.0, 0.0, 4.0]).view(1, 1, 2, 2)
    new, m1 = step(x, grad, x, torch.tensor([1.0]), cfg, momentum=torch.zeros_like(x))
    torch.testing.assert_close(m1.flatten(), torch.tensor([0.375, -0.125, 0.0, 0.5]), atol=1e-7, rtol=0)
    torch.testing.assert_close(new.flatten(), torch.tensor([0.6, 0.4, 0.5, 0.6]), atol=1e-6, rtol=0)


def test_mifgsm_accumulates_over_steps():
    # reference loop over 5 steps, straight from m ← μ·m + g/‖g‖₁, x ← clip(x + α·sign(d·m))
    mu, alpha = 0.5, 0.01
    cfg = parts("mifgsm", step_size=alpha, momentum=mu)
    x0 = 0.3 + 0.4 * torch.rand(2, 1, 4, 4, generator=gen(13))
    direction = torch.tensor([-1.0, 1.0])
    x, m = x0.clone(), torch.zeros_like(x0)
    xr, mr = x0.clone(), torch.zeros_like(x0)
    for i in range(5):
        g = randn(2, 1, 4, 4, seed=200 + i)
        x, m = step(x, g, x0, direction, cfg, momentum=m)
        for r in range(2):
            mr[r] = mu * mr[r] + g[r] / g[r].abs().sum()
            xr[r] = (xr[r] + alpha * torch.sign(direction[r] * mr[r])).clamp(0, 1)
    torch.testing.assert_close(m, mr, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(x, xr, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------------
# l2


def test_l2_step_has_length_step_size():
    alpha = 0.05
    cfg = parts("l2", step_size=alpha, eps=10.0)  # a budget far out of reach
    x0 = torch.full((3, 3, 6, 6), 0.5)  # interior: a step of L2 length 0.05 never reaches 0 or 1
    grad = randn(3, 3, 6, 6, seed=14) * torch.tensor([1e-3, 1.0, 50.0]).view(-1, 1, 1, 1)
    direction = torch.tensor([1.0, -1.0, 1.0])
    new, mom = step(x0.clone(), grad, x0, direction, cfg)
    assert mom is None
    moved = new - x0
    torch.testing.assert_close(l2(moved), torch.full((3,), alpha), atol=1e-6, rtol=0)
    for r in range(3):
        unit = grad[r] / grad[r].pow(2).sum().sqrt()
        torch.testing.assert_close(moved[r], alpha * direction[r] * unit, atol=1e-6, rtol=0)


def test_l2_zero_gradient_does_not_move():
    cfg = parts("l2", step_size=0.1, eps=1.0)
    x = torch.full((1, 1, 3, 3), 0.4)
    new, _ = step(x, torch.zeros_like(x), x, torch.tensor([1.0]), cfg)
    torch.testing.assert_close(new, x, atol=0, rtol=0)
    assert torch.isfinite(new).all()


def test_l2_projection_onto_the_ball():
    # one step of length 0.5 along g from the interior, eps 0.1: scaled back onto the sphere of radius
    # 0.1, keeping its direction: x0 + 0.1·d·g/‖g‖₂
    cfg = parts("l2", step_size=0.5, eps=0.1)
    x0 = torch.full((2, 1, 8, 8), 0.5)
    grad = randn(2, 1, 8, 8, seed=15)
    direction = torch.tensor([1.0, -1.0])
    new, _ = step(x0.clone(), grad, x0, direction, cfg)
    torch.testing.assert_close(l2(new - x0), torch.full((2,), 0.1), atol=1e-6, rtol=0)
    unit = grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    torch.testing.assert_close(new, x0 + 0.1 * direction.view(-1, 1, 1, 1) * unit, atol=1e-6, rtol=0)


def test_l2_project_leaves_points_inside_the_ball():
    cfg = parts("l2", step_size=0.1, eps=0.5)
    x0 = torch.full((1, 1, 2, 2), 0.5)
    x = x0 + torch.tensor([0.1, -0.2, 0.0, 0.2]).view(1, 1, 2, 2)  # ‖δ‖₂ = 0.3 < 0.5
    torch.testing.assert_close(project(x, x0, cfg), x, atol=1e-7, rtol=0)
    # outside: δ = [0.3, 0.4, 0, 0], ‖δ‖₂ = 0.5 > eps 0.25 -> δ/2 = [0.15, 0.2, 0, 0]
    cfg = parts("l2", step_size=0.1, eps=0.25)
    x = x0 + torch.tensor([0.3, 0.4, 0.0, 0.0]).view(1, 1, 2, 2)
    torch.testing.assert_close(project(x, x0, cfg).flatten(), torch.tensor([0.65, 0.7, 0.5, 0.5]),
                               atol=1e-6, rtol=0)


def test_l2_stays_in_ball_over_many_steps():
    eps = 0.3
    cfg = parts("l2", step_size=0.1, eps=eps)
    x0 = torch.rand(3, 3, 8, 8, generator=gen(16))
    x = x0.clone()
    direction = torch.tensor([1.0, 1.0, -1.0])
    for i in range(30):
        x, _ = step(x, randn(3, 3, 8, 8, seed=300 + i), x0, direction, cfg)
        assert (l2(x - x0) <= eps + 1e-5).all()
        assert x.min() >= 0.0 and x.max() <= 1.0


def test_l2_random_start_inside_the_ball():
    eps = 0.5
    cfg = parts("l2", step_size=0.1, eps=eps, random_start=True)
    x0 = torch.rand(6, 3, 8, 8, generator=gen(17))
    x0[0] = 0.0
    a = random_start(x0, cfg, gen(1))
    b = random_start(x0, cfg, gen(1))
    c = random_start(x0, cfg, gen(2))
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.allclose(a, c)
    assert (l2(a - x0) <= eps + 1e-6).all()
    assert (l2(a - x0) > 0).all()
    assert a.min() >= 0.0 and a.max() <= 1.0


# --------------------------------------------------------------------------------------------------
# Per-replica independence


SETTINGS = {
    "sign": dict(step_size=0.02),
    "pgd": dict(step_size=0.02, eps=0.03),
    "mifgsm": dict(step_size=0.02, momentum=0.8),
    "l2": dict(step_size=0.2, eps=0.3),
    "dag": dict(step_size=0.02),
    "asma": dict(tau=1e-3, beta=1e-2),
    "apgd": dict(eps=0.03, step_size_eps=2.0),
    "padam": dict(eps=0.03, step_size=0.01),
}
"""Settings some rules' tests below rely on; any other rule runs with its defaults inside eps = 0.03."""


def _cfg_for(rule: str) -> tuple[UpdateRule, Budget]:
    return parts(rule, **SETTINGS.get(rule, {"eps": 0.03}))


@pytest.mark.parametrize("rule", sorted(RULES))
def test_replica_update_does_not_depend_on_the_others(rule):
    cfg = _cfg_for(rule)
    n = 4
    x0 = torch.rand(n, 2, 6, 6, generator=gen(18))
    x = (x0 + 0.02 * randn(n, 2, 6, 6, seed=19)).clamp(0, 1)
    # wildly different gradient scales, one replica without gradient
    grad = randn(n, 2, 6, 6, seed=20) * torch.tensor([1e-6, 1.0, 1e4, 0.0]).view(-1, 1, 1, 1)
    direction = torch.tensor([1.0, -1.0, -1.0, 1.0])
    rule_obj, budget = cfg
    state = rule_obj.init(x0, budget)
    if rule == "mifgsm":
        state["momentum"] = randn(n, 2, 6, 6, seed=21) * 0.01
    info = StepInfo(loss=torch.tensor([0.3, 0.2, 0.9, 0.1]), score=torch.tensor([0.7, 0.1, 0.4, 0.9]), position=1,
                    total=10, tracked=torch.tensor([0.5, 0.6, 0.1, 0.2]))

    def rows(r: int) -> tuple:
        sl = slice(r, r + 1)
        return {k: v[sl] for k, v in state.items()}, StepInfo(info.loss[sl], info.score[sl], 1, 10,
                                                               info.tracked[sl])

    new, new_state = advance(rule_obj, x, grad, x0, direction, state, info, budget)
    for r in range(n):
        sl = slice(r, r + 1)
        alone_state, alone_info = rows(r)
        alone, after = advance(rule_obj, x[sl], grad[sl], x0[sl], direction[sl], alone_state, alone_info, budget)
        torch.testing.assert_close(new[sl], alone, atol=1e-7, rtol=0)
        for key in after:
            torch.testing.assert_close(new_state[key][sl], after[key], atol=1e-7, rtol=0)
    # replacing another replica's gradient changes nothing for replica 1
    grad2 = grad.clone()
    grad2[0] = -grad2[0] * 1e6
    grad2[2] = 0.0
    new2, _ = advance(rule_obj, x, grad2, x0, direction, state, info, budget)
    torch.testing.assert_close(new2[1], new[1], atol=0, rtol=0)
    torch.testing.assert_close(new2[3], new[3], atol=0, rtol=0)
    # and the replica with gradient 0 does not move, except where momentum (mifgsm, apgd) or the L2
    # penalty (asma) drives it
    if rule in ("sign", "pgd", "l2", "dag"):
        torch.testing.assert_close(new[3], project(x[3:4], x0[3:4], cfg)[0], atol=1e-7, rtol=0)
    elif rule == "mifgsm":
        expected = (x[3] + 0.02 * torch.sign(0.8 * state["momentum"][3])).clamp(0, 1)
        torch.testing.assert_close(new[3], expected, atol=1e-7, rtol=0)
    elif rule == "asma":
        multiplier = 1e-2 * (1 - 0.9) + 1e-3
        torch.testing.assert_close(new[3], (x[3] - multiplier * 2 * (x[3] - x0[3])).clamp(0, 1), atol=1e-7, rtol=0)
