"""One step of the engine for a block of replica rows, phase by phase.

Every step of the loop (:mod:`medis.attacks.engine.run`) runs, for each block of active replicas
(``engine.max_batch`` at a time), five phases:

1. :func:`score_and_record`: the victim's prediction of the iterate x is scored against each
   replica's reference; its trajectory, success, chosen image (the first success, else the last
   admissible iterate), best iterate and stop rule are updated. An iterate outside the budget (a
   stage of a larger radius) is scored for the rule but neither recorded nor judged;
2. the gradient point, the rule's :meth:`~medis.attacks.rules.base.UpdateRule.gradient_point`
   (default: the iterate itself, whose forward pass then serves the gradient too);
3. :func:`gradient`, through the rule's :meth:`~medis.attacks.rules.base.UpdateRule.gradient`
   (default: one forward and backward pass of each replica's own surrogate loss; EOT averages
   several transformed ones);
4. the rule's :meth:`~medis.attacks.rules.base.UpdateRule.step`: the proposed images and state;
5. the projection of the proposal onto the budget, at the radius of the next iterate's stage
   (:func:`advance` runs phases 4 and 5), and :func:`commit`: the moving replicas take their new image and rule state, the others (stopped
   before, or stopping now) keep theirs.

Passes are counted where they run: a forward in phases 1 and 3 (when the gradient point is not the
iterate, or a transform is drawn), a backward in phase 3.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from medis.attacks.budget import Budget
from medis.attacks.composition import Attack
from medis.attacks.criteria import Criteria
from medis.attacks.engine.options import EngineOptions
from medis.attacks.engine.replicas import LossFn, Replicas, better, replica_losses
from medis.attacks.engine.results import AttackResult
from medis.attacks.projection import per_sample
from medis.attacks.rules.base import Gradient, Stage, State, StepInfo, Transform, UpdateRule
from medis.attacks.scoring import Scorer
from medis.attacks.targets import TargetKind
from medis.losses import LossContext
from medis.models.frontend import VictimOutput

__all__ = ["GradientAt", "Rows", "Run", "Step", "advance", "commit", "gradient", "row_seed", "score_and_record",
           "step_rows"]

VictimFn = Callable[..., VictimOutput]


@dataclass
class Run:
    """What every phase reads: one call of :func:`~medis.attacks.engine.run.run_attack`.

    Attributes:
        victim: the attacked victim; attack: the attack; target: the target kind.
        criteria: the stop and success rules; scorer: how predictions are scored.
        loss_fns: ``{label: loss}`` of the replicas, in loss order.
        max_batch: replicas per pass of the current same-size batch (``None``: all).
        options: how the engine runs; seed: the run's seed (random starts, random draws).
        tracked_fns: ``{label: loss}`` of the losses the rule tracks for each replica's loss
            (:meth:`~medis.attacks.rules.base.UpdateRule.tracked_loss`), or ``None``.
        result: what the run returns, filled as it goes (records, passes).
    """

    victim: VictimFn
    attack: Attack
    target: TargetKind
    criteria: Criteria
    scorer: Scorer
    loss_fns: dict[str, LossFn]
    max_batch: int | None
    options: EngineOptions
    seed: int = 0
    tracked_fns: dict[str, LossFn] | None = None
    result: AttackResult = field(default_factory=lambda: AttackResult(records=[]))


@dataclass(frozen=True)
class Step:
    """One position of the loop: the record ``position``, whether an ``update`` follows it, the
    ``stage`` of the rule's schedule the iterate belongs to, and the losses' clock (``context``)."""

    position: int
    update: bool
    stage: Stage
    context: LossContext

    @classmethod
    def of(cls, run: Run, position: int) -> "Step":
        """The step at record ``position`` of ``run``."""
        stage = run.attack.rule.stage(position, run.attack.budget.steps)
        context = LossContext(step=position - stage.start, total_steps=stage.length, targeted=run.target.targeted)
        return cls(position, run.criteria.may_update(position), stage, context)

    @property
    def admissible(self) -> bool:
        """Whether the iterate lies within the budget (it is recorded and judged)."""
        return self.stage.admissible


@dataclass(frozen=True)
class Rows:
    """A block of replica rows: ``index`` selects them in the state (a slice where they are
    consecutive, so that reads are views and writes in place; else an index tensor on the device),
    ``host`` holds their numbers on the host."""

    index: torch.Tensor | slice
    host: torch.Tensor

    @classmethod
    def of(cls, chunk: torch.Tensor, device: torch.device) -> "Rows":
        """The rows of ``chunk`` (host tensor of increasing row numbers)."""
        first, last = int(chunk[0]), int(chunk[-1])
        if last - first + 1 == chunk.numel():
            return cls(slice(first, last + 1), chunk)
        return cls(chunk.to(device, non_blocking=True), chunk)  # an upload the host does not wait for

    @property
    def count(self) -> int:
        return self.host.numel()


def step_rows(run: Run, state: Replicas, rows: Rows, step: Step) -> None:
    """The five phases (module docstring) for the replicas ``rows`` at ``step``."""
    rule, budget = run.attack.rule, run.attack.budget
    moving = ~state.done[rows.index]  # all True under compaction; finished replicas keep their records otherwise
    x = state.x[rows.index].detach()
    x0 = direction = rule_state = point = None
    if step.update:
        x0, direction = state.clean(rows.index), state.direction[rows.index]
        rule_state = {key: value[rows.index] for key, value in state.rule_state.items()}
        point = rule.gradient_point(x, x0, direction, rule_state, budget)
    shared = step.update and point is x
    x.requires_grad_(shared)
    with torch.set_grad_enabled(shared):
        out = forward(run, state, x)
    raw, stop = score_and_record(run, state, rows, step, x, out, moving)
    if step.update:
        at = GradientAt(run, state, rows, step, (x, out) if shared else None)
        found = rule.gradient(point, at)
        info = StepInfo(found.loss, raw, step.position, budget.steps, found.tracked)
        moved, new_state = advance(rule, x.detach(), found.grad, x0, direction, rule_state, info, budget)
        commit(state, rows, x.detach(), moved, new_state, moving & ~stop)
    state.done[rows.index] |= stop
    state.stopped[rows.index] |= stop


def forward(run: Run, state: Replicas, images: torch.Tensor, transform: Transform | None = None) -> VictimOutput:
    """The victim's outputs on ``images`` (n, 3, H, W) (through ``transform``), at the steps' size."""
    inputs = images if transform is None else transform(images)
    return run.victim(inputs, state.step_size) if state.capped else run.victim(inputs)


def score_and_record(run: Run, state: Replicas, rows: Rows, step: Step, x: torch.Tensor, out: VictimOutput,
                     moving: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Phase 1 (module docstring) for the iterates ``x`` (n, 3, H, W) of ``rows`` and the victim's
    outputs on them. Returns the recorded scores (n,) and which replicas stop (n,) bool."""
    criteria, index = run.criteria, rows.index
    live = moving & step.admissible
    clean = None if state.step_clean is None else state.step_clean[state.image_on_device[index]]
    raw, score = run.scorer(out.prob.detach() > 0.5, state.step_reference[index], clean)
    state.trajectory[index, step.position] = torch.where(live, raw, state.trajectory[index, step.position])
    state.last_score[index] = torch.where(live, score, state.last_score[index])
    unsolved = live & (state.success_at[index] < 0)
    newly = unsolved & criteria.succeeds(score)
    state.success_at[index] = torch.where(newly, torch.full_like(state.success_at[index], step.position),
                                          state.success_at[index])
    state.success_score[index] = torch.where(newly, score, state.success_score[index])
    if step.admissible:
        state.chosen[index] = torch.where(unsolved.view(-1, 1, 1, 1), x.detach(), state.chosen[index])
    improved = live & better(raw, state.best_score[index], run.target.targeted)
    state.best_score[index] = torch.where(improved, raw, state.best_score[index])
    state.best_at[index] = torch.where(improved, torch.full_like(state.best_at[index], step.position),
                                       state.best_at[index])
    state.best[index] = torch.where(improved.view(-1, 1, 1, 1), x.detach(), state.best[index])
    run.result.forward_replicas += rows.count
    state.forwards[index] += 1
    return raw, criteria.stops(raw) & live


class GradientAt:
    """The :class:`~medis.attacks.rules.base.GradientAt` of one block of rows at one step: phase 3's
    pass, reusing phase 1's forward where the point is the iterate and nothing is transformed."""

    def __init__(self, run: Run, state: Replicas, rows: Rows, step: Step,
                 scored: tuple[torch.Tensor, VictimOutput] | None) -> None:
        self.run, self.state, self.rows, self.step = run, state, rows, step
        self._scored = scored

    @property
    def seeds(self) -> Sequence[int]:
        """One seed per row: a function of the run's seed, the replica's image id and loss, and the step."""
        return [row_seed(self.run.seed, self.state.ids[int(self.state.image_of[r])],
                         self.state.losses[int(self.state.loss_of[r])], self.step.position)
                for r in self.rows.host.tolist()]

    def __call__(self, point: torch.Tensor, transform: Transform | None = None) -> Gradient:
        return gradient(self, point, transform)


def gradient(at: GradientAt, point: torch.Tensor, transform: Transform | None = None) -> Gradient:
    """Phase 3: the input gradient of each row's own surrogate loss at ``point`` (n, 3, H, W), seen
    through ``transform``, with the losses and (where the rule tracks it) the cross-entropy there."""
    run, state, rows = at.run, at.state, at.rows
    reference = state.step_reference[rows.index]
    if transform is None and at._scored is not None and point is at._scored[0]:
        inputs, out = at._scored
        at._scored = None  # phase 1's graph serves once
    else:
        inputs = point.detach().requires_grad_(True)
        with torch.enable_grad():
            out = forward(run, state, inputs, transform)
        run.result.forward_replicas += rows.count
        state.forwards[rows.index] += 1
    with torch.enable_grad():
        values = replica_losses(out, reference.to(inputs.dtype), state.loss_of[rows.host], run.loss_fns,
                                at.step.context)
        (grad,) = torch.autograd.grad(values.sum(), inputs)
    run.result.backward_replicas += rows.count
    state.backwards[rows.index] += 1
    tracked = None
    if run.tracked_fns is not None:
        with torch.no_grad():
            tracked = replica_losses(out, reference.to(out.prob.dtype), state.loss_of[rows.host], run.tracked_fns,
                                     at.step.context)
    return Gradient(grad, values.detach(), tracked)


def advance(rule: UpdateRule, x: torch.Tensor, grad: torch.Tensor, x0: torch.Tensor, direction: torch.Tensor,
            state: State, info: StepInfo, budget: Budget) -> tuple[torch.Tensor, State]:
    """Phases 4 and 5: the rule's step (same arguments as :meth:`UpdateRule.step`), its proposal
    projected onto ``budget`` around ``x0`` at the radius of the next iterate's stage (SEA's
    progressive radius; the budget's own radius otherwise) and into [0, 1]. (n, C, H, W), state."""
    proposed, new_state = rule.step(x, grad, x0, direction, state, info, budget)
    following = rule.stage(info.position + 1, info.total)
    return budget.scaled(following.radius).project(proposed, x0), new_state


def commit(state: Replicas, rows: Rows, x: torch.Tensor, moved: torch.Tensor, rule_state: State,
           moving: torch.Tensor) -> None:
    """The ``moving`` rows (n,) bool take their ``moved`` image and new ``rule_state``; the others
    keep ``x`` and their state."""
    state.x[rows.index] = torch.where(moving.view(-1, 1, 1, 1), moved, x)
    for key, value in rule_state.items():
        state.rule_state[key][rows.index] = torch.where(per_sample(moving, value), value.to(state.rule_state[key]),
                                                        state.rule_state[key][rows.index])


def row_seed(seed: int, image_id: str, loss: str, position: int) -> int:
    """The seed of one replica's random draws at one step (EOT's transforms): a function of the
    run's seed, the image id, the loss label and the step alone."""
    return (int(seed) * 1_000_003 + zlib.crc32(f"{image_id}\x1f{loss}\x1f{position}".encode())) % (2**63)
