"""Whole verdicts: every number of a record describes one image (the chosen one, MedIS's first success;
or the worst case, the best admissible iterate, in the ``worst_*`` columns), judged through the
pipeline the model uses (the 8-bit file within the budget, the loaders' own resize), with the images
that pipeline or a transfer model already fails set aside; a targeted success reaches both sides of
its target."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medis.attacks import Attack, EngineOptions, run_attack
from medis.attacks.budget import Budget
from medis.attacks.ensemble import broken_images
from medis.data.transforms import eval_transform
from medis.metrics.segmentation import target_attainment, target_score
from medis.models.frontend import Victim

from .test_engine import SIZE, bce, staircase, toy_victim
from .test_loss_resolution import lesion_images, victim as lite_victim

# ----------------------------------------------------------------------------- one image per verdict


def test_the_chosen_image_and_the_worst_case_are_recorded_each_with_its_own_numbers() -> None:
    """On the staircase, row k flips after k + 1 steps: the first success (mIoU <= 0.5) comes at step
    6, the worst case (no stop: the lowest mIoU is > 0.2) at the last step, 10."""
    image, gt = staircase()
    (record,) = run_attack(toy_victim(), image, gt, Attack(), losses={"bce": bce}).records
    assert (record.steps, record.worst_steps) == (6, 10)
    assert record.metric == pytest.approx(10 / 22) and record.worst_metric == pytest.approx(6 / 26)
    assert record.linf_255 == pytest.approx(6, abs=1e-3) and record.worst_linf * 255 == pytest.approx(10, abs=1e-3)
    assert record.worst_ssim < record.ssim and record.worst_psnr < record.psnr
    assert record.real_success is True and record.worst_real_success is True
    assert record.worst_real_metric == pytest.approx(6 / 26)


# ----------------------------------------------------------------------------- the 8-bit file


@pytest.mark.parametrize("eps_255", [2.6, 4.5])
def test_the_saved_8_bit_image_lies_in_the_ball(eps_255: float) -> None:
    """Rounding alone leaves the ball (2.6 levels round to 3): the real pipeline reads an image of
    8-bit levels within eps of the clean one."""
    eps = eps_255 / 255
    x0 = torch.randint(0, 256, (2, 3, 20, 24), generator=torch.Generator().manual_seed(0)).float() / 255
    budget = Budget(eps=eps)
    x = budget.project(x0 + eps * torch.sign(torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))), x0)
    assert float(((x * 255).round() / 255 - x0).abs().max()) > eps  # rounding alone leaves it
    saved = budget.quantize(x, x0)
    assert float((saved - x0).abs().max()) <= eps + 1e-7
    assert torch.equal(saved * 255, (saved * 255).round())
    # through the engine: every image the real pipeline reads
    model = toy_victim()
    seen: list[torch.Tensor] = []
    real = model.real_predict
    model.real_predict = lambda images, size=None: seen.append(images.clone()) or real(images, size)  # type: ignore
    image, gt = staircase()
    image = (image * 255).round() / 255  # a clean image as a file holds it
    run_attack(model, image, gt, Attack(rule={"name": "pgd", "step_size": 1 / 255}, budget={"eps": eps, "steps": 5}),
               losses={"bce": bce})
    adversarial = torch.cat(seen[1:])  # the clean image first, then the chosen and worst images
    assert float((adversarial - image).abs().max()) <= eps + 1e-7


def test_an_l2_budget_is_kept_by_the_saved_image() -> None:
    x0 = torch.randint(0, 256, (3, 3, 16, 16), generator=torch.Generator().manual_seed(2)).double() / 255
    budget = Budget(eps=0.05, norm="l2")
    x = budget.project(x0 + 0.2 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(3)).double(), x0)
    saved = budget.quantize(x, x0)
    assert bool(((saved - x0).flatten(1).norm(dim=1) <= 0.05 + 1e-9).all())


# ----------------------------------------------------------------------------- set aside elsewhere


class OnALevelBoundary(torch.nn.Module):
    """Foreground iff red > 0.5 + 0.4/255: the 8-bit file of a red value 0.35/255 above 0.5 (128/255)
    is foreground, the float image background."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 100.0 * (x[:, :1] - (0.5 + 0.4 / 255))


def test_a_pipeline_that_already_fails_the_clean_image_sets_it_aside() -> None:
    """At eps = 1e-9 nothing changes: the attack succeeds on no image, and the real pipeline, which
    already fails this clean image, credits none either (it used to report 100%)."""
    model = Victim(OnALevelBoundary(), SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), fusion="clean")
    image = torch.full((1, 3, SIZE, SIZE), 0.5 + 0.35 / 255)
    gt = torch.zeros(1, 1, SIZE, SIZE)  # the float image's own prediction: all background
    attack = Attack(rule={"name": "pgd", "step_size": 1e-9}, budget={"eps": 1e-9, "steps": 3})
    (record,) = run_attack(model, image, gt, attack, losses={"bce": bce}, transfer_to=model).records
    assert not record.set_aside and not record.success
    assert record.real_metric == 0.0 and record.real_success is None and record.worst_real_success is None
    assert record.transfer_success is False  # the float image on the same model: judged, not set aside


# ----------------------------------------------------------------------------- one resize


def test_the_loader_and_the_in_graph_resize_agree_within_one_level() -> None:
    """On a 2000x1500 textured image the evaluation loader (8-bit, its resize) and the victim's
    in-graph resize of the float image agree within 1/255 at the network size."""
    rng = np.random.default_rng(0)
    rows, cols = np.meshgrid(np.arange(1500), np.arange(2000), indexing="ij")
    texture = 127 + 60 * np.sin(rows / 7.0)[..., None] * np.cos(cols / 5.0)[..., None] + rng.normal(0, 25, (1500, 2000, 3))
    pixels = np.clip(texture, 0, 255).astype(np.uint8)
    loaded = eval_transform(352)(image=pixels, mask=np.zeros((1500, 2000), np.uint8))["image"]
    model = Victim(torch.nn.Identity(), 352, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), fusion="clean", antialias=True)
    in_graph = model.preprocess(torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255)[0]
    difference = (torch.from_numpy(loaded).permute(2, 0, 1).float() / 255 - in_graph).abs()
    assert float(difference.max()) <= 1 / 255 + 1e-6
    plain = Victim(torch.nn.Identity(), 352, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), fusion="clean")
    unaliased = plain.preprocess(torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255)[0]
    assert float((torch.from_numpy(loaded).permute(2, 0, 1).float() / 255 - unaliased).abs().mean()) > 5 / 255


# ----------------------------------------------------------------------------- full-size worst case


def test_with_capped_losses_the_worst_case_is_scored_at_full_size() -> None:
    model = lite_victim()
    images, masks = lesion_images()
    with torch.no_grad():
        masks = torch.maximum(masks, (model(images).prob > 0.5).float())
    result = run_attack(model, images, masks, Attack(budget={"steps": 4, "eps": 8 / 255}), losses=["bce"],
                        options=EngineOptions(loss_size=48, keep_images=True, keep_best=True))
    records = [r for r in result.records if not r.set_aside]
    assert records
    for record in records:
        _, best, _ = result.best[(record.image_id, record.loss)]
        with torch.no_grad():
            full = target_score(model(best[None]).prob > 0.5, masks[int(record.image_id)][None], "clean")
        assert record.worst_metric == pytest.approx(float(full), abs=1e-6)
    # the cascade's "broken" test reads that full-size score
    at = min(r.worst_metric for r in records)
    assert broken_images(records, targeted=False, at=at) == {r.image_id for r in records if r.worst_metric <= at}


# ----------------------------------------------------------------------------- both sides of a target


def test_erasure_alone_never_reaches_a_target_with_new_lesion() -> None:
    """An attack that only erased the lesion predicts all background. Toward a target with lesion
    outside the clean lesion it attained nothing of that side; toward black it is a full success."""
    clean = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    clean[..., 2:5, 2:5] = True
    erased = torch.zeros_like(clean)
    elsewhere = torch.zeros(1, 1, 8, 8)
    elsewhere[..., 4:7, 4:7] = 1  # overlaps the clean lesion in one pixel
    assert float(target_attainment(erased, elsewhere, clean)) == 0.0
    assert float(target_attainment(erased, torch.zeros(1, 1, 8, 8), clean)) == 1.0
    half = clean.clone()
    half[..., 2:5, 2] = False  # a third of the lesion gone
    assert float(target_attainment(half, torch.zeros(1, 1, 8, 8), clean)) == pytest.approx(1 / 3)
    reached = clean.clone()
    reached[..., 4:7, 4:7] = True  # the new lesion, but the old one kept: the background side is not met
    background_side = 8 / 8  # clean lesion pixels outside the target: 8 must clear, none did
    assert float(target_attainment(reached, elsewhere, clean)) == 0.0 != background_side


def test_a_targeted_success_needs_half_of_each_side() -> None:
    image, gt = staircase()
    target = torch.zeros_like(gt)
    target[..., SIZE // 2:] = 1  # the other half: every pixel must change, both sides
    (record,) = run_attack(toy_victim(), image, target, Attack(), target="random", losses={"bce": bce}).records
    # row k flips after k + 1 steps, on both sides at once: half of each side after 8 steps
    assert record.success and record.steps == 8
    assert record.trajectory[8] == pytest.approx(0.5)
