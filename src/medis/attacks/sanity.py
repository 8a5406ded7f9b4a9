"""Checks of the evaluation itself, in the spirit of AutoAttack's (Croce and Hein, "Reliable
evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks", ICML 2020)
and of Athalye, Carlini, Wagner, "Obfuscated gradients give a false sense of security", ICML 2018.

An attack success rate means little when the victim is stochastic (two identical forwards differ),
when its input gradient is zero or non-finite on much of the image (gradient masking: sign steps
then go nowhere, and a low ASR is mistaken for robustness), or when the clean model already fails
most images (the untargeted ASR then measures the model's errors, not the attack). These checks
run once, on the first batch of a run, and return warnings (strings) plus the measured values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from medis.attacks.batching.loss_size import downscale_masks, loss_shape
from medis.losses.logits import bce_map, fused_logit
from medis.metrics.segmentation import paper_miou
from medis.models.frontend import VictimOutput, frozen

__all__ = ["VictimChecks", "check_victim", "modules_in_train_mode"]

RANDOM_TOLERANCE = 1e-5
"""Largest |difference| of two identical forwards that still counts as deterministic."""
MASKED_SHARE = 0.5
"""Warn when more than this share of pixels has a zero input gradient."""
CLEAN_FAILURE_SHARE = 0.5
"""Warn when the clean model fails (mIoU <= the untargeted success threshold) more than this share."""
UNTARGETED_SUCCESS = 0.5


@dataclass
class VictimChecks:
    """What :func:`check_victim` measured, and the warnings it raises.

    Attributes:
        output_change: max |prob difference| between two forwards of the same images.
        zero_gradient_share: share of pixels whose input gradient is exactly 0 in every channel.
        nonfinite_gradient_share: share of gradient entries that are NaN or Inf.
        clean_failure_share: share of images the clean model already gets wrong (paper mIoU with the
            ground truth <= 0.5, i.e. an untargeted "success" before any perturbation).
        warnings: one sentence per failed check.
    """

    output_change: float
    zero_gradient_share: float
    nonfinite_gradient_share: float
    clean_failure_share: float
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"output_change": self.output_change, "zero_gradient_share": self.zero_gradient_share,
                "nonfinite_gradient_share": self.nonfinite_gradient_share,
                "clean_failure_share": self.clean_failure_share, "warnings": list(self.warnings)}


def modules_in_train_mode(model: torch.nn.Module) -> list[str]:
    """Names of the submodules that are in training mode (``""`` is the model itself)."""
    return [name for name, module in model.named_modules() if module.training]


def _batches(images: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]):
    """(image (1,3,H,W), mask (1,1,H,W)) one at a time: a forward with input gradient of several
    ISIC-sized images at once would take more memory than the attack's own steps."""
    for image, mask in zip(images, masks):
        yield image[None], mask[None]


def check_victim(victim: Callable[[torch.Tensor], VictimOutput], images: Sequence[torch.Tensor],
                 masks: Sequence[torch.Tensor], loss_size: int | None = None) -> VictimChecks:
    """Run the evaluation checks on a few images (see the module docstring).

    Args:
        victim: a :class:`~medis.models.frontend.Victim` (its ``model`` is frozen in eval mode for
            the checks, as during the attack).
        images: (3, H_i, W_i) images in [0, 1]; masks: their (1, H_i, W_i) ground truths.
        loss_size: the engine's loss resolution (``engine.loss_size``): the checks read the outputs
            at that size, as the attack's losses and step scores do (the ground truth scaled there);
            the gradient is the full-size image's either way.

    Returns:
        :class:`VictimChecks`; its ``warnings`` list is empty when every check passes.
    """
    model = getattr(victim, "model", victim)
    change, zero, nonfinite, pixels, entries, failures, nan_output = 0.0, 0, 0, 0, 0, 0, False
    with frozen(model) if isinstance(model, torch.nn.Module) else torch.enable_grad():
        for batch, mask in _batches(images, masks):
            size = loss_shape(tuple(batch.shape[-2:]), loss_size)
            call = (lambda x: victim(x)) if size == tuple(batch.shape[-2:]) else (lambda x: victim(x, size))
            mask = downscale_masks(mask, size).to(batch.dtype)
            with torch.no_grad():
                first, second = call(batch).prob, call(batch).prob
            nan_output |= bool(torch.isnan(first).any())
            change = max(change, float(torch.nan_to_num((first - second).abs()).max()))
            failures += int((paper_miou((first > 0.5).float(), mask) <= UNTARGETED_SUCCESS).sum())
            del first, second
            x = batch.clone().requires_grad_(True)
            with torch.enable_grad():
                # the attack's own BCE from logits: a zero gradient then means the front end or the
                # network hides the pixel, not a saturated probability
                z = torch.nan_to_num(fused_logit(call(x)), nan=0.0)
                loss = bce_map(z, mask).sum()
                (grad,) = torch.autograd.grad(loss, x)
            finite = torch.isfinite(grad)
            nonfinite += int((~finite).sum())
            entries += grad.numel()
            zero += int((torch.where(finite, grad, torch.zeros_like(grad)) == 0).all(dim=1).sum())
            pixels += grad.shape[0] * grad.shape[2] * grad.shape[3]
    checks = VictimChecks(output_change=change, zero_gradient_share=zero / max(pixels, 1),
                          nonfinite_gradient_share=nonfinite / max(entries, 1),
                          clean_failure_share=failures / max(len(images), 1))
    if change > RANDOM_TOLERANCE:
        checks.warnings.append(f"the victim is stochastic: two forwards of the same images differ by up to "
                               f"{change:.3g} (dropout or random layers active in eval mode?); success rates "
                               f"will vary between runs")
    if checks.nonfinite_gradient_share > 0:
        checks.warnings.append(f"{checks.nonfinite_gradient_share:.1%} of the input gradient is NaN or Inf: "
                               f"sign steps are undefined there")
    if checks.zero_gradient_share > MASKED_SHARE:
        checks.warnings.append(f"the input gradient is exactly zero on {checks.zero_gradient_share:.1%} of the "
                               f"pixels (gradient masking? non-differentiable preprocessing or thresholds in the "
                               f"graph): a low ASR would not mean robustness")
    if checks.clean_failure_share > CLEAN_FAILURE_SHARE:
        checks.warnings.append(f"the clean model already fails {checks.clean_failure_share:.0%} of these images "
                               f"(mIoU <= {UNTARGETED_SUCCESS} before any perturbation): the untargeted ASR "
                               f"measures the model's errors, not the attack")
    if nan_output:
        checks.warnings.append("the victim's output is NaN on clean images")
    return checks
