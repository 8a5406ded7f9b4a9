"""Verdicts the attack earned: clean mode sets aside what needed no attack and never credits an unchanged
prediction; targeted scores count the pixels the attack had to flip; paper mode keeps its numbers and
says how many successes came at the first record; the real pipeline judges every adversarial image."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medis.attacks import Attack, EngineOptions, run_attack
from medis.metrics.segmentation import target_attainment
from medis.models.frontend import IMAGENET_MEAN, Victim
from medis.reporting.summary import summary_markdown, summary_rows
from medis.results.fusion import fuse, per_loss_table

from .test_engine import SIZE, bce, staircase, toy_victim


def small_lesion() -> tuple[torch.Tensor, torch.Tensor]:
    """A 16x16 image whose red channel puts a 3x3 lesion (rows 5-7) 3/255 above 0.5 and the rest
    3/255 below: three sign steps flip any pixel. Its ground truth is that lesion."""
    gt = torch.zeros(1, 1, SIZE, SIZE)
    gt[..., 5:8, 5:8] = 1
    red = torch.where(gt[0, 0] > 0, 0.5 + 2.5 / 255, 0.5 - 2.5 / 255)
    image = torch.stack([red, torch.full_like(red, 0.3), torch.full_like(red, 0.6)]).unsqueeze(0)
    return image, gt


# ----------------------------------------------------------------------------- set aside


def test_a_clean_failure_is_set_aside_not_a_success() -> None:
    image, gt = staircase()
    wrong = 1 - gt  # the clean prediction scores mIoU 0 against it: already "broken"
    records = run_attack(toy_victim(), torch.cat([image, image]), torch.cat([gt, wrong]), Attack(),
                         losses={"bce": bce}, ids=["ok", "broken"]).records
    ok, broken = records
    assert not ok.set_aside and ok.success and ok.steps == 6
    assert broken.set_aside and not broken.success and broken.steps is None
    assert broken.forwards == 1 and broken.backwards == 0  # the clean pass only: no attack was run
    (row,) = fuse(records)
    assert (row["images"], row["set_aside"], row["successes"], row["asr"]) == (1, 1, 1, 100.0)


def test_black_target_needs_the_lesion_flipped_not_the_background() -> None:
    """The clean prediction of a small lesion matches the all-black target on ~96% of the pixels: the
    paper's mIoU rule called that a success before any update. The clean-mode score counts only
    the lesion pixels the attack had to flip."""
    image, gt = small_lesion()
    black = torch.zeros_like(gt)
    clean = toy_victim()(image).prob > 0.5
    assert float(target_attainment(clean, black, clean)) == 0.0
    (record,) = run_attack(toy_victim(), image, black, Attack(), target="black", losses={"bce": bce}).records
    assert not record.set_aside
    assert record.trajectory[0] == 0.0  # unchanged prediction: nothing won
    assert record.success and record.steps == 3  # every lesion pixel flips at the third step
    assert record.trajectory[3] == 1.0


def test_target_attainment_counts_broken_pixels_against_the_attack() -> None:
    target = torch.zeros(1, 1, 2, 4)
    target[..., :2] = 1  # pixels 0, 1 (and 4, 5) should be foreground
    clean = torch.zeros_like(target, dtype=torch.bool)
    clean[..., 0] = True  # pixel 0 (and 4) already at the target
    pred = clean.clone()
    pred[..., 1] = True  # two pixels won (1 and 5) ...
    pred[..., 0] = False  # ... two broken (0 and 4)
    # must = {1, 5} (target fg, clean bg): both won; broken = {0, 4}: 2 / (2 + 2)
    assert float(target_attainment(pred, target, clean)) == pytest.approx(0.5)
    assert float(target_attainment(clean, clean.float(), clean)) == 1.0  # nothing to change


def test_an_image_already_at_its_target_is_set_aside() -> None:
    image, gt = small_lesion()
    clean = (toy_victim()(image).prob > 0.5).float()
    (record,) = run_attack(toy_victim(), image, clean, Attack(), target="random", losses={"bce": bce}).records
    assert record.set_aside and not record.success


def test_paper_mode_keeps_its_rule_and_counts_successes_at_the_first_record() -> None:
    image, gt = small_lesion()
    black = torch.zeros_like(gt)
    records = run_attack(toy_victim("paper"), image, black, Attack(mode="paper"), target="black",
                         losses={"bce": bce}).records
    assert records[0].success and records[0].steps == 1 and not records[0].set_aside  # the paper's verdict
    rows = summary_rows(records)
    assert rows[-1]["at_first"] == 1
    assert "1 of 1 successes at the first record" in summary_markdown(rows)


def test_pruned_losses_are_not_counted_as_failures() -> None:
    def rec(loss, success, steps, pruned=False):
        return dict(dataset="d", image_id="a", target="untargeted", loss=loss, success=success, steps=steps,
                    metric=0.1, pruned=pruned)

    rows = {row["loss"]: row for row in per_loss_table([rec("bce", True, 2), rec("dice", False, None, True)])}
    assert (rows["dice"]["images"], rows["dice"]["pruned"], rows["dice"]["asr"]) == (0, 1, None)
    assert (rows["bce"]["images"], rows["bce"]["asr"]) == (1, 100.0)


# ----------------------------------------------------------------------------- the real pipeline


def test_every_record_carries_its_real_pipeline_verdict() -> None:
    image, gt = staircase()
    (record,) = run_attack(toy_victim(), image, gt, Attack(), losses={"bce": bce}).records
    assert record.real_metric is not None and record.real_success is not None
    # the toy's sign steps move red by whole 1/255 levels from half-levels: 8-bit rounding keeps them
    assert record.real_success == record.success


class AtPoint52(torch.nn.Module):
    """Foreground iff red > 0.52: a boundary between two 8-bit levels (132.6/255)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 100.0 * (x[:, :1] - 0.52)


def test_the_real_pipeline_rounds_to_8_bits_and_resizes_as_the_loader() -> None:
    victim = Victim(AtPoint52(), 8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), fusion="clean")
    x = torch.full((1, 3, 16, 16), 0.52 - 0.05 / 255)  # 132.55/255: background as a float image ...
    assert bool((victim(x).prob < 0.5).all())
    real = victim.real_pipeline(x)  # ... but saved in 8 bits it is 133/255 > 0.52: foreground
    assert real.prob.shape == (1, 1, 16, 16) and bool((real.prob > 0.5).all())


def test_antialiased_front_end_reaches_every_pixel_of_a_large_image() -> None:
    """On an image 10x the network size, plain bilinear downscaling reads ~1% of the pixels (the
    gradient of the others is exactly zero); the antialiased resize of clean mode reads them all."""
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 1, 3, padding=1)
    x = torch.rand(1, 3, 320, 320)
    shares = {}
    for antialias in (False, True):
        victim = Victim(net, 32, fusion="clean", antialias=antialias)
        xi = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.softplus(victim(xi).logit).sum(), xi)
        shares[antialias] = float((grad.abs().sum(1) > 0).float().mean())
    assert shares[True] >= 0.99 and shares[False] < 0.1, shares


def test_a_float64_victim_gets_exact_normalisation_constants() -> None:
    victim = Victim(torch.nn.Identity(), 8).double()
    assert torch.equal(victim.mean.flatten(), torch.tensor(IMAGENET_MEAN, dtype=torch.float64))
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    expected = (x - torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1))
    torch.testing.assert_close(victim.preprocess(x) * victim.std, expected, rtol=0, atol=1e-15)


# ----------------------------------------------------------------------------- skipped pairs


def test_skipped_pairs_give_no_record_and_cost_nothing() -> None:
    image, gt = staircase()
    images = torch.cat([image, image])
    masks = torch.cat([gt, gt])
    result = run_attack(toy_victim("paper"), images, {"a": masks, "b": 1 - masks}, Attack(mode="paper"),
                        target="random", losses={"a": bce, "b": bce}, ids=["x", "y"],
                        skip={"a": [True, False]}, options=EngineOptions())
    assert [(r.image_id, r.loss) for r in result.records] == [("x", "b"), ("y", "a"), ("y", "b")]
