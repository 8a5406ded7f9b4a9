"""APGD is APGD: 300 iterations of the engine's rule equal, iterate for iterate, a plain loop written
from Croce & Hein's equations with the choices of the authors' public code (fra31/auto-attack and
SEA's apgd_train); and a replica's trajectory does not depend on its neighbours (contiguous or
non-contiguous blocks of rows, a neighbour set aside), which a momentum memory held as a view of the
engine's state broke."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medis.attacks import Attack, EngineOptions, run_attack
from medis.attacks.rules.apgd import APGD
from medis.models.frontend import Victim

EPS = 8 / 255
SIDE = 12


class Net(nn.Module):
    """A small float64 conv net: a non-trivial input gradient."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Tanh(), nn.Conv2d(6, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 6.0 * self.body(x)


def victim() -> Victim:
    return Victim(Net().double(), SIDE, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), fusion="clean").double().freeze()


class Spy:
    """Records the (n, 3, H, W) inputs of every call of the victim."""

    def __init__(self, wrapped: Victim) -> None:
        self.wrapped, self.model, self.calls = wrapped, wrapped.model, []

    def __call__(self, x: torch.Tensor, *size):
        self.calls.append(x.detach().clone())
        return self.wrapped(x, *size)


def case(n: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """n images and, as ground truths, the victim's own predictions (nothing is set aside)."""
    x = torch.rand(n, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        return x, (victim()(x).prob > 0.5).double()


def project(x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    return torch.min(torch.max(x, x0 - EPS), x0 + EPS).clamp(0.0, 1.0)


def reference_apgd(x0: torch.Tensor, mask: torch.Tensor, n_iter: int) -> tuple[list[torch.Tensor], list[str]]:
    """APGD on the mean cross-entropy from x0 (no random start), as written from the paper's update
    and the public code's bookkeeping; returns every iterate x0 … x_n and the events (halvings)."""
    net = victim()

    def f_and_grad(x: torch.Tensor) -> tuple[float, torch.Tensor]:
        x = x.clone().requires_grad_(True)
        z = net(x).logit
        loss = F.binary_cross_entropy_with_logits(z, mask)
        (grad,) = torch.autograd.grad(loss, x)
        return float(loss.detach()), grad

    step = 2 * EPS
    gap, smallest, shrink = max(int(0.22 * n_iter), 1), max(int(0.06 * n_iter), 1), max(int(0.03 * n_iter), 1)
    x, x_old = x0.clone(), x0.clone()
    f, g = f_and_grad(x)
    x_best, g_best, f_best = x.clone(), g.clone(), f
    f_best_last, reduced_last = f_best, True
    history = [0.0] * n_iter  # the code's zero-initialised loss history
    iterates, events, since = [x.clone()], [], 0
    for i in range(n_iter):
        momentum = x - x_old
        x_old = x.clone()
        a = 0.75 if i > 0 else 1.0
        z = project(x + step * torch.sign(g), x0)
        x = project(x + a * (z - x) + (1 - a) * momentum, x0)
        iterates.append(x.clone())
        f, g = f_and_grad(x)
        history[i] = f
        if f > f_best:
            x_best, g_best, f_best = x.clone(), g.clone(), f
        since += 1
        if since == gap:
            rises = sum(history[i - c] > history[i - c - 1] for c in range(gap))  # index -1 wraps, as in the code
            reduce = rises <= 0.75 * gap or (not reduced_last and f_best_last >= f_best)
            reduced_last, f_best_last = reduce, f_best
            if reduce:
                step /= 2
                x, g = x_best.clone(), g_best.clone()
                events.append(f"halved at {i + 1}")
            since, gap = 0, max(gap - shrink, smallest)
    return iterates, events


def test_300_iterations_follow_the_equations_iterate_for_iterate() -> None:
    x0, mask = case()
    expected, events = reference_apgd(x0, mask, 300)
    assert len(events) >= 2  # the schedule is exercised: halvings and restarts from the best point
    spy = Spy(victim())
    attack = Attack(name="apgd", rule=APGD(step_size_eps=2.0, track="ce"), losses=["bce"],
                    budget={"steps": 300, "eps": EPS}, criteria={"stop": "never"})
    run_attack(spy, x0, mask, attack)
    iterates = spy.calls[1:]  # the clean prediction first, then x0 … x300, each scored once
    assert len(iterates) == 301
    for k, (got, want) in enumerate(zip(iterates, expected)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12, msg=f"iterate {k}")


LOSSES = ["masked_bce", "js"]


def records(images: torch.Tensor, masks: torch.Tensor, ids: list[str], **options) -> dict[tuple[str, str], dict]:
    attack = Attack(name="apgd", rule=APGD(), losses=LOSSES, budget={"steps": 24, "eps": EPS, "random_start": True},
                    criteria={"stop": "exact"})
    result = run_attack(victim(), images, masks, attack, ids=ids, seed=1, options=EngineOptions(**options))
    return {(r.image_id, r.loss): dict(r) for r in result.records}


@pytest.mark.parametrize("options", [{"max_batch": 1}, {"max_batch": 3}, {"max_batch": None}],
                         ids=["one row at a time", "blocks across images", "all rows"])
def test_a_replica_does_not_depend_on_its_neighbours(options: dict) -> None:
    images, masks = case(3)
    masks[1] = 1.0 - masks[1]  # image 1's clean prediction already fails: set aside, its rows leave the batch
    together = records(images, masks, ["a", "b", "c"], **options)
    assert together[("b", "js")]["set_aside"] and not together[("a", "js")]["set_aside"]
    for image in ("a", "c"):  # the others' rows are non-contiguous once b's have left
        alone = records(images[[["a", "b", "c"].index(image)]], masks[[["a", "b", "c"].index(image)]], [image])
        for loss in LOSSES:
            mine = together[(image, loss)]
            assert mine["trajectory"] == pytest.approx(alone[(image, loss)]["trajectory"], abs=1e-12)
            assert (mine["linf"], mine["l2"]) == pytest.approx((alone[(image, loss)]["linf"], alone[(image, loss)]["l2"]),
                                                              abs=1e-12)
