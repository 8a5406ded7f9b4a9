"""The batched engine: bookkeeping of both modes on a toy victim whose per-step score is known,
compaction, chunking, fusion_only, mixed sizes, frozen weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medis.attacks import Attack, Budget, EngineOptions, run_attack
from medis.attacks.engine.replicas import Replicas, replica_losses, start_seed
from medis.attacks.rules.pgd import PGD
from medis.attacks.targets import target_kind
from medis.errors import ConfigError
from medis.losses import LossContext
from medis.models.frontend import Victim
from medis.models.pranet import pranet_lite
from medis.results import fusion

SIZE = 16


class Threshold(nn.Module):
    """Logit = 10·(channel 0 − 0.5): the pixel is foreground iff its red value exceeds 0.5."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (x[:, :1] - 0.5)


def toy_victim(fusion_mode: str = "clean") -> Victim:
    return Victim(Threshold(), SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), fusion=fusion_mode)


def bce(out, reference, context):
    """A loss whose input-gradient sign is exactly ±1 on channel 0 (ascending pushes each pixel
    away from its reference class)."""
    p = torch.sigmoid(out.side_logits[0])
    return F.binary_cross_entropy(p, reference, reduction="none").flatten(1).mean(1)


def staircase(flip_rows: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground truth: left half foreground. Pixel values sit 0.5 ± (n − 0.5)/255 so that a pixel of
    row r flips class after exactly n = r + 1 sign steps of 1/255 (n = 3 everywhere if not flip_rows).
    After k steps rows 0..k−1 are flipped, and the two-class mIoU is (16 − k)/(16 + k)."""
    gt = torch.zeros(1, 1, SIZE, SIZE)
    gt[..., : SIZE // 2] = 1
    n = (torch.arange(SIZE).float() + 1).view(SIZE, 1).expand(SIZE, SIZE) if flip_rows else torch.full((SIZE, SIZE), 3.0)
    offset = (n - 0.5) / 255.0
    red = torch.where(gt[0, 0] > 0, 0.5 + offset, 0.5 - offset)
    image = torch.stack([red, torch.full_like(red, 0.3), torch.full_like(red, 0.6)]).unsqueeze(0)
    return image, gt


def expected_miou(k: int) -> float:
    return (16 - k) / (16 + k)


def test_clean_bookkeeping_records_after_every_update() -> None:
    image, gt = staircase()
    result = run_attack(toy_victim(), image, gt, Attack(mode="clean"), losses={"bce": bce})
    (record,) = result.records
    assert record["trajectory"] == pytest.approx([expected_miou(k) for k in range(11)], abs=1e-6)
    assert record["success"] and record["steps"] == 6  # first k with (16-k)/(16+k) <= 0.5
    assert record["metric"] == pytest.approx(expected_miou(6))
    assert record["linf_255"] == pytest.approx(6.0, abs=1e-3)  # the chosen image is the one at the success
    # no stop (min score 6/26 > 0.2): 11 records, plus the clean image's own pass (clean mode)
    assert result.forward_replicas == 12 and result.backward_replicas == 10
    assert record["forwards"] == 12 and record["clean_metric"] == pytest.approx(1.0) and not record["set_aside"]


def test_paper_bookkeeping_records_before_each_update() -> None:
    image, gt = staircase()
    result = run_attack(toy_victim("paper"), image, gt, Attack(mode="paper"), losses={"bce": bce})
    (record,) = result.records
    # record k (1-based) describes the image after k-1 updates; 3-decimal rounding; 10 records
    assert record["trajectory"] == pytest.approx([round(expected_miou(k), 3) for k in range(10)], abs=1e-6)
    assert record["success"] and record["steps"] == 7
    assert result.forward_replicas == 10 and result.backward_replicas == 9  # the 10th update is never evaluated


@pytest.mark.parametrize("mode, steps", [("clean", 3), ("paper", 4)])
def test_stop_rule_ends_the_replica(mode: str, steps: int) -> None:
    image, gt = staircase(flip_rows=False)  # every pixel flips at step 3: score 1, 1, 1, 0
    result = run_attack(toy_victim(mode), image, gt, Attack(mode=mode), losses={"bce": bce})
    (record,) = result.records
    assert record["trajectory"] == (1.0, 1.0, 1.0, 0.0)
    assert record["steps"] == steps
    # the backward of the stopping record runs (deciding to skip it would cost a host read) and is discarded;
    # clean mode adds the clean image's pass
    assert result.forward_replicas == 4 + (mode == "clean") and result.backward_replicas == 4


def test_targeted_descends_toward_the_target() -> None:
    image, gt = staircase(flip_rows=False)
    target = 1 - gt
    (record,) = run_attack(toy_victim(), image, target, Attack(), target="inverted", losses={"bce": bce}).records
    assert record["trajectory"] == (0.0, 0.0, 0.0, 1.0)  # stop at >= 0.95
    assert record["success"] and record["steps"] == 3 and record["target"] == "inverted"


def test_paper_doubles_uniform_targets_for_success_only() -> None:
    image, gt = staircase(flip_rows=False)
    white = torch.ones_like(gt)
    (record,) = run_attack(toy_victim("paper"), image, white, Attack(mode="paper"), target="white",
                           losses={"bce": bce}).records
    # half the image is foreground: raw mIoU = fg IoU / 2 = 0.25 (bg IoU 0); x2 = 0.5 >= 0.45 at once
    assert record["trajectory"][0] == pytest.approx(0.25)
    assert record["success"] and record["steps"] == 1 and record["metric"] == pytest.approx(0.5)


def _random_setup(seed: int, images: int = 3, size: int = 48):
    """A random pranet_lite and random images; the "ground truth" is the model's own clean
    prediction, so the clean score is 1 and losses succeed (mIoU <= 0.9) at different steps."""
    torch.manual_seed(seed)
    victim = Victim(pranet_lite(), 64, fusion="paper")
    x = torch.rand(images, 3, size, size)
    with torch.no_grad():
        gt = victim.eval()(x).mask
    return victim, x, gt


THRESHOLDS = Attack(budget={"steps": 5}, criteria={"success": 0.9, "stop": 0.6})


def _metric_table(result):
    return [(r["image_id"], r["loss"], r["success"], r["steps"], round(r["metric"], 3)) for r in result.records]


def test_compaction_and_chunking_leave_records_unchanged() -> None:
    victim, x, gt = _random_setup(1, images=4)
    losses = ["bce_dice", "lovasz", "dice"]
    base = run_attack(victim, x, gt, THRESHOLDS, losses=losses)
    assert any(len(r["trajectory"]) < 6 for r in base.records)  # some replicas stopped early
    variants = [EngineOptions(compaction=False), EngineOptions(max_batch=2)]
    for options in variants:
        other = run_attack(victim, x, gt, THRESHOLDS, losses=losses, options=options)
        for a, b in zip(base.records, other.records):
            assert (a["image_id"], a["loss"]) == (b["image_id"], b["loss"])
            assert a["trajectory"] == pytest.approx(b["trajectory"], abs=2e-3)
    no_compaction = run_attack(victim, x, gt, THRESHOLDS, losses=losses, options=variants[0])
    assert base.forward_replicas <= no_compaction.forward_replicas


@pytest.mark.parametrize("seed", [1, 2])
def test_fusion_only_keeps_the_fused_table(seed: int) -> None:
    victim, x, gt = _random_setup(seed, images=4)
    losses = ["bce", "dice", "lovasz", "focal"]
    full = run_attack(victim, x, gt, THRESHOLDS, losses=losses)
    pruned = run_attack(victim, x, gt, THRESHOLDS, losses=losses, options=EngineOptions(fusion_only=True))
    assert len({r["steps"] for r in full.records}) > 1  # losses succeed at different steps
    assert any(r["pruned"] for r in pruned.records)
    a, b = fusion.fuse(full.records)[0], fusion.fuse(pruned.records)[0]
    for key in ("images", "successes", "asr", "distortion", "chosen"):
        assert a[key] == pytest.approx(b[key]) if key != "chosen" else a[key] == b[key], key
    assert pruned.forward_replicas <= full.forward_replicas


def test_mixed_sizes_ids_and_per_loss_references() -> None:
    torch.manual_seed(3)
    victim = Victim(pranet_lite(), 64)
    images = [torch.rand(3, 40, 56), torch.rand(3, 64, 64), torch.rand(3, 40, 56)]
    masks = [(torch.rand(1, *img.shape[1:]) > 0.5).float() for img in images]
    refs = {"bce": masks, "dice": [1 - m for m in masks]}
    result = run_attack(victim, images, refs, Attack(budget={"steps": 2}), target="random", losses=["bce", "dice"],
                        ids=["a", "b", "c"], dataset="toy")
    assert [(r["image_id"], r["loss"]) for r in result.records] == [
        ("a", "bce"), ("a", "dice"), ("b", "bce"), ("b", "dice"), ("c", "bce"), ("c", "dice")]
    assert all(r["dataset"] == "toy" and r["target"] == "random" for r in result.records)
    with pytest.raises(ConfigError, match="lack loss"):
        run_attack(victim, images, {"bce": masks}, losses=["bce", "dice"])


def test_weights_frozen_during_and_restored_after() -> None:
    victim = toy_victim()
    victim.train()
    seen = {}

    def spy(out, reference, context):
        seen["training"] = victim.model.training
        seen["requires_grad"] = victim.model.scale.requires_grad
        return bce(out, reference, context)

    image, gt = staircase()
    run_attack(victim, image, gt, Attack(budget={"steps": 2}), losses={"spy": spy})
    assert seen == {"training": False, "requires_grad": False}
    assert victim.model.training and victim.model.scale.requires_grad and victim.model.scale.grad is None


def test_budget_and_keep_images() -> None:
    image, gt = staircase()
    attack = Attack(rule=PGD(step_size=1 / 255), budget={"eps": 4 / 255})
    result = run_attack(toy_victim(), image, gt, attack, losses={"bce": bce}, options=EngineOptions(keep_images=True),
                        ids=["img"])
    (record,) = result.records
    assert not record["success"]  # 4 steps flip 4 rows: mIoU 12/20 = 0.6 > 0.5
    assert record["linf_255"] == pytest.approx(4.0, abs=1e-3) and record["eps"] == pytest.approx(4 / 255)
    adversarial = result.adversarial[("img", "bce")]
    assert adversarial.shape == (3, SIZE, SIZE) and float((adversarial - image[0]).abs().max()) <= 4 / 255 + 1e-6


def test_paper_mode_needs_paper_fusion() -> None:
    image, gt = staircase()
    with pytest.raises(ConfigError, match="model.fusion=paper"):
        run_attack(toy_victim("clean"), image, gt, Attack(mode="paper"), losses={"bce": bce})


def test_random_starts_are_drawn_per_image_loss_and_seed_whatever_the_batch() -> None:
    """A replica's random start comes from its own generator, seeded by (seed, image id, loss): the
    same image gets the same start alone or beside others (paper-mode record 0, before any update,
    of a replica that succeeds at once keeps its start as the chosen image)."""
    torch.manual_seed(0)
    images = torch.rand(3, 3, SIZE, SIZE)
    gt = torch.zeros(3, 1, SIZE, SIZE)
    budget = Budget(steps=2, eps=8 / 255, random_start=True)
    attack = Attack(mode="paper", rule=PGD(), budget=budget, criteria={"success": 1.0})
    losses = {"a": bce, "b": bce}
    options = EngineOptions(keep_images=True)
    result = run_attack(toy_victim("paper"), images, gt, attack, losses=losses, options=options, seed=7,
                        ids=["x", "y", "z"])
    for b, image_id in enumerate(("x", "y", "z")):
        for name in losses:
            generator = torch.Generator().manual_seed(start_seed(7, image_id, name))
            assert torch.equal(result.adversarial[(image_id, name)], budget.start(images[b:b + 1], generator)[0])
    alone = run_attack(toy_victim("paper"), images[1:2], gt[1:2], attack, losses=losses, options=options, seed=7,
                       ids=["y"])
    assert torch.equal(alone.adversarial[("y", "b")], result.adversarial[("y", "b")])
    assert not torch.equal(result.adversarial[("y", "a")], result.adversarial[("y", "b")])  # per loss too
    assert all(r["success"] and r["steps"] == 1 for r in result.records)


def test_replica_losses_need_loss_major_rows() -> None:
    victim = toy_victim()
    out = victim(torch.rand(4, 3, SIZE, SIZE))
    reference = torch.zeros(4, 1, SIZE, SIZE)
    losses = {"a": bce, "b": lambda o, r, c: 10 + bce(o, r, c)}
    values = replica_losses(out, reference, torch.tensor([0, 0, 1, 1]), losses, LossContext())
    assert (values[:2] < 10).all() and (values[2:] > 10).all()
    with pytest.raises(ValueError, match="non-decreasing"):
        replica_losses(out, reference, torch.tensor([0, 1, 0, 1]), losses, LossContext())


@pytest.mark.parametrize(("batch", "n_losses"), [(1, 1), (2, 3), (3, 2)])
def test_the_clean_image_of_any_rows_is_the_replicas_own(batch: int, n_losses: int) -> None:
    """Replicas.clean: every slice (negative, empty, strided, across loss blocks), a device index and
    the default give image_of's images (loss-major: replica r is image r mod B)."""
    images = torch.rand(batch, 3, 4, 4)
    count = batch * n_losses
    state = Replicas(images, torch.zeros(count, 1, 4, 4), [f"l{k}" for k in range(n_losses)], Attack(),
                     target_kind("untargeted"), 0, [str(i) for i in range(batch)], 3)
    expected = images[torch.arange(count) % batch]
    for start in range(-count, count + 1):
        for stop in range(-count, count + 1):
            for step in (None, 2):
                rows = slice(start, stop, step)
                assert torch.equal(state.clean(rows), expected[rows]), rows
    index = torch.tensor([count - 1, 0])
    assert torch.equal(state.clean(index), expected[index]) and torch.equal(state.clean(), expected)
