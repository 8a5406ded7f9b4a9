"""Update rules of iterative gradient attacks, batched over replicas.

Every rule moves ``x`` along ``direction · g`` where ``g`` is the input gradient of the surrogate
loss and ``direction`` is +1 (untargeted: ascend the loss against the ground truth) or −1
(targeted: descend the loss toward the target), then projects onto the budget (if any) and clamps
to [0, 1].

- ``sign``: I-FGSM (Kurakin, Goodfellow, Bengio, "Adversarial examples in the physical world",
  2017), MedIS's rule: ``x + α·sign(d·g)``, no projection (the budget is implicit: t·α after t steps)
  unless ``eps`` is set.
- ``pgd``: PGD (Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR
  2018): the sign step, projection onto the L∞ ball of radius ``eps`` and an optional uniform
  random start in that ball.
- ``mifgsm``: MI-FGSM (Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018):
  ``m ← μ·m + g/‖g‖₁``, ``x + α·sign(d·m)``.
- ``l2``: normalised L2 step ``x + α·d·g/‖g‖₂`` with projection onto the L2 ball of radius ``eps``.
- ``dag``: DAG (Xie et al., "Adversarial Examples for Semantic Segmentation and Object Detection",
  ICCV 2017): the step normalised by its L∞ norm, ``x + γ·d·g/‖g‖∞`` (γ = ``step_size``; DAG uses
  0.5 on the 0-255 scale); unbounded unless ``eps`` is set. With the ``dag`` loss the gradient comes
  from the pixels not yet flipped, so the step vanishes once that set is empty.
- ``asma``: ASMA (Ozbulak, Van Messem, De Neve, "Impact of Adversarial Examples on Deep Learning
  Models for Biomedical Image Segmentation", MICCAI 2019): ``x + τ_t·(d·g − 2λ(x − x0))`` with the
  adaptive multiplier ``τ_t = β·IoU_t + τ`` growing with the current overlap with the target (the
  ``−2λ(x − x0)`` term is the gradient of the L2 penalty −λ‖x − x0‖²); unbounded unless ``eps``.
- ``apgd``: APGD (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
  diverse parameter-free attacks", ICML 2020), see :mod:`medis.attacks.apgd`.

:func:`step` is the stateless form of the first four; :func:`advance` runs any rule on the
per-replica state of :func:`init_state` (MI-FGSM's momentum, APGD's step sizes and best points).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medis.errors import ConfigError

UPDATE_RULES = ("sign", "pgd", "mifgsm", "l2", "dag", "asma", "apgd")
BUDGET_RULES = ("pgd", "l2", "apgd")
"""Rules that need ``eps``."""


@dataclass(frozen=True)
class UpdateConfig:
    """Parameters of an update rule.

    Attributes:
        rule: one of :data:`UPDATE_RULES`.
        step_size: α, in [0, 1] image units (MedIS: 1/255).
        eps: budget (L∞ for sign/pgd/mifgsm, L2 for l2); ``None``: unbounded (pgd and l2 need one).
        random_start: start at a random point of the budget: uniform in the L∞ ball (pgd), or a random
            direction at a radius drawn uniformly in [0, eps] (l2, the usual PGD-L2 practice).
        momentum: μ of MI-FGSM.
        step_size_eps: when set (and ``eps`` is), the step size is ``step_size_eps · eps`` instead of
            ``step_size`` (APGD starts at 2·eps; PGD-style attacks often use eps/4).
        asma_tau, asma_beta, asma_l2: ASMA's τ, β and L2-penalty weight λ (paper: 1e-7, 1e-6, 1).
        apgd_alpha, apgd_rho: APGD's momentum α (0.75) and oscillation fraction ρ (0.75).
    """

    rule: str = "sign"
    step_size: float = 1.0 / 255.0
    eps: float | None = None
    random_start: bool = False
    momentum: float = 1.0
    step_size_eps: float | None = None
    asma_tau: float = 1e-7
    asma_beta: float = 1e-6
    asma_l2: float = 1.0
    apgd_alpha: float = 0.75
    apgd_rho: float = 0.75

    def __post_init__(self) -> None:
        if self.rule not in UPDATE_RULES:
            raise ConfigError(f"attack.update={self.rule!r} is not an update rule; choose one of {UPDATE_RULES}")
        if self.step_size <= 0:
            raise ConfigError(f"attack.step_size must be > 0, got {self.step_size}")
        if self.eps is not None and self.eps < 0:
            raise ConfigError(f"attack.eps must be >= 0 or null, got {self.eps}")
        if self.rule in BUDGET_RULES and self.eps is None:
            raise ConfigError(f"attack.update={self.rule!r} needs a budget: set attack.eps")
        if self.step_size_eps is not None and (self.eps is None or self.step_size_eps <= 0):
            raise ConfigError(f"attack.step_size_eps={self.step_size_eps} needs attack.eps and a value > 0")

    @property
    def alpha(self) -> float:
        """The step size in [0, 1] image units (``step_size_eps · eps`` when set)."""
        if self.step_size_eps is not None and self.eps is not None:
            return self.step_size_eps * self.eps
        return self.step_size


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """One value per replica, broadcastable against ``like``: (R,) -> (R, 1, ..., 1) with ``like.dim()`` dims."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def _per_sample_norm(t: torch.Tensor, p: float) -> torch.Tensor:
    return per_sample(t.flatten(1).norm(p=p, dim=1).clamp_min(1e-12), t)


def project(x: torch.Tensor, x0: torch.Tensor, config: UpdateConfig) -> torch.Tensor:
    """Project ``x`` onto the budget around ``x0`` and clamp to [0, 1]. (R, C, H, W) -> same."""
    if config.eps is not None:
        delta = x - x0
        if config.rule == "l2":
            delta = delta * torch.clamp(config.eps / _per_sample_norm(delta, 2), max=1.0)
        else:
            delta = delta.clamp(-config.eps, config.eps)
        x = x0 + delta
    return x.clamp(0.0, 1.0)


def random_start(x0: torch.Tensor, config: UpdateConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """The starting point: ``x0``, or a uniform draw in the budget when ``random_start``. (R, C, H, W)."""
    if not config.random_start or not config.eps:
        return x0.clone()
    noise = torch.rand(x0.shape, generator=generator, device="cpu").to(x0.device, x0.dtype) * 2 - 1
    if config.rule == "l2":
        noise = noise / _per_sample_norm(noise, 2) * config.eps * torch.rand(
            (x0.shape[0],) + (1,) * (x0.dim() - 1), generator=generator).to(x0.device, x0.dtype)
    else:
        noise = noise * config.eps
    return project(x0 + noise, x0, config)


def step(x: torch.Tensor, grad: torch.Tensor, x0: torch.Tensor, direction: torch.Tensor, config: UpdateConfig,
         momentum: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One update of the replicas in ``x``.

    Args:
        x, grad, x0: (R, C, H, W) current images, loss gradients, clean images.
        direction: (R,) +1 to ascend (untargeted), −1 to descend (targeted).
        config: the rule.
        momentum: (R, C, H, W) MI-FGSM buffer of these replicas (``None`` for other rules).

    Returns:
        (new images (R, C, H, W) in [0, 1] within the budget, new momentum buffer or ``None``).
    """
    d = per_sample(direction, x).to(grad.dtype)
    alpha = config.alpha
    if config.rule == "mifgsm":
        momentum = config.momentum * momentum + grad / _per_sample_norm(grad, 1)
        moved = x + alpha * torch.sign(d * momentum)
    elif config.rule == "l2":
        moved = x + alpha * d * grad / _per_sample_norm(grad, 2)
    elif config.rule in ("sign", "pgd"):
        moved = torch.sign(grad).mul_(alpha * torch.sign(d)).add_(x)  # = x + α·sign(d·g), without two passes
    else:
        raise ConfigError(f"update rule {config.rule!r} needs its state: use advance()")
    return project(moved, x0, config), momentum


@dataclass(frozen=True)
class StepInfo:
    """What a stateful rule may read besides the images and gradients.

    Attributes:
        loss: (R,) the surrogate loss of each replica at ``x`` (detached).
        score: (R,) the recorded score of ``x`` against the reference (mIoU).
        position: index of this record in the attack loop (0 = the first evaluated image).
        total: number of updates T.
    """

    loss: torch.Tensor
    score: torch.Tensor
    position: int
    total: int


def init_state(x0: torch.Tensor, config: UpdateConfig) -> dict[str, torch.Tensor]:
    """Per-replica state of a rule (every tensor has the replicas as first dimension)."""
    if config.rule == "mifgsm":
        return {"momentum": torch.zeros_like(x0)}
    if config.rule == "apgd":
        from medis.attacks.apgd import apgd_state
        return apgd_state(x0, config)
    return {}


def dag_step(x: torch.Tensor, grad: torch.Tensor, x0: torch.Tensor, direction: torch.Tensor,
             config: UpdateConfig) -> torch.Tensor:
    """DAG's step ``x + γ·d·g/‖g‖∞`` (a replica with zero gradient stays). (R, C, H, W) -> same."""
    scale = grad.flatten(1).abs().amax(1).clamp_min(1e-12)
    return project(x + config.alpha * per_sample(direction, x) * grad / per_sample(scale, x), x0, config)


def asma_multiplier(score: torch.Tensor, direction: torch.Tensor, config: UpdateConfig) -> torch.Tensor:
    """ASMA's τ_t = β·IoU_t + τ per replica (R,): IoU with the target (targeted, d < 0) or, untargeted,
    1 − mIoU with the ground truth (the overlap with the flipped mask grows as it falls)."""
    progress = torch.where(direction < 0, score, 1.0 - score).nan_to_num(0.0)
    return config.asma_beta * progress + config.asma_tau


def asma_step(x: torch.Tensor, grad: torch.Tensor, x0: torch.Tensor, direction: torch.Tensor,
              config: UpdateConfig, score: torch.Tensor) -> torch.Tensor:
    """ASMA's step ``x + τ_t·(d·g − 2λ(x − x0))``. (R, C, H, W) -> same."""
    multiplier = per_sample(asma_multiplier(score, direction, config), x).to(x.dtype)
    ascent = per_sample(direction, x).to(grad.dtype) * grad - 2.0 * config.asma_l2 * (x - x0)
    return project(x + multiplier * ascent, x0, config)


def advance(x: torch.Tensor, grad: torch.Tensor, x0: torch.Tensor, direction: torch.Tensor, config: UpdateConfig,
            state: dict[str, torch.Tensor], info: StepInfo) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One update of any rule.

    Args:
        x, grad, x0: (R, C, H, W) current images, loss gradients, clean images.
        direction: (R,) +1 to ascend (untargeted), −1 to descend (targeted).
        config: the rule.
        state: these replicas' rows of :func:`init_state`'s tensors.
        info: losses, scores and position of this step.

    Returns:
        (new images (R, C, H, W), new state with the same keys).
    """
    if config.rule == "apgd":
        from medis.attacks.apgd import apgd_step
        return apgd_step(x, grad, x0, direction, config, state, info)
    if config.rule == "dag":
        return dag_step(x, grad, x0, direction, config), state
    if config.rule == "asma":
        return asma_step(x, grad, x0, direction, config, info.score), state
    moved, momentum = step(x, grad, x0, direction, config, state.get("momentum"))
    return moved, ({"momentum": momentum} if momentum is not None else state)
