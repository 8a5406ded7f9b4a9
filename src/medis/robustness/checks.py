"""Checks that a robustness number is not an artefact of the evaluation (gradient masking, too few
steps, an unlucky start), after Athalye, Carlini, Wagner, "Obfuscated Gradients Give a False Sense of
Security" (ICML 2018) and Carlini et al., "On Evaluating Adversarial Robustness" (arXiv 1902.06705, 2019).

Each check compares the mean per-image worst-case mIoU of the reference run (the cascade at the
checks' radius, usually 4/255) with another run, and flags what fails:

- ``more_steps``: every member with twice its steps lowers the worst case by less than ``tolerance``
  (the attack has converged);
- ``transfer``: images made on another (clean) model are not stronger on this one than the white-box
  attack (a white-box attack weaker than a black-box one means its gradients mislead it);
- ``large_eps``: at a large radius (32/255, or unbounded) the worst case falls to at most
  ``large_eps_max`` (a bounded model that still resists an attack that may repaint the image hides
  its gradients);
- ``seeds``: restarts with other seeds move the mean worst case by less than ``tolerance``, and the
  best of all restarts is within it too;
- ``gradients``: the input gradient of the cross-entropy is finite everywhere and non-zero on most
  pixels, and the model is deterministic (:func:`medis.attacks.sanity.check_victim`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from medis.attacks.engine import EngineOptions
from medis.attacks.sanity import MASKED_SHARE, RANDOM_TOLERANCE, check_victim
from medis.robustness.worst_case import AnyAttack, VictimFn, WorstCases, at_radius, mean, with_steps, worst_cases

__all__ = ["Check", "CheckSettings", "run_checks"]


@dataclass(frozen=True)
class CheckSettings:
    """``curve.checks`` (``conf/experiment/robustness_curve.yaml``).

    Attributes:
        enabled: run the checks; eps: their radius (a fraction, e.g. 4/255);
        tolerance: the largest change of the mean worst-case mIoU that counts as "little" (0.02);
        step_factor: the steps' multiplier of ``more_steps`` (2);
        large_eps: the radius of ``large_eps`` (``None``: unbounded); large_eps_max: its pass mark;
        seeds: the other seeds of ``seeds``; gradient_images: images of the gradient check.
    """

    enabled: bool = True
    eps: float = 4 / 255
    tolerance: float = 0.02
    step_factor: int = 2
    large_eps: float | None = 32 / 255
    large_eps_max: float = 0.1
    seeds: tuple[int, ...] = (1, 2)
    gradient_images: int = 4


@dataclass
class Check:
    """One check's verdict: ``passed`` (``None``: skipped, ``detail`` says why), what it measured
    and against what."""

    name: str
    passed: bool | None
    measured: dict[str, Any]
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _more_steps(run: Callable[..., WorstCases], attack: AnyAttack, base: float, settings: CheckSettings) -> Check:
    more = run(with_steps(attack, settings.step_factor)).summary()["miou"]
    drop = base - more
    return Check("more_steps", drop < settings.tolerance,
                 {"worst_miou": base, f"worst_miou_x{settings.step_factor}_steps": more, "drop": drop},
                 f"{settings.step_factor}x the steps lowers the mean worst-case mIoU by {drop:+.4f} "
                 f"(must be < {settings.tolerance:g})")


def _transfer(source: VictimFn | None, target: VictimFn, images, masks, ids, attack: AnyAttack, base: float,
              settings: CheckSettings, options: EngineOptions) -> Check:
    if source is None:
        return Check("transfer", None, {}, "no source model (set curve.checks.transfer_from=<a clean "
                                            "model's checkpoint>)")
    if source is target:
        return Check("transfer", None, {}, "this is the source model")
    made = worst_cases(source, images, masks, ids, attack, options=options, transfer_to=target)
    transferred = mean(made.transfer_miou)
    if transferred is None:
        return Check("transfer", None, {}, "no image was judged on this model (every image set aside)")
    gap = base - transferred
    return Check("transfer", gap < settings.tolerance,
                 {"white_box_worst_miou": base, "transfer_worst_miou": transferred, "source_worst_miou":
                  made.summary()["miou"]},
                 f"images made on the source model give mIoU {transferred:.4f} here, the white-box worst case "
                 f"{base:.4f} (transfer must not be stronger by {settings.tolerance:g} or more)")


UNBOUNDED = 1.0
"""The L-inf radius of "unbounded": images live in [0, 1], so a ball of radius 1 is the whole cube
(and the rules that need a budget, PGD, PAdam, APGD, still have one)."""


def _large_eps(run: Callable[..., WorstCases], attack: AnyAttack, settings: CheckSettings) -> Check:
    eps = UNBOUNDED if settings.large_eps is None else settings.large_eps
    at = run(at_radius(attack, eps)).summary()["miou"]
    radius = "unbounded (L-inf radius 1)" if settings.large_eps is None else f"{settings.large_eps * 255:g}/255"
    return Check("large_eps", at <= settings.large_eps_max, {"eps": eps, "worst_miou": at},
                 f"at {radius} the mean worst-case mIoU is {at:.4f} (must be <= {settings.large_eps_max:g})")


def _seeds(run: Callable[..., WorstCases], attack: AnyAttack, base_run: WorstCases, settings: CheckSettings) -> Check:
    if not settings.seeds:
        return Check("seeds", None, {}, "no other seeds (curve.checks.seeds)")
    runs = {seed: run(attack, seed=seed) for seed in settings.seeds}
    means = {str(seed): r.summary()["miou"] for seed, r in runs.items()}
    base = base_run.summary()["miou"]
    spread = max(abs(m - base) for m in means.values())
    best_of_all = mean([min(values) for values in zip(base_run.miou, *(r.miou for r in runs.values()))])
    drop = base - best_of_all
    passed = spread < settings.tolerance and drop < settings.tolerance
    return Check("seeds", passed, {"worst_miou": base, "worst_miou_by_seed": means, "best_of_restarts": best_of_all,
                                   "largest_change": spread},
                 f"other seeds move the mean worst case by at most {spread:.4f}; the best of all restarts is "
                 f"{drop:+.4f} below the reference (both must be < {settings.tolerance:g})")


def _gradients(victim: VictimFn, images, masks, settings: CheckSettings) -> Check:
    n = max(1, settings.gradient_images)
    found = check_victim(victim, list(images[:n]), list(masks[:n]))
    passed = (found.nonfinite_gradient_share == 0 and found.zero_gradient_share <= MASKED_SHARE
              and found.output_change <= RANDOM_TOLERANCE)
    return Check("gradients", passed, found.as_dict(),
                 f"input gradient: {found.zero_gradient_share:.1%} of the pixels exactly zero (must be <= "
                 f"{MASKED_SHARE:.0%}), {found.nonfinite_gradient_share:.1%} of it non-finite (must be 0); two "
                 f"forwards differ by {found.output_change:.2g}")


def run_checks(victim: VictimFn, images: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], ids: Sequence[str],
               attack: AnyAttack, reference: WorstCases, settings: CheckSettings, *, seed: int = 0,
               options: EngineOptions | None = None, source: VictimFn | None = None,
               progress: Callable[[str], None] | None = None) -> list[Check]:
    """The five checks of the module docstring on ``victim``.

    Args:
        attack: the attack at the checks' radius; reference: its worst cases (seed ``seed``).
        source: the model whose adversarial images the transfer check judges here (``None``: skipped).
        progress: told the name of each check as it starts.
    """
    options = options or EngineOptions()

    def run(this: AnyAttack, seed: int = seed) -> WorstCases:
        return worst_cases(victim, images, masks, ids, this, seed=seed, options=options)

    base = reference.summary()["miou"]
    checks = []
    for name, make in (("more_steps", lambda: _more_steps(run, attack, base, settings)),
                       ("transfer", lambda: _transfer(source, victim, images, masks, ids, attack, base, settings,
                                                      options)),
                       ("large_eps", lambda: _large_eps(run, attack, settings)),
                       ("seeds", lambda: _seeds(run, attack, reference, settings)),
                       ("gradients", lambda: _gradients(victim, images, masks, settings))):
        if progress is not None:
            progress(name)
        checks.append(make())
    return checks
