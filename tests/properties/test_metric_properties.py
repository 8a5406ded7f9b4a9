"""Property-based tests of the segmentation metrics of docs/method.md (``medis.metrics``).

Random batches of binary masks (uniform, single-pixel and random ones, foreground encoded by any
nonzero value), checked against a straightforward per-image numpy computation and against the
algebraic properties the metrics must have.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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

PROFILE = settings(max_examples=60, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow])

MASK_KINDS = ("zeros", "ones", "one_pixel", "one_hole", "random", "copy", "complement")
ATOL = 1e-6


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread (a parallel region waits on a loaded machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _mask(kind: str, h: int, w: int, rng: np.random.Generator, other: np.ndarray | None) -> np.ndarray:
    if kind == "zeros":
        return np.zeros((h, w), bool)
    if kind == "ones":
        return np.ones((h, w), bool)
    if kind in ("one_pixel", "one_hole"):
        m = np.zeros((h, w), bool)
        m[rng.integers(h), rng.integers(w)] = True
        return m if kind == "one_pixel" else ~m
    if kind == "copy" and other is not None:
        return other.copy()
    if kind == "complement" and other is not None:
        return ~other
    return rng.random((h, w)) < rng.random()


@st.composite
def mask_pairs(draw):
    """(pred, target) as numpy bool arrays (B, H, W); pred kinds may copy or complement target."""
    b = draw(st.integers(1, 4))
    h = draw(st.integers(1, 24))
    w = draw(st.integers(1, 24))
    seed = draw(st.integers(0, 2**32 - 1))
    t_kinds = draw(st.lists(st.sampled_from(MASK_KINDS[:5]), min_size=b, max_size=b))
    p_kinds = draw(st.lists(st.sampled_from(MASK_KINDS), min_size=b, max_size=b))
    rng = np.random.default_rng(seed)
    targets = [_mask(k, h, w, rng, None) for k in t_kinds]
    preds = [_mask(k, h, w, rng, t) for k, t in zip(p_kinds, targets)]
    return np.stack(preds), np.stack(targets)


def encode(mask: np.ndarray, seed: int, layout: str) -> torch.Tensor:
    """The bool mask as a tensor whose foreground is ANY nonzero value (negative ones included),
    in one of the layouts the metrics accept ((B,1,H,W) float, (B,H,W) uint8, (B,H,W) bool)."""
    if layout == "bool":
        return torch.from_numpy(mask.copy())
    if layout == "uint8":
        rng = np.random.default_rng(seed)
        return torch.from_numpy((mask * rng.integers(1, 256, mask.shape)).astype(np.uint8))
    rng = np.random.default_rng(seed)
    values = rng.choice([-3.5, -1.0, 1e-3, 0.5, 1.0, 255.0], size=mask.shape)
    return torch.from_numpy((mask * values).astype(np.float32)).unsqueeze(1)


# ---------------------------------------------------------------------------------- numpy references


def np_iou(p: np.ndarray, t: np.ndarray) -> float:
    union = np.logical_or(p, t).sum()
    return 1.0 if union == 0 else np.logical_and(p, t).sum() / union


def np_dice(p: np.ndarray, t: np.ndarray) -> float:
    total = p.sum() + t.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(p, t).sum() / total


def np_two_class(p: np.ndarray, t: np.ndarray) -> float:
    ious = []
    for cls in (True, False):
        a, b = p == cls, t == cls
        union = np.logical_or(a, b).sum()
        if union:
            ious.append(np.logical_and(a, b).sum() / union)
    return float(np.mean(ious))


def np_present_class(p: np.ndarray, t: np.ndarray) -> float:
    return np_iou(~p, ~t) if not t.any() else np_iou(p, t)


def per_image(fn, preds: np.ndarray, targets: np.ndarray) -> torch.Tensor:
    return torch.tensor([fn(p, t) for p, t in zip(preds, targets)], dtype=torch.float32)


# ---------------------------------------------------------------------------------- properties


@PROFILE
@given(pair=mask_pairs(), seed=st.integers(0, 2**32 - 1),
       layout=st.sampled_from(("float", "uint8", "bool")))
def test_batched_metrics_match_per_image_numpy(pair, seed: int, layout: str) -> None:
    """Each batched metric equals a per-image numpy computation from its definition, whatever
    nonzero value or layout encodes the foreground; all lie in [0, 1], never NaN."""
    preds, targets = pair
    p, t = encode(preds, seed, layout), encode(targets, seed + 1, layout)
    refs = {
        "iou": (iou_per_image, np_iou),
        "dice": (dice_per_image, np_dice),
        "two_class_miou": (two_class_miou, np_two_class),
        "present_class_iou": (present_class_iou, np_present_class),
    }
    for name, (fn, ref) in refs.items():
        got = fn(p, t)
        assert got.shape == (preds.shape[0],) and got.dtype == torch.float32, name
        assert not torch.isnan(got).any(), name
        assert ((got >= 0) & (got <= 1)).all(), (name, got)
        torch.testing.assert_close(got, per_image(ref, preds, targets), atol=ATOL, rtol=0, msg=name)
    want_uniform = torch.tensor([bool(t_.all() or not t_.any()) for t_ in targets])
    assert torch.equal(uniform(t), want_uniform)


@PROFILE
@given(pair=mask_pairs())
def test_paper_miou_is_the_two_class_miou_rounded_to_3_decimals(pair) -> None:
    preds, targets = pair
    p, t = torch.from_numpy(preds), torch.from_numpy(targets)
    exact = two_class_miou(p, t)
    paper = paper_miou(p, t)
    assert ((paper >= 0) & (paper <= 1)).all()
    assert ((paper - exact).abs() <= 5e-4 + ATOL).all()
    thousandths = paper.double() * 1000
    assert ((thousandths - thousandths.round()).abs() < 1e-3).all()
    # Everywhere, ties included, it is NumPy's rounding of the float64 value (the notebooks' arithmetic).
    for value, a, b in zip(paper.tolist(), preds, targets):
        assert abs(value - float(np.round(np.float64(np_two_class(a, b)), 3))) <= ATOL, value


@PROFILE
@given(pair=mask_pairs())
def test_symmetry_and_class_swap(pair) -> None:
    """IoU, Dice, both mIoUs are symmetric; the two-class mIoU (and the present-class IoU of a
    uniform target) does not change when foreground and background swap."""
    preds, targets = pair
    p, t = torch.from_numpy(preds), torch.from_numpy(targets)
    for fn in (iou_per_image, dice_per_image, two_class_miou, paper_miou):
        torch.testing.assert_close(fn(p, t), fn(t, p), atol=0, rtol=0, msg=fn.__name__)
    torch.testing.assert_close(two_class_miou(~p, ~t), two_class_miou(p, t), atol=ATOL, rtol=0)
    uni = uniform(t)
    torch.testing.assert_close(present_class_iou(~p, ~t)[uni], present_class_iou(p, t)[uni], atol=ATOL, rtol=0)


@PROFILE
@given(pair=mask_pairs())
def test_identical_masks_score_one(pair) -> None:
    _, targets = pair
    t = torch.from_numpy(targets)
    same = t.clone()
    ones = torch.ones(t.shape[0])
    for fn in (iou_per_image, dice_per_image, two_class_miou, paper_miou, present_class_iou):
        torch.testing.assert_close(fn(same, t), ones, atol=0, rtol=0, msg=fn.__name__)
    torch.testing.assert_close(thresholded_jaccard(iou_per_image(same, t)), ones, atol=0, rtol=0)
    torch.testing.assert_close(target_score(same, t, "clean"), ones, atol=0, rtol=0)
    torch.testing.assert_close(target_score(same, t, "paper"), ones, atol=0, rtol=0)
    torch.testing.assert_close(target_score(same, t, "paper", double_uniform=True), 2 * ones, atol=0, rtol=0)


@PROFILE
@given(pair=mask_pairs())
def test_dice_is_a_function_of_iou(pair) -> None:
    """Dice = 2·IoU / (1 + IoU) per image (the empty/empty convention 1 = 2·1/2 included)."""
    preds, targets = pair
    p, t = torch.from_numpy(preds), torch.from_numpy(targets)
    iou = iou_per_image(p, t).double()
    torch.testing.assert_close(dice_per_image(p, t).double(), 2 * iou / (1 + iou), atol=ATOL, rtol=0)
    assert (dice_per_image(p, t) >= iou_per_image(p, t) - ATOL).all()


@PROFILE
@given(pair=mask_pairs(), threshold=st.sampled_from((ISIC_JACCARD_THRESHOLD, 0.0, 0.5, 1.0)))
def test_thresholded_jaccard_keeps_iou_or_zero(pair, threshold: float) -> None:
    preds, targets = pair
    iou = iou_per_image(torch.from_numpy(preds), torch.from_numpy(targets))
    got = thresholded_jaccard(iou, threshold)
    assert torch.equal(got, torch.where(iou >= threshold, iou, torch.zeros_like(iou)))
    assert ((got >= 0) & (got <= 1)).all()
    assert (got <= iou).all()


@PROFILE
@given(pair=mask_pairs())
def test_target_score_modes(pair) -> None:
    """clean: present-class IoU on uniform targets, two-class mIoU elsewhere, in [0, 1];
    paper: the rounded mIoU, doubled (up to 2) only when asked."""
    preds, targets = pair
    p, t = torch.from_numpy(preds), torch.from_numpy(targets)
    clean = target_score(p, t, "clean")
    assert ((clean >= 0) & (clean <= 1)).all()
    want = torch.tensor([np_present_class(a, b) if (b.all() or not b.any()) else np_two_class(a, b)
                         for a, b in zip(preds, targets)], dtype=torch.float32)
    torch.testing.assert_close(clean, want, atol=ATOL, rtol=0)
    torch.testing.assert_close(target_score(p, t, "paper"), paper_miou(p, t), atol=0, rtol=0)
    doubled = target_score(p, t, "paper", double_uniform=True)
    torch.testing.assert_close(doubled, 2 * paper_miou(p, t), atol=0, rtol=0)
    assert ((doubled >= 0) & (doubled <= 2)).all()


@PROFILE
@given(pair=mask_pairs(), perm_seed=st.integers(0, 2**32 - 1))
def test_per_image_independence_and_batch_order(pair, perm_seed: int) -> None:
    preds, targets = pair
    p, t = torch.from_numpy(preds), torch.from_numpy(targets)
    perm = torch.from_numpy(np.random.default_rng(perm_seed).permutation(p.shape[0]))
    for fn in (iou_per_image, dice_per_image, two_class_miou, paper_miou, present_class_iou):
        full = fn(p, t)
        torch.testing.assert_close(fn(p[perm], t[perm]), full[perm], atol=0, rtol=0, msg=fn.__name__)
        for i in range(p.shape[0]):
            torch.testing.assert_close(fn(p[i:i + 1], t[i:i + 1]), full[i:i + 1], atol=0, rtol=0)


# ---------------------------------------------------------------------------------- perturbation size


@st.composite
def image_pairs(draw, min_side: int = 1):
    b = draw(st.integers(1, 4))
    c = draw(st.sampled_from((1, 3)))
    h = draw(st.integers(min_side, 24))
    w = draw(st.integers(min_side, 24))
    seed = draw(st.integers(0, 2**31 - 1))
    budget = draw(st.sampled_from((0.0, 1 / 255, 8 / 255, 0.5, 1.0)))
    sparse = draw(st.booleans())
    gen = torch.Generator().manual_seed(seed)
    clean = torch.rand(b, c, h, w, generator=gen)
    delta = (torch.rand(b, c, h, w, generator=gen) * 2 - 1) * budget
    if sparse:
        delta = delta * (torch.rand(b, c, h, w, generator=gen) < 0.05)
    adv = (clean + delta).clamp(0, 1)
    return adv, clean


@PROFILE
@given(pair=image_pairs())
def test_perturbation_norms_properties(pair) -> None:
    adv, clean = pair
    out = perturbation_norms(adv, clean)
    b = adv.shape[0]
    delta = (adv - clean).reshape(b, -1).double().numpy()
    n = delta.shape[1]
    for key in ("linf", "l2", "linf_255", "l2_255"):
        assert out[key].shape == (b,) and torch.isfinite(out[key]).all(), key
        assert (out[key] >= 0).all(), key
    linf, l2 = out["linf"].double(), out["l2"].double()
    max_abs = torch.from_numpy(np.abs(delta).max(1))
    assert (linf <= max_abs + 1e-7).all()
    torch.testing.assert_close(linf, max_abs, atol=1e-7, rtol=0)
    torch.testing.assert_close(l2, torch.from_numpy(np.sqrt((delta ** 2).sum(1))), atol=1e-6, rtol=1e-5)
    assert (l2 >= linf * (1 - 1e-6)).all()
    assert (l2 <= linf * math.sqrt(n) * (1 + 1e-6) + 1e-7).all()
    torch.testing.assert_close(out["linf_255"], out["linf"] * 255.0, atol=0, rtol=1e-6)
    torch.testing.assert_close(out["l2_255"], out["l2"] * 255.0, atol=0, rtol=1e-6)
    assert (linf <= 1.0).all()  # both images in [0, 1]
    zero = perturbation_norms(clean, clean.clone())
    for key, value in zero.items():
        assert torch.equal(value, torch.zeros(b)), key


@settings(max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=image_pairs(min_side=11))
def test_psnr_agrees_with_l2_and_ssim_at_most_one(pair) -> None:
    """PSNR = 10·log10(1 / MSE) with MSE = L2² / N (data range 1), +inf for an unchanged image;
    SSIM <= 1, = 1 for an unchanged image."""
    adv, clean = pair
    ssim, psnr = ssim_psnr(adv, clean)
    l2 = perturbation_norms(adv, clean)["l2"].double()
    n = adv[0].numel()
    assert ssim.shape == psnr.shape == (adv.shape[0],)
    assert (ssim <= 1 + 1e-5).all()
    assert (psnr > 0).all()
    unchanged = l2 == 0
    assert torch.isinf(psnr[unchanged]).all()
    torch.testing.assert_close(ssim[unchanged], torch.ones(int(unchanged.sum())), atol=1e-5, rtol=0)
    mse = l2[~unchanged] ** 2 / n
    torch.testing.assert_close(psnr[~unchanged].double(), 10 * torch.log10(1 / mse), atol=1e-3, rtol=1e-4)


# ---------------------------------------------------------------------------------- rounding at ties


def masks_from_counts(tp: int, fp: int, fn: int, tn: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(pred, target) as (1, 1, 1, N) masks with the given confusion counts."""
    pred = torch.tensor([1] * tp + [1] * fp + [0] * fn + [0] * tn, dtype=torch.float32).view(1, 1, 1, -1)
    target = torch.tensor([1] * tp + [0] * fp + [1] * fn + [0] * tn, dtype=torch.float32).view(1, 1, 1, -1)
    return pred, target


@pytest.mark.parametrize("tp,fp,fn,tn,exact", [
    (2, 78, 0, 47, "0.2005"),    # fg 2/80, bg 47/125: mean 0.2005 exactly; 127 pixels
    (39, 81, 0, 169, "0.5005"),  # fg 39/120, bg 169/250: mean 0.5005 exactly; 289 pixels (17 x 17)
])
def test_paper_miou_matches_float64_rounding_at_ties(tp: int, fp: int, fn: int, tn: int, exact: str) -> None:
    """At exact 3-decimal ties the notebooks' NumPy float64 mean and ``round(np.float64, 3)`` (which is
    ``np.round``: rint(x * 1000) / 1000) decide; float32 rounding would flip the 0.2 / 0.5 thresholds."""
    pred, target = masks_from_counts(tp, fp, fn, tn)
    mean64 = (np.float64(tp) / (tp + fp + fn) + np.float64(tn) / (tn + fp + fn)) / 2
    assert abs(mean64 - float(exact)) < 1e-12
    assert paper_miou(pred, target).item() == pytest.approx(float(round(mean64, 3)), abs=1e-7)
