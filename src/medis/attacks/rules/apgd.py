"""APGD for segmentation replicas: step-size halving at checkpoints, momentum, restarts from the best.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020 (Auto-PGD), as SEA (Croce, Singh, Hein, "Towards Reliable
Evaluation and Fast Training of Robust Semantic Segmentation Models", ECCV 2024) runs it on
segmentation losses. With f the objective the attacker ascends (``d · loss``: the loss itself when
untargeted, its negative when targeted), step size η (initially ``step_size_eps · eps``, 2ε in the
paper) and the L∞ projection P onto the ε-ball and [0, 1]:

- first update: ``x1 = P(x0 + η·sign(∇f))``;
- later: ``z = P(x_k + η·sign(∇f(x_k)))``, ``x_{k+1} = P(x_k + α(z − x_k) + (1 − α)(x_k − x_{k−1}))``
  with α = 0.75 (``momentum``);
- checkpoints ``w_j = ⌈p_j·T⌉``, ``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)``
  (in whole iterations, as the authors' code counts them: :func:`checkpoints`); at each, η is halved
  and the iterate restarts from the best point found (with its gradient; the momentum memory is
  kept) when (1) f rose in at most ρ·(w_j − w_{j−1}) of the steps since the last checkpoint (ρ = 0.75),
  or (2) η was not halved at the last checkpoint and the best f has not improved since.

Where the paper and the authors' public code differ, this follows the code (fra31/auto-attack and
SEA's nmndeep/Robust-Segmentation, ``apgd_train``), each choice tested in
``tests/attacks/test_apgd_reference.py``:

- condition (1) is ``count <= ρ·k`` (the paper writes ``<``), counting strict rises ``f_i > f_{i−1}``;
- the first comparison of a stage is of f(x1) with 0, not with f(x0): the code compares with an entry
  of its zero-initialised loss history (an index that wraps around). With the cross-entropy (≥ 0) the
  first step counts as a rise;
- condition (2) does not apply at the first checkpoint (its "halved at the last checkpoint" flag
  starts true), and "not improved" includes ties;
- the best point starts at the start point x0 (its tracked f and gradient) and changes only on a
  strict improvement.

The best point and the step-size decisions follow a *tracked* objective, which need not be the
attacked loss: a masked loss falls as pixels are won and would make the least-attacked iterate look
best. ``track: sea`` (the default) tracks what SEA's public protocol tracks: the mean cross-entropy
for the masked cross-entropy, JS and SegPGD losses, and the unmasked normalised logit loss
(``normalized_logit``) for the masked normalised logit loss; ``track: ce`` the cross-entropy for every
loss; ``track: loss`` the attacked loss itself. The engine's records keep every iterate's score, so
the best iterate by the success metric is what the reports read.

SEA's progressive radius (``radii: [2, 1.5, 1]``, ``stages: [0.3, 0.3, 0.4]``): the N iterations are
split into stages of ⌊0.3N⌋, ⌊0.3N⌋ and the rest, run at 2ε, 1.5ε and ε, each a fresh APGD (step
2·its radius, new checkpoints, no momentum history, new best points). The random start is drawn in
the first stage's ball; each later stage starts from the previous stage's best iterate *by score*
(SEA: the lowest-accuracy one) projected onto its smaller ball. That warm start is one update of its
own (the move; the iterate is then evaluated like any other), so ``attack.budget.steps`` counts
N + (stages − 1) updates: 302 for SEA's 300 iterations. Only the last stage's iterates lie within
ε, and only they are recorded and judged (:class:`~medis.attacks.rules.base.Stage`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from medis.attacks.budget import Budget, check_number
from medis.attacks.projection import per_sample
from medis.attacks.rules.base import Stage, State, StepInfo, StepSize, UpdateRule
from medis.errors import ConfigError

TRACKED = ("sea", "ce", "loss")
"""``attack.rule.track``: as SEA's protocol, the plain cross-entropy, or the attacked loss (module docstring)."""
SEA_TRACKED = {"masked_logit": "normalized_logit"}
"""The losses SEA's protocol tracks by another loss than the cross-entropy."""
FIRST_CHECKPOINT = 0.22
MIN_GAP = 0.06
GAP_SHRINK = 0.03


def checkpoints(total: int) -> list[int]:
    """The iterations w_j (1 <= w_j <= total) at which APGD may halve its step. T=100 -> [22, 41, 57, ...].

    In whole iterations, as the authors' implementation counts them: the first gap is ⌊0.22·T⌋, each
    next gap shrinks by ⌊0.03·T⌋ down to ⌊0.06·T⌋ (each at least 1), which is the paper's p_j
    sequence without the rounding of ⌈p_j·T⌉ in floating point.
    """
    gap = max(int(FIRST_CHECKPOINT * total), 1)
    shrink, smallest = max(int(GAP_SHRINK * total), 1), max(int(MIN_GAP * total), 1)
    points, at = [], gap
    while at <= total:
        points.append(at)
        gap = max(gap - shrink, smallest)
        at += gap
    return points


def _checkpoint(state: State, x: torch.Tensor, grad: torch.Tensor, span: int,
                rho: float) -> tuple[torch.Tensor, torch.Tensor, State]:
    """Halve η and restart from the best point where conditions (1) or (2) of the module docstring hold."""
    oscillating = state["increases"] <= rho * span
    stalled = (state["halved_last"] == 0) & (state["f_best"] <= state["f_best_checkpoint"])
    halve = oscillating | stalled
    state = dict(state)
    state["eta"] = torch.where(halve, state["eta"] / 2, state["eta"])
    x = torch.where(per_sample(halve, x), state["x_best"], x)
    grad = torch.where(per_sample(halve, grad), state["g_best"], grad)
    state["halved_last"] = halve.to(state["eta"].dtype)
    state["f_best_checkpoint"] = state["f_best"].clone()
    state["increases"] = torch.zeros_like(state["increases"])
    return x, grad, state


@dataclass(frozen=True)
class APGD(StepSize, UpdateRule):
    """Auto-PGD (module docstring): initial step ``step_size_eps``·eps, ``momentum`` α, ``rho`` ρ,
    ``track``: the objective of the best point and the step schedule (``sea``, ``ce`` or ``loss``);
    ``radii`` (in units of eps, the last 1) and ``stages`` (their shares of the iterations): SEA's
    progressive radius, one stage at eps by default."""

    name: ClassVar[str] = "apgd"
    needs_budget: ClassVar[bool] = True
    step_size_eps: float | None = 2.0
    momentum: float = 0.75
    rho: float = 0.75
    track: str = "sea"
    radii: tuple[float, ...] = (1.0,)
    stages: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number(self.momentum, "attack.rule.momentum", low=0)
        check_number(self.rho, "attack.rule.rho", low=0)
        if self.track not in TRACKED:
            raise ConfigError(f"attack.rule.track={self.track!r} must be one of {', '.join(TRACKED)}")
        object.__setattr__(self, "radii", tuple(float(r) for r in self.radii))
        object.__setattr__(self, "stages", tuple(float(f) for f in self.stages))
        if not self.radii or len(self.radii) != len(self.stages):
            raise ConfigError(f"attack.rule.radii {list(self.radii)} and attack.rule.stages {list(self.stages)} "
                              "need one entry per stage")
        if self.radii[-1] != 1.0 or any(r < 1.0 for r in self.radii):
            raise ConfigError(f"attack.rule.radii must be >= 1 and end with 1 (the budget's eps), got {list(self.radii)}")
        if any(f <= 0 for f in self.stages) or abs(sum(self.stages) - 1.0) > 1e-6:
            raise ConfigError(f"attack.rule.stages must be positive shares summing to 1, got {list(self.stages)}")

    def check(self, budget: Budget) -> None:
        super().check(budget)
        need = 2 * len(self.radii) - 1
        if budget.steps < need:
            raise ConfigError(f"attack.budget.steps={budget.steps}: {len(self.radii)} radius stages need at least "
                              f"{need} steps (one iteration each, one warm-start move between two)")

    def tracked_loss(self, loss: str) -> str | None:
        """The loss tracked for the attacked loss ``loss`` (``track``; module docstring), ``None`` for itself."""
        if self.track == "loss":
            return None
        return SEA_TRACKED.get(loss, "bce") if self.track == "sea" else "bce"

    def stage(self, position: int, total: int) -> Stage:
        """The stage whose iterates include record ``position`` (module docstring)."""
        found = _stage_table(self.radii, self.stages, total)
        for stage in reversed(found):
            if position >= stage.start:
                return stage
        return found[0]

    def init(self, x0: torch.Tensor, budget: Budget) -> State:
        """η, previous and best iterates, best gradient and objective, counters, and the best
        iterate by score (for the next stage's warm start), per replica."""
        scalar = x0.new_zeros(x0.shape[0])
        state = _fresh(x0, scalar, self.alpha(budget.scaled(self.radii[0])))
        state["x_top"] = x0.clone()
        state["top"] = torch.full_like(scalar, -math.inf)
        return state

    def step(self, x: torch.Tensor, grad: torch.Tensor, x0: torch.Tensor, direction: torch.Tensor, state: State,
             info: StepInfo, budget: Budget) -> tuple[torch.Tensor, State]:
        """One APGD update (module docstring), or a stage's warm-start move; reads the tracked
        objective (``info.tracked``, else ``info.loss``, (R,)), the score ``info.score`` and
        ``info.position`` of ``info.total`` updates."""
        state = dict(state)
        stage = self.stage(info.position, info.total)
        k = info.position - stage.start  # the update's index within its stage
        if k == 0 and stage.index > 0:  # a fresh APGD for this stage
            scalar = state["eta"]
            state.update(_fresh(x, scalar, self.alpha(budget.scaled(stage.radius))))
            state["top"] = torch.full_like(scalar, -math.inf)
        top = -direction.to(info.score.dtype) * info.score  # the attacker's score: higher is better
        better_score = top.to(state["top"].dtype) >= state["top"]  # ties: the later iterate, as SEA
        state["x_top"] = torch.where(per_sample(better_score, x), x, state["x_top"])
        state["top"] = torch.where(better_score, top.to(state["top"].dtype), state["top"])
        if k == stage.length:  # the stage's last iterate: move to the next stage's warm start
            return state["x_top"], state  # the engine projects it onto the next stage's ball
        return self._iterate(x, grad, x0, direction, state, info, budget.scaled(stage.radius), k, stage.length)

    def _iterate(self, x: torch.Tensor, grad: torch.Tensor, x0: torch.Tensor, direction: torch.Tensor,
                 state: State, info: StepInfo, budget: Budget, k: int, length: int) -> tuple[torch.Tensor, State]:
        """APGD's update k of a stage of ``length`` iterations inside ``budget``."""
        tracked = info.loss if self.track == "loss" or info.tracked is None else info.tracked
        objective = (direction.to(tracked.dtype) * tracked).to(state["f_best"].dtype)
        previous = state["f_prev"] if k > 1 else torch.zeros_like(objective)  # the first step: against 0 (as SEA's code)
        state["increases"] = state["increases"] + (objective > previous).to(state["increases"].dtype) * (k > 0)
        better = objective > state["f_best"]
        state["x_best"] = torch.where(per_sample(better, x), x, state["x_best"])
        state["g_best"] = torch.where(per_sample(better, grad), grad, state["g_best"])
        state["f_best"] = torch.where(better, objective, state["f_best"])
        state["f_prev"] = objective
        if k == 0:
            state["f_best_checkpoint"] = state["f_best"].clone()
        marks = checkpoints(length)
        if k in marks:
            previous = max([0] + [w for w in marks if w < k])
            x, grad, state = _checkpoint(state, x, grad, k - previous, self.rho)
        eta = per_sample(state["eta"], x).to(x.dtype)
        d = per_sample(direction, x).to(grad.dtype)
        z = budget.project(x + eta * torch.sign(d * grad), x0)
        alpha = 1.0 if k == 0 else self.momentum
        moved = x + alpha * (z - x) + (1.0 - alpha) * (x - state["x_prev"])  # projected by the engine
        state["x_prev"] = x.clone()  # x may be a view of the engine's state, which the engine then overwrites
        return moved, state


def _fresh(x: torch.Tensor, scalar: torch.Tensor, eta: float) -> State:
    """The state of an APGD run starting at ``x`` with step ``eta``."""
    return {
        "eta": torch.full_like(scalar, eta),
        "x_prev": x.clone(),
        "x_best": x.clone(),
        "g_best": torch.zeros_like(x),
        "f_best": torch.full_like(scalar, -math.inf),
        "f_prev": torch.full_like(scalar, -math.inf),
        "f_best_checkpoint": torch.full_like(scalar, -math.inf),
        "increases": torch.zeros_like(scalar),
        "halved_last": torch.ones_like(scalar),  # condition (2) does not apply at the first checkpoint
    }


@functools.lru_cache(maxsize=64)
def _stage_table(radii: tuple[float, ...], shares: tuple[float, ...], total: int) -> tuple[Stage, ...]:
    """The stages of ``total`` updates: N = total − (stages − 1) iterations split by ``shares``
    (⌊share·N⌋ each, at least 1, the last stage the rest); stage i starts one update after stage
    i − 1's last iteration (the warm-start move)."""
    iterations = total - (len(radii) - 1)
    lengths = [max(int(share * iterations), 1) for share in shares[:-1]]
    lengths.append(max(iterations - sum(lengths), 1))
    table, start = [], 0
    for index, (radius, length) in enumerate(zip(radii, lengths)):
        table.append(Stage(index, start, length, radius))
        start += length + 1
    return tuple(table)
