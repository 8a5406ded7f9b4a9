"""Segmentation metrics, batched on the device (no per-image Python loop, no sklearn).

Per-image overlap of binary masks, the ISIC challenge conventions included: an image whose ground
truth and prediction are both empty scores IoU = Dice = 1; the thresholded Jaccard of ISIC 2018 is
the IoU where it is >= 0.65 and 0 otherwise (Codella et al., "Skin Lesion Analysis Toward Melanoma
Detection 2018", arXiv:1902.03368).
"""

from __future__ import annotations

import torch

ISIC_JACCARD_THRESHOLD = 0.65


COUNT_BLOCK = 1 << 22
"""Pixels per block when counting (:func:`count`)."""


def _flat(mask: torch.Tensor) -> torch.Tensor:
    return mask.reshape(mask.shape[0], -1).bool()


def count(mask: torch.Tensor) -> torch.Tensor:
    """True entries per row of a (B, N) bool mask, (B,) int64, in blocks of :data:`COUNT_BLOCK`
    columns: ``mask.sum(1)`` first casts the whole mask to int64 (8 bytes a pixel: 0.8 GB for six
    16-megapixel masks)."""
    if mask.shape[1] <= COUNT_BLOCK:
        return mask.sum(1)
    return sum(block.sum(1) for block in mask.split(COUNT_BLOCK, dim=1))


def iou_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Foreground IoU of binary masks, one value per image.

    Args:
        pred, target: (B, ...) masks, foreground where nonzero.

    Returns:
        (B,) float32; 1 where both masks are empty.
    """
    p, t = _flat(pred), _flat(target)
    inter = count(p & t).float()
    union = count(p | t).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def dice_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice (F1) of binary masks, one value per image: (B, ...) -> (B,); 1 where both are empty."""
    p, t = _flat(pred), _flat(target)
    inter = count(p & t).float()
    total = (count(p) + count(t)).float()
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))


def thresholded_jaccard(iou: torch.Tensor, threshold: float = ISIC_JACCARD_THRESHOLD) -> torch.Tensor:
    """ISIC 2018's score: IoU where IoU >= threshold, else 0. (B,) -> (B,)."""
    return torch.where(iou >= threshold, iou, torch.zeros_like(iou))


def two_class_miou(pred: torch.Tensor, target: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Mean IoU over the two classes (foreground, background), one value per image.

    The NaN-mean over the classes present: a class absent from both masks contributes nothing (as
    the MedIS notebooks' sklearn-style mean IoU does).

    Args:
        pred, target: (B, ...) binary masks, foreground where nonzero.
        dtype: of the ratios (the pixel counts are exact integers either way).

    Returns:
        (B,) in ``dtype``.
    """
    p, t = _flat(pred), _flat(target)
    inter = count(p & t)
    union = count(p) + count(t) - inter
    pixels = p.shape[1]  # background counts by complement: |~p & ~t| = N - |p | t|, |~p | ~t| = N - |p & t|
    fg_inter, fg_union = inter.to(dtype), union.to(dtype)
    bg_inter, bg_union = (pixels - union).to(dtype), (pixels - inter).to(dtype)
    fg = fg_inter / fg_union.clamp_min(1)
    bg = bg_inter / bg_union.clamp_min(1)
    present = (fg_union > 0).float() + (bg_union > 0).float()
    return (fg * (fg_union > 0) + bg * (bg_union > 0)) / present


def paper_miou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The MedIS notebooks' "mIoU": :func:`two_class_miou` rounded to 3 decimals. (B, ...) -> (B,) float32.

    As NumPy computes it: the ratios and their mean in float64, then ``np.round(x, 3)``'s
    ``rint(x * 1000) / 1000`` (half to even). In float32 an exact tie such as 0.5005 can round the
    other way and flip the paper's thresholds (0.2 stop, 0.5 success).
    """
    return (torch.round(two_class_miou(pred, target, torch.float64) * 1000.0) / 1000.0).float()


def uniform(mask: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B,) bool: the mask is all foreground or all background."""
    m = _flat(mask)
    return m.all(1) | ~m.any(1)


def present_class_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of the class a uniform target holds (foreground IoU for an all-foreground target,
    background IoU for an all-background one): the clean counterpart of the paper's ×2 correction.
    (B, ...) -> (B,); for a non-uniform target this is the foreground IoU."""
    p, t = _flat(pred), _flat(target)
    all_background = ~t.any(1)
    fg = iou_per_image(p, t)
    bg = iou_per_image(~p, ~t)
    return torch.where(all_background, bg, fg)


def target_score(pred: torch.Tensor, target: torch.Tensor, mode: str = "clean",
                 double_uniform: bool = False) -> torch.Tensor:
    """The score the attack records against its reference (ground truth or target).

    ``paper``: :func:`paper_miou`, doubled where ``double_uniform`` (the paper's ×2 correction for
    all-white/all-black targets; it can exceed 1). ``clean``: :func:`two_class_miou`, replaced by
    :func:`present_class_iou` wherever the reference is uniform (one class absent). (B, ...) -> (B,).
    """
    if mode == "paper":
        score = paper_miou(pred, target)
        return score * 2.0 if double_uniform else score
    return torch.where(uniform(target), present_class_iou(pred, target), two_class_miou(pred, target))


def target_attainment(pred: torch.Tensor, target: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """How far a targeted attack got, each side of the target counted apart. (B, ...) binary masks ->
    (B,) in [0, 1].

    A target asks for two things: the pixels it marks as lesion where the clean prediction has none
    must become lesion, and the pixels it marks as background where the clean prediction has lesion
    must become background. For each side s, with must_s those pixels, won_s = must_s ∩ {pred = target}
    and broken_s the pixels of the same target class that the clean prediction already had right and
    the attack lost (clean = target = s, pred ≠ target): attained_s = |won_s| / (|must_s| + |broken_s|).
    The score is the least attained non-empty side (1 when nothing had to change). So erasing the
    lesion alone attains nothing toward a target with lesion outside the clean lesion, and the all-black
    target is attained as far as the lesion is gone; an unchanged prediction scores 0, and no success is
    credited to an image the attack did not change. This extends the "target pixels reached" measure
    of targeted segmentation attacks (Metzen, Chaithanya Kumar, Brox, Fischer, "Universal Adversarial
    Perturbations Against Semantic Image Segmentation", ICCV 2017) to both classes of the target.
    """
    pred, target, clean = _flat(pred), _flat(target), _flat(clean)
    hit = pred == target
    shares = []
    for side in (True, False):  # pixels that must become lesion, then those that must become background
        of_side = target if side else ~target
        must = of_side & (clean != target)
        won = count(must & hit).to(torch.float64)
        broken = count(of_side & (clean == target) & ~hit).to(torch.float64)
        n_must = count(must).to(torch.float64)
        shares.append(torch.where(n_must > 0, won / (n_must + broken), torch.full_like(won, float("inf"))))
    score = torch.minimum(*shares)
    return torch.where(torch.isinf(score), torch.ones_like(score), score).to(torch.float32)


def perturbation_norms(adversarial: torch.Tensor, clean: torch.Tensor) -> dict[str, torch.Tensor]:
    """True L∞ and L2 norms of ``adversarial - clean`` per image, in the [0, 1] scale and in 1/255 units.

    Args:
        adversarial, clean: (B, C, H, W) in [0, 1].

    Returns:
        ``{"linf", "l2", "linf_255", "l2_255"}``, each (B,).
    """
    delta = (adversarial - clean).reshape(adversarial.shape[0], -1).float()
    linf = delta.abs().amax(1)
    l2 = delta.norm(p=2, dim=1)
    return {"linf": linf, "l2": l2, "linf_255": linf * 255.0, "l2_255": l2 * 255.0}


def ssim_psnr(adversarial: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM (Wang, Bovik, Sheikh, Simoncelli, IEEE TIP 2004; Gaussian 11x11, σ 1.5) and PSNR (dB) per
    image, data range 1: SSIM by :func:`medis.metrics.ssim.ssim` (torchmetrics' computation with a separable
    window), PSNR by torchmetrics.

    Args:
        adversarial, clean: (B, C, H, W) in [0, 1], H and W >= 11.

    Returns:
        (ssim (B,), psnr (B,)); PSNR is +inf for identical images.
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio

    from medis.metrics.ssim import ssim

    a, c = adversarial.float(), clean.float()
    psnr = peak_signal_noise_ratio(a, c, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return ssim(a, c, data_range=1.0), psnr
