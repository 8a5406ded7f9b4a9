"""Segmentation metrics (docs/method.md): hand-worked examples, and a comparison with the ISIC challenge's
own scorer (``isic_challenge_scoring``) on random binary masks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from medis.metrics.segmentation import (
    ISIC_JACCARD_THRESHOLD,
    dice_per_image,
    iou_per_image,
    paper_miou,
    perturbation_norms,
    present_class_iou,
    ssim_psnr,
    target_score,
    thresholded_jaccard,
    two_class_miou,
    uniform,
)


def m(rows) -> torch.Tensor:
    """One mask as a (1, H, W) batch."""
    return torch.tensor(rows, dtype=torch.float32).unsqueeze(0)


def stack(*masks: torch.Tensor) -> torch.Tensor:
    return torch.cat(masks, 0)


# Hand example used throughout:
#   pred   = [[1, 1],      target = [[1, 0],
#             [0, 0]]                [0, 0]]
#   foreground: inter 1, union 2          -> IoU 1/2, Dice 2*1/(2+1) = 2/3
#   background: inter 2 (bottom row), union 3 -> IoU 2/3
#   two-class mean: (1/2 + 2/3) / 2 = 7/12 = 0.58333...
PRED_A = m([[1, 1], [0, 0]])
TARGET_A = m([[1, 0], [0, 0]])

WHITE = m([[1, 1], [1, 1]])
BLACK = m([[0, 0], [0, 0]])
WHITE_BUT_ONE = m([[1, 1], [1, 0]])  # 3 foreground pixels, 1 background
BLACK_BUT_ONE = m([[0, 0], [0, 1]])  # 1 foreground pixel, 3 background


# --------------------------------------------------------------------------------------------------
# IoU, Dice, thresholded Jaccard


def test_iou_and_dice_hand_example():
    assert iou_per_image(PRED_A, TARGET_A).item() == pytest.approx(0.5, abs=1e-6)
    assert dice_per_image(PRED_A, TARGET_A).item() == pytest.approx(2 / 3, abs=1e-6)


def test_iou_and_dice_batch_of_hand_cases():
    # 1x4 masks:
    #   p=1100 t=1010: inter 1, union 3 -> IoU 1/3; Dice 2*1/(2+2) = 1/2
    #   p=1111 t=1111: IoU 1, Dice 1
    #   p=0000 t=0000: both empty -> 1 (ISIC convention), Dice 1
    #   p=1000 t=0000: inter 0, union 1 -> 0; Dice 0/(1+0) = 0
    #   p=0000 t=0110: inter 0, union 2 -> 0; Dice 0
    #   p=1110 t=0111: inter 2, union 4 -> 1/2; Dice 2*2/(3+3) = 2/3
    pred = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0]])
    target = torch.tensor([[1, 0, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 1]])
    iou = iou_per_image(pred, target)
    dice = dice_per_image(pred, target)
    assert iou.shape == (6,) and dice.shape == (6,)
    assert iou.dtype == torch.float32 and dice.dtype == torch.float32
    torch.testing.assert_close(iou, torch.tensor([1 / 3, 1.0, 1.0, 0.0, 0.0, 0.5]), atol=1e-6, rtol=0)
    torch.testing.assert_close(dice, torch.tensor([0.5, 1.0, 1.0, 0.0, 0.0, 2 / 3]), atol=1e-6, rtol=0)


def test_empty_and_empty_score_one():
    empty = torch.zeros(3, 1, 5, 7)
    torch.testing.assert_close(iou_per_image(empty, empty), torch.ones(3))
    torch.testing.assert_close(dice_per_image(empty, empty), torch.ones(3))


def test_foreground_is_any_nonzero_value():
    # "foreground where nonzero": 0.3 and 1.0 are both foreground, so these masks are identical.
    pred = torch.tensor([[0.3, 0.0, 1.0, 0.0]])
    target = torch.tensor([[1.0, 0.0, 0.7, 0.0]])
    assert iou_per_image(pred, target).item() == pytest.approx(1.0, abs=1e-6)
    assert dice_per_image(pred, target).item() == pytest.approx(1.0, abs=1e-6)


def test_thresholded_jaccard_065_rule():
    assert ISIC_JACCARD_THRESHOLD == pytest.approx(0.65)
    iou = torch.tensor([0.0, 0.3, 0.6499, 0.65, 0.7, 1.0])
    expected = torch.tensor([0.0, 0.0, 0.0, 0.65, 0.7, 1.0])  # kept iff >= 0.65, else 0
    torch.testing.assert_close(thresholded_jaccard(iou), expected, atol=1e-7, rtol=0)
    # a custom threshold
    torch.testing.assert_close(thresholded_jaccard(iou, threshold=0.5),
                               torch.tensor([0.0, 0.0, 0.6499, 0.65, 0.7, 1.0]), atol=1e-7, rtol=0)


def test_thresholded_jaccard_of_an_iou_of_exactly_13_over_20():
    # 13 pixels in common, union 20 -> IoU = 13/20 = 0.65 exactly at the threshold: kept.
    pred = torch.zeros(1, 20)
    target = torch.zeros(1, 20)
    pred[0, :16] = 1  # pixels 0..15
    target[0, 3:20] = 1  # pixels 3..19 -> inter 3..15 = 13, union 0..19 = 20
    iou = iou_per_image(pred, target)
    assert iou.item() == pytest.approx(0.65, abs=1e-7)
    assert thresholded_jaccard(iou).item() == pytest.approx(0.65, abs=1e-7)
    # one fewer common pixel: 12/20 = 0.6 -> 0
    target[0, 3] = 0  # inter 4..15 = 12, union still 0..19 = 20
    assert thresholded_jaccard(iou_per_image(pred, target)).item() == 0.0


# --------------------------------------------------------------------------------------------------
# Two-class mIoU and the paper's rounding


def test_two_class_miou_hand_example():
    assert two_class_miou(PRED_A, TARGET_A).item() == pytest.approx(7 / 12, abs=1e-6)


def test_two_class_miou_class_absent_from_both_is_ignored():
    # Both empty: foreground absent from both -> only background counts: IoU 4/4 = 1 (not (0 + 1)/2).
    assert two_class_miou(BLACK, BLACK).item() == pytest.approx(1.0, abs=1e-6)
    # Both all-foreground: background absent from both -> foreground IoU 1.
    assert two_class_miou(WHITE, WHITE).item() == pytest.approx(1.0, abs=1e-6)
    # Larger all-foreground prediction vs all-foreground target
    ones = torch.ones(2, 1, 8, 8)
    torch.testing.assert_close(two_class_miou(ones, ones), torch.ones(2))


def test_two_class_miou_uniform_target_with_the_other_class_predicted():
    # Target all white, prediction has one background pixel:
    #   fg: inter 3, union 4 -> 3/4; bg: inter 0, union 1 -> 0; both present -> (3/4 + 0)/2 = 3/8
    assert two_class_miou(WHITE_BUT_ONE, WHITE).item() == pytest.approx(0.375, abs=1e-6)
    # Target all black, prediction one foreground pixel:
    #   fg: inter 0, union 1 -> 0; bg: inter 3, union 4 -> 3/4 -> 3/8
    assert two_class_miou(BLACK_BUT_ONE, BLACK).item() == pytest.approx(0.375, abs=1e-6)
    # All-white prediction against all-black target: fg 0/4, bg 0/4 -> 0
    assert two_class_miou(WHITE, BLACK).item() == pytest.approx(0.0, abs=1e-6)


def test_two_class_miou_nonsquare_hand_example():
    # 2x3: pred = 110/011, target = 100/011
    #   fg: inter {0,4,5} = 3, union {0,1,4,5} = 4 -> 3/4
    #   bg: pred bg {2,3}, target bg {1,2,3}: inter 2, union 3 -> 2/3
    #   mean (3/4 + 2/3)/2 = 17/24
    pred = m([[1, 1, 0], [0, 1, 1]])
    target = m([[1, 0, 0], [0, 1, 1]])
    assert two_class_miou(pred, target).item() == pytest.approx(17 / 24, abs=1e-6)


def test_two_class_miou_per_image_independence():
    preds = stack(PRED_A, WHITE, WHITE_BUT_ONE, BLACK, m([[1, 1], [0, 1]]))
    targets = stack(TARGET_A, WHITE, WHITE, BLACK, m([[1, 0], [0, 1]]))
    # last: fg inter 2, union 3 -> 2/3; bg inter 1, union 2 -> 1/2; mean 7/12
    expected = torch.tensor([7 / 12, 1.0, 0.375, 1.0, 7 / 12])
    out = two_class_miou(preds, targets)
    assert out.shape == (5,)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    # each image alone gives the same value as inside the batch, in any order
    for i in range(5):
        torch.testing.assert_close(two_class_miou(preds[i:i + 1], targets[i:i + 1]), expected[i:i + 1],
                                   atol=1e-6, rtol=0)
    perm = torch.tensor([4, 2, 0, 3, 1])
    torch.testing.assert_close(two_class_miou(preds[perm], targets[perm]), expected[perm], atol=1e-6, rtol=0)


def _reference_two_class_miou(p: np.ndarray, t: np.ndarray) -> float:
    """Straight from the definition: NaN-mean over the classes present in either mask."""
    ious = []
    for cls in (True, False):
        a, b = p == cls, t == cls
        union = np.logical_or(a, b).sum()
        if union:
            ious.append(np.logical_and(a, b).sum() / union)
    return float(np.mean(ious))


def test_two_class_miou_matches_reference_on_random_masks():
    rng = np.random.default_rng(0)
    preds, targets = [], []
    for _ in range(16):
        p = rng.random((9, 11)) < rng.random()
        t = rng.random((9, 11)) < rng.random()
        preds.append(p)
        targets.append(t)
    out = two_class_miou(torch.from_numpy(np.stack(preds)), torch.from_numpy(np.stack(targets)))
    expected = torch.tensor([_reference_two_class_miou(p, t) for p, t in zip(preds, targets)], dtype=torch.float32)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_paper_miou_rounds_to_three_decimals():
    # 7/12 = 0.58333... -> 0.583; 17/24 = 0.708333... -> 0.708; 3/8 = 0.375 stays
    pred = stack(PRED_A, WHITE_BUT_ONE)
    target = stack(TARGET_A, WHITE)
    torch.testing.assert_close(paper_miou(pred, target), torch.tensor([0.583, 0.375]), atol=1e-6, rtol=0)
    p2 = m([[1, 1, 0], [0, 1, 1]])
    t2 = m([[1, 0, 0], [0, 1, 1]])
    assert paper_miou(p2, t2).item() == pytest.approx(0.708, abs=1e-6)
    # 1x4: p=1100 t=1000: fg inter 1 union 2 -> 1/2; bg inter 2 union 3 -> 2/3; mean 7/12 -> 0.583
    out = paper_miou(torch.tensor([[1, 1, 0, 0]]), torch.tensor([[1, 0, 0, 0]])).item()
    assert out == pytest.approx(0.583, abs=1e-6)
    assert abs(out - 7 / 12) > 1e-4  # really rounded


# --------------------------------------------------------------------------------------------------
# Uniform targets, present-class IoU, the recorded score


def test_uniform():
    masks = stack(WHITE, BLACK, PRED_A, WHITE_BUT_ONE, BLACK_BUT_ONE)
    assert uniform(masks).tolist() == [True, True, False, False, False]
    assert uniform(masks).dtype == torch.bool


def test_present_class_iou():
    # all-white target, 3 of 4 predicted white: foreground IoU 3/4
    # all-black target, 1 of 4 predicted white: background IoU 3/4 (pred bg 3, target bg 4)
    # all-black target, all-black prediction: background IoU 1
    # all-white target, all-black prediction: foreground IoU 0/4 = 0
    # non-uniform target: foreground IoU (hand example: 1/2)
    pred = stack(WHITE_BUT_ONE, BLACK_BUT_ONE, BLACK, BLACK, PRED_A)
    target = stack(WHITE, BLACK, BLACK, WHITE, TARGET_A)
    torch.testing.assert_close(present_class_iou(pred, target), torch.tensor([0.75, 0.75, 1.0, 0.0, 0.5]),
                               atol=1e-6, rtol=0)


def test_target_score_paper_mode_without_doubling():
    pred = stack(PRED_A, WHITE_BUT_ONE, WHITE)
    target = stack(TARGET_A, WHITE, WHITE)
    # paper mIoU: 0.583, 3/8 = 0.375, 1.0 -- not doubled, even for the uniform targets
    torch.testing.assert_close(target_score(pred, target, mode="paper"), torch.tensor([0.583, 0.375, 1.0]),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(target_score(pred, target, mode="paper", double_uniform=False),
                               torch.tensor([0.583, 0.375, 1.0]), atol=1e-6, rtol=0)


def test_target_score_paper_mode_doubles_and_may_exceed_one():
    pred = stack(PRED_A, WHITE_BUT_ONE, WHITE, BLACK_BUT_ONE)
    target = stack(TARGET_A, WHITE, WHITE, BLACK)
    # 2 * 0.583 = 1.166; 2 * 0.375 = 0.75 (= the foreground IoU); 2 * 1 = 2.0; 2 * 0.375 = 0.75
    out = target_score(pred, target, mode="paper", double_uniform=True)
    torch.testing.assert_close(out, torch.tensor([1.166, 0.75, 2.0, 0.75]), atol=1e-6, rtol=0)
    # the headline case: all-white prediction vs all-white target -> 2.0
    assert target_score(WHITE, WHITE, mode="paper", double_uniform=True).item() == pytest.approx(2.0, abs=1e-6)


def test_target_score_clean_mode():
    # uniform references (white and black) use the present-class IoU, the others the two-class mIoU:
    #   white ref, 3/4 predicted white: fg IoU 3/4 (the two-class mIoU would be 3/8)
    #   black ref, 1/4 predicted white: bg IoU 3/4 (two-class mIoU 3/8)
    #   non-uniform ref (hand example): two-class mIoU 7/12, unrounded
    #   all-white vs all-white: 1; all-black vs all-black: 1
    pred = stack(WHITE_BUT_ONE, BLACK_BUT_ONE, PRED_A, WHITE, BLACK)
    target = stack(WHITE, BLACK, TARGET_A, WHITE, BLACK)
    expected = torch.tensor([0.75, 0.75, 7 / 12, 1.0, 1.0])
    torch.testing.assert_close(target_score(pred, target, mode="clean"), expected, atol=1e-6, rtol=0)
    # clean is the default mode, and it is never rounded nor doubled
    torch.testing.assert_close(target_score(pred, target), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(target_score(pred, target, mode="clean", double_uniform=True), expected,
                               atol=1e-6, rtol=0)
    # another non-uniform reference: 17/24 (see test_two_class_miou_nonsquare_hand_example)
    p6 = m([[1, 1, 0], [0, 1, 1]])
    t6 = m([[1, 0, 0], [0, 1, 1]])
    assert target_score(p6, t6, mode="clean").item() == pytest.approx(17 / 24, abs=1e-6)


def test_target_score_clean_all_white_prediction_on_white_and_black_targets():
    # all-white prediction: vs white target -> fg IoU 1; vs black target -> bg IoU 0/4 = 0
    out = target_score(stack(WHITE, WHITE), stack(WHITE, BLACK), mode="clean")
    torch.testing.assert_close(out, torch.tensor([1.0, 0.0]), atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------------
# Perturbation size and perceptual similarity


def test_perturbation_norms_hand_delta():
    clean = torch.full((2, 3, 2, 2), 0.5)
    adv = clean.clone()
    # image 0: delta 3/255 and -4/255 on two pixels -> L∞ 4/255, L2 sqrt(9 + 16)/255 = 5/255
    adv[0, 0, 0, 0] += 3 / 255
    adv[0, 2, 1, 1] -= 4 / 255
    # image 1: delta 0.1 on 4 pixels, -0.2 on one -> L∞ 0.2, L2 sqrt(4 * 0.01 + 0.04) = sqrt(0.08)
    adv[1, 1] += 0.1
    adv[1, 0, 0, 1] -= 0.2
    out = perturbation_norms(adv, clean)
    assert set(out) == {"linf", "l2", "linf_255", "l2_255"}
    torch.testing.assert_close(out["linf"], torch.tensor([4 / 255, 0.2]), atol=1e-6, rtol=0)
    torch.testing.assert_close(out["l2"], torch.tensor([5 / 255, math.sqrt(0.08)]), atol=1e-6, rtol=0)
    torch.testing.assert_close(out["linf_255"], torch.tensor([4.0, 0.2 * 255]), atol=1e-4, rtol=0)
    torch.testing.assert_close(out["l2_255"], torch.tensor([5.0, math.sqrt(0.08) * 255]), atol=1e-4, rtol=0)


def test_perturbation_norms_zero_delta():
    x = torch.rand(3, 1, 4, 4)
    out = perturbation_norms(x, x.clone())
    for key in ("linf", "l2", "linf_255", "l2_255"):
        torch.testing.assert_close(out[key], torch.zeros(3))


def test_ssim_psnr_identical_images():
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    ssim, psnr = ssim_psnr(x, x.clone())
    assert ssim.shape == (2,) and psnr.shape == (2,)
    torch.testing.assert_close(ssim, torch.ones(2), atol=1e-5, rtol=0)
    assert torch.isinf(psnr).all() and (psnr > 0).all()


def test_ssim_psnr_constant_shift():
    # MSE = 0.01^2 = 1e-4 -> PSNR = 10 log10(1 / 1e-4) = 40 dB; shift 0.1 -> MSE 1e-2 -> 20 dB
    clean = torch.rand(3, 3, 24, 24, generator=torch.Generator().manual_seed(1)) * 0.85
    adv = clean.clone()
    adv[0] += 0.01
    adv[2] += 0.1
    ssim, psnr = ssim_psnr(adv, clean)
    assert psnr[0].item() == pytest.approx(40.0, abs=1e-3)
    assert torch.isinf(psnr[1])  # image 1 is unchanged: per-image PSNR, not a batch mean
    assert psnr[2].item() == pytest.approx(20.0, abs=1e-3)
    assert ssim[1].item() == pytest.approx(1.0, abs=1e-5)
    assert ssim[0].item() < 1.0 - 1e-6 and ssim[2].item() < ssim[0].item()


# --------------------------------------------------------------------------------------------------
# The ISIC challenge's own scorer (isic_challenge_scoring 5.6.0): per-image Jaccard, thresholded
# Jaccard and Dice from its confusion matrix (isic_challenge_scoring.confusion / .metrics), and the
# macro average of SegmentationScore, which thresholds 0..255 images at > 128.

# a dev dependency that `make setup` always installs: a missing scorer is a failure, not a skip
import isic_challenge_scoring.confusion as isic_confusion  # noqa: E402
import isic_challenge_scoring.load_image as isic_load_image  # noqa: E402
import isic_challenge_scoring.metrics as isic_metrics  # noqa: E402
import isic_challenge_scoring.segmentation as isic_segmentation  # noqa: E402


def _isic_cases() -> list[tuple[np.ndarray, np.ndarray]]:
    """~20 (truth, prediction) pairs of uint8 images in {0, 255}, of various sizes and edge cases."""
    rng = np.random.default_rng(2023)
    cases = []
    for h, w in [(8, 8), (16, 12), (5, 31), (32, 32), (1, 50), (40, 17), (13, 13), (64, 48), (3, 3), (20, 20),
                 (7, 100), (27, 9), (50, 50), (11, 6)]:
        truth = rng.random((h, w)) < rng.uniform(0.05, 0.9)
        # predictions near the truth (so that some Jaccards pass 0.65) or independent
        if rng.random() < 0.6:
            pred = truth ^ (rng.random((h, w)) < rng.uniform(0.0, 0.2))
        else:
            pred = rng.random((h, w)) < rng.uniform(0.05, 0.9)
        cases.append((truth, pred))
    empty = np.zeros((10, 12), bool)
    some = empty.copy()
    some[2:4, 3:7] = True
    full = np.ones((9, 9), bool)
    exact = np.zeros((4, 5), bool)
    exact_pred = exact.copy()
    exact.reshape(-1)[3:20] = True
    exact_pred.reshape(-1)[:16] = True  # IoU 13/20 = 0.65 exactly
    cases += [
        (empty, empty),  # empty truth, empty prediction
        (empty, some),  # empty truth, non-empty prediction
        (some, empty),  # non-empty truth, empty prediction
        (full, full),
        (full, ~full),
        (exact, exact_pred),
    ]
    return [(t.astype(np.uint8) * 255, p.astype(np.uint8) * 255) for t, p in cases]


ISIC_CASES = _isic_cases()


def _ours(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    t = torch.from_numpy(truth > 128).unsqueeze(0)
    p = torch.from_numpy(pred > 128).unsqueeze(0)
    iou = iou_per_image(p, t)
    return iou.item(), dice_per_image(p, t).item(), thresholded_jaccard(iou).item()


def _scorer(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    cm = isic_confusion.create_binary_confusion_matrix(
        truth_binary_values=truth > 128, prediction_binary_values=pred > 128, name="ISIC_0000000")
    return (float(isic_metrics.binary_jaccard(cm)), float(isic_metrics.binary_dice(cm)),
            float(isic_metrics.binary_threshold_jaccard(cm, threshold=0.65)))


def test_isic_cases_cover_the_edge_cases():
    jaccards = [_scorer(t, p)[0] for t, p in ISIC_CASES]
    assert len(ISIC_CASES) == 20
    assert any(j >= 0.65 for j in jaccards) and any(0 < j < 0.65 for j in jaccards)
    assert any(j == 0.0 for j in jaccards) and any(j == 1.0 for j in jaccards)


@pytest.mark.parametrize("index", range(len(ISIC_CASES)))
def test_matches_isic_scorer_per_image(index):
    truth, pred = ISIC_CASES[index]
    ours = _ours(truth, pred)
    theirs = _scorer(truth, pred)
    assert ours == pytest.approx(theirs, abs=1e-6), f"(jaccard, dice, thresholded) ours {ours} vs ISIC {theirs}"


def test_matches_isic_scorer_on_empty_truth_conventions():
    empty = np.zeros((6, 6), np.uint8)
    some = empty.copy()
    some[1, 1] = 255
    # both empty: both score a perfect 1 (ISIC: "ill-defined ... score that as a perfect answer")
    assert _scorer(empty, empty) == pytest.approx((1.0, 1.0, 1.0))
    assert _ours(empty, empty) == pytest.approx((1.0, 1.0, 1.0))
    # empty truth, one false positive: 0 everywhere
    assert _scorer(empty, some) == pytest.approx((0.0, 0.0, 0.0))
    assert _ours(empty, some) == pytest.approx((0.0, 0.0, 0.0))


@pytest.mark.filterwarnings("ignore:The inplace keyword:DeprecationWarning")  # inside the scorer, pandas 3
def test_matches_isic_segmentation_score_macro_average():
    pairs = []
    for i, (truth, pred) in enumerate(ISIC_CASES):
        pair = isic_load_image.ImagePair(truth_file=Path(f"ISIC_{i:07d}_segmentation.png"))
        pair.truth_image = truth
        pair.prediction_image = pred
        pair.image_id = f"ISIC_{i:07d}"
        pairs.append(pair)
    score = isic_segmentation.SegmentationScore(pairs)
    ours = np.array([_ours(t, p) for t, p in ISIC_CASES])
    assert score.macro_average["jaccard"] == pytest.approx(ours[:, 0].mean(), abs=1e-6)
    assert score.macro_average["dice"] == pytest.approx(ours[:, 1].mean(), abs=1e-6)
    assert score.macro_average["threshold_jaccard"] == pytest.approx(ours[:, 2].mean(), abs=1e-6)
    assert score.overall == pytest.approx(ours[:, 2].mean(), abs=1e-6)
