"""No dead gradients in clean mode: every loss moves the input toward every target kind, on a victim
whose logits are saturated (|z| from 15 to 40, where sigmoid(z) is 1 or 0 in float32 and losses
written on probabilities or on logits of clamped probabilities had exactly zero gradient), also
toward the empty (all-black) target, where overlap losses used to be constant. And SegPGD's pixel
weights follow the direction of the attack."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medis.attacks.targets import TARGET_KINDS, make_targets
from medis.losses import LOSS_NAMES, LossContext, build_loss
from medis.models.frontend import Victim

SIZE = 16
KINDS = tuple(TARGET_KINDS)


class Saturated(nn.Module):
    """Logit 80·(red − 0.5): the images below put every pixel at 15 <= |z| <= 40."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 80.0 * (x[:, :1] - 0.5)


def saturated_case() -> tuple[Victim, torch.Tensor, torch.Tensor]:
    """A clean-fusion victim, two images whose logits all lie in ±[15, 40], and their predictions as
    ground truths (a perfect, fully confident model: the hardest case for an untargeted attack)."""
    gen = torch.Generator().manual_seed(0)
    lesion = torch.zeros(2, 1, SIZE, SIZE, dtype=torch.bool)
    lesion[0, :, 3:9, 4:12] = True
    lesion[1, :, 8:14, 2:7] = True
    magnitude = 15.0 + 25.0 * torch.rand(2, 1, SIZE, SIZE, generator=gen)
    red = 0.5 + torch.where(lesion, magnitude, -magnitude) / 80.0
    images = torch.cat([red, torch.full_like(red, 0.3), torch.full_like(red, 0.6)], dim=1)
    victim = Victim(Saturated(), SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), fusion="clean")
    return victim, images, lesion.float()


def test_the_victim_is_saturated() -> None:
    victim, images, masks = saturated_case()
    out = victim(images)
    z = out.logit.abs()
    assert z.min() >= 15 and z.max() <= 40
    assert (out.prob[out.logit > 17] == 1.0).all()  # float32 sigmoid is exactly 1 there
    assert torch.equal(out.prob > 0.5, masks > 0.5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_every_loss_has_an_input_gradient_toward_every_target(name: str, kind: str) -> None:
    victim, images, masks = saturated_case()
    others = [torch.roll(masks[0], 5, -1), masks[1].flip(-1), masks[0].flip(-2)]  # other shapes than the two
    pooled = TARGET_KINDS[kind].pooled
    references = torch.stack(make_targets(kind, list(masks), pool=[*masks, *others] if pooled else None))
    if pooled:
        assert not torch.equal(references, masks)
    x = images.clone().requires_grad_(True)
    context = LossContext(step=0, total_steps=10, targeted=TARGET_KINDS[kind].targeted)
    loss = build_loss(name, "clean")(victim(x), references, context).sum()
    (grad,) = torch.autograd.grad(loss, x)
    per_image = grad.flatten(1).abs().amax(1)
    assert (per_image > 0).all(), f"{name} toward {kind}: zero input gradient on an image"


def test_overlap_losses_toward_the_empty_target_use_the_background() -> None:
    victim, images, masks = saturated_case()
    black = torch.zeros_like(masks)
    out = victim(images)
    for name in ("dice", "logcosh_dice", "tversky"):
        loss = build_loss(name, "clean")(out, black, LossContext(targeted=True))
        # the prediction covers part of the image: the background Dice is below 1, the loss above 0
        assert (loss > 0).all(), name
        assert (build_loss(name, "clean")(out, masks, LossContext()) < 1e-6).all(), name  # perfect: ~0


def test_segpgd_weights_the_pixels_still_to_be_won_first_in_both_directions() -> None:
    """At t = 0 SegPGD puts all weight on the pixels the attack still has to win: those still right
    when untargeted, those not yet at the target when targeted (not the ones already there)."""
    m = torch.tensor([[[[1.0, 0.0]]]])
    z = torch.tensor([[[[2.0, 3.0]]]], requires_grad=True)  # pixel 0 agrees with m, pixel 1 does not
    from medis.models.frontend import fused_output

    for targeted, winning in ((False, 0), (True, 1)):
        z.grad = None
        loss = build_loss("segpgd")(fused_output((z,), "clean"), m, LossContext(step=0, total_steps=10,
                                                                                 targeted=targeted))
        loss.sum().backward()
        assert z.grad[0, 0, 0, winning] != 0 and z.grad[0, 0, 0, 1 - winning] == 0, targeted


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_every_pixel_still_to_win_has_a_gradient(name: str, kind: str) -> None:
    """Not only per image: at every confident pixel (|z| from 15 to 40) that the attack must still
    win, each loss moves the input. The saturated victim's logit of a pixel reads that pixel's red
    value alone, so its input gradient there is 80 times the loss's derivative in that logit."""
    victim, images, masks = saturated_case()
    others = [torch.roll(masks[0], 5, -1), masks[1].flip(-1), masks[0].flip(-2)]
    pooled = TARGET_KINDS[kind].pooled
    references = torch.stack(make_targets(kind, list(masks), pool=[*masks, *others] if pooled else None))
    targeted = TARGET_KINDS[kind].targeted
    x = images.clone().requires_grad_(True)
    context = LossContext(step=0, total_steps=10, targeted=targeted)
    loss = build_loss(name, "clean")(victim(x), references, context).sum()
    (grad,) = torch.autograd.grad(loss, x)
    to_win = (masks != references) if targeted else torch.ones_like(masks, dtype=torch.bool)
    dead = (grad[:, :1] == 0) & to_win
    assert not dead.any(), f"{name} toward {kind}: {int(dead.sum())} of {int(to_win.sum())} pixels to win have no gradient"
