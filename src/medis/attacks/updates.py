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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medis.errors import ConfigError

UPDATE_RULES = ("sign", "pgd", "mifgsm", "l2")


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
    """

    rule: str = "sign"
    step_size: float = 1.0 / 255.0
    eps: float | None = None
    random_start: bool = False
    momentum: float = 1.0

    def __post_init__(self) -> None:
        if self.rule not in UPDATE_RULES:
            raise ConfigError(f"attack.update={self.rule!r} is not an update rule; choose one of {UPDATE_RULES}")
        if self.step_size <= 0:
            raise ConfigError(f"attack.step_size must be > 0, got {self.step_size}")
        if self.eps is not None and self.eps < 0:
            raise ConfigError(f"attack.eps must be >= 0 or null, got {self.eps}")
        if self.rule in ("pgd", "l2") and self.eps is None:
            raise ConfigError(f"attack.update={self.rule!r} needs a budget: set attack.eps")


def _per_sample_norm(t: torch.Tensor, p: float) -> torch.Tensor:
    return t.flatten(1).norm(p=p, dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


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
    d = direction.view(-1, *([1] * (x.dim() - 1))).to(grad.dtype)
    if config.rule == "mifgsm":
        momentum = config.momentum * momentum + grad / _per_sample_norm(grad, 1)
        moved = x + config.step_size * torch.sign(d * momentum)
    elif config.rule == "l2":
        moved = x + config.step_size * d * grad / _per_sample_norm(grad, 2)
    else:
        moved = x + config.step_size * torch.sign(d * grad)
    return project(moved, x0, config), momentum
