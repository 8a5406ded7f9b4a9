"""Metrics: overlap scores of binary masks, target attainment and perturbation sizes
(:mod:`~medis.metrics.segmentation`), SSIM (:mod:`~medis.metrics.ssim`)."""
