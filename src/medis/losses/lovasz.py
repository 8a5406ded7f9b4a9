"""Lovász hinge (Berman, Rannen Triki, Blaschko, "The Lovász-Softmax loss: A tractable surrogate for
the optimization of the intersection-over-union measure in neural networks", CVPR 2018), batched.

For one vector of logits z and labels m in {0, 1}: errors e = 1 - z (2m - 1), sorted in decreasing
order; g is the gradient of the Lovász extension of the Jaccard loss at the labels sorted in the
same order; loss = <relu(e_sorted), g>. All rows of a (R, N) tensor are done at once.

Two forms: the notebooks' (paper mode, :func:`lovasz_loss_paper`, with their two quirks) and the
clean one on the fused logit (:func:`lovasz_loss`: Berman et al.'s smooth elu(e) + 1 of the errors,
which unlike relu(e) has a gradient at pixels already beyond the margin, and the complement class
for an empty reference).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medis.losses.base import on_logit, on_prob, register
from medis.losses.logits import empty_reference, with_floor

__all__ = ["lovasz_grad", "lovasz_hinge", "lovasz_hinge_rows", "lovasz_loss", "lovasz_loss_paper"]


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss, row by row. (R, N) -> (R, N).

    With g = Σ gt: intersection = g - cumsum(gt), union = g + cumsum(1 - gt),
    J = 1 - intersection / union, and the result is J with J[1:] - J[:-1] in place of J[1:].
    For labels in [0, 1] the union is never 0; it is guarded anyway. No gradient flows through it.
    """
    gt_sorted = gt_sorted.detach()
    gts = gt_sorted.sum(-1, keepdim=True)
    intersection = gts - gt_sorted.cumsum(-1)
    union = gts + (1.0 - gt_sorted).cumsum(-1)
    jaccard = 1.0 - intersection / union.clamp_min(torch.finfo(union.dtype).tiny)
    return torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], dim=-1)


def lovasz_hinge_rows(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Lovász hinge of each row. logits (R, N), labels (R, N) in {0, 1} -> (R,)."""
    signs = 2.0 * labels - 1.0
    errors = 1.0 - logits * signs
    errors_sorted, order = torch.sort(errors, dim=-1, descending=True)
    grad = lovasz_grad(torch.gather(labels, -1, order))
    return (torch.relu(errors_sorted) * grad).sum(-1)


def lovasz_hinge(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Lovász hinge per image (Berman et al., CVPR 2018). (B,1,H,W) logits, (B,1,H,W) mask -> (B,)."""
    labels = mask.to(logits.dtype)
    return lovasz_hinge_rows(logits.flatten(1), labels.flatten(1))


def lovasz_loss_paper(prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MedIS notebook Lovász hinge (Berman et al., CVPR 2018 applied as in Shukla, Gupta, Gupta,
    Multimedia Tools and Applications 2023). (B,1,H,W) x2 -> (B,).

    Two quirks of the notebooks are kept: P itself is used as the logits, and the loss of a sample
    is the mean over its image ROWS of the Lovász hinge of each row (W pixels), because the
    notebooks passed an (H, W) map to a function iterating "per image" over the first dimension.
    """
    b, w = prob.shape[0], prob.shape[-1]
    rows = lovasz_hinge_rows(prob.reshape(-1, w), mask.to(prob.dtype).reshape(-1, w))
    return rows.view(b, -1).mean(1)


def lovasz_loss(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Lovász hinge per image (Berman, Rannen Triki, Blaschko, CVPR 2018) with the smooth elu(e) + 1
    of the errors, on the background class (labels and logits flipped) for an empty reference, with
    the floor of :func:`~medis.losses.logits.with_floor` (a pixel at a zero increment of the Jaccard
    extension has no gradient of its own)."""
    empty = empty_reference(mask)
    labels = torch.where(empty, 1.0 - mask, mask).flatten(1).to(z.dtype)
    logits = torch.where(empty, -z, z).flatten(1)
    errors = 1.0 - logits * (2.0 * labels - 1.0)
    errors_sorted, order = torch.sort(errors, dim=-1, descending=True)
    grad = lovasz_grad(torch.gather(labels, -1, order))
    return with_floor(((F.elu(errors_sorted) + 1.0) * grad).sum(-1), z, mask)


register("lovasz", on_logit(lovasz_loss), on_prob(lovasz_loss_paper))
