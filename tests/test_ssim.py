"""medis.metrics.ssim: the separable-window SSIM equals torchmetrics' on random, perturbed and real-looking images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from medis.data.synthetic import render_dermoscopy
from medis.metrics.ssim import gaussian_taps, ssim


def _torchmetrics(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return structural_similarity_index_measure(a, c, data_range=1.0, reduction="none")


@pytest.mark.parametrize("shape", [(3, 3, 11, 11), (2, 3, 37, 53), (5, 1, 64, 48), (7, 3, 96, 128)])
def test_agrees_with_torchmetrics_on_noisy_pairs(shape) -> None:
    g = torch.Generator().manual_seed(sum(shape))
    clean = torch.rand(shape, generator=g)
    noise = torch.randn(shape, generator=g) * torch.linspace(0.0, 0.3, shape[0]).view(-1, 1, 1, 1)
    adversarial = (clean + noise).clamp(0, 1)
    torch.testing.assert_close(ssim(adversarial, clean), _torchmetrics(adversarial, clean), atol=1e-6, rtol=0)


def test_agrees_on_dermoscopy_under_sign_perturbations_of_4_over_255() -> None:
    """The attack's case: smooth images, ±4/255 sign noise, several CPU chunks (24 images). In
    float64 both computations agree to rounding; in float32 the local variances E[x²] - μ² cancel,
    so each is compared with the float64 value (ours is within 2e-5, torchmetrics' within 5e-5)."""
    rng = np.random.default_rng(0)
    clean = torch.stack([torch.from_numpy(render_dermoscopy(rng, 96, 128)[0].copy()).permute(2, 0, 1).float() / 255
                         for _ in range(24)])
    sign = torch.randint(0, 2, clean.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    adversarial = (clean + sign * 4 / 255).clamp(0, 1)
    exact = _torchmetrics(adversarial.double(), clean.double())
    torch.testing.assert_close(ssim(adversarial.double(), clean.double()), exact, atol=1e-10, rtol=0)
    ours = ssim(adversarial, clean)
    torch.testing.assert_close(ours.double(), exact, atol=5e-5, rtol=0)
    assert (ours < 0.99).all() and (ours > 0.1).all()  # a real, non-trivial SSIM


def test_float64_is_kept_and_identical_images_score_one() -> None:
    x = torch.rand(2, 3, 20, 30, dtype=torch.float64)
    out = ssim(x, x.clone())
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, torch.ones(2, dtype=torch.float64))


def test_window_is_torchmetrics_11_tap_gaussian() -> None:
    taps = gaussian_taps(1.5)
    assert taps.shape == (11,)
    torch.testing.assert_close(taps.sum(), torch.tensor(1.0))
    assert torch.equal(taps, taps.flip(0)) and int(taps.argmax()) == 5


def test_large_images_are_computed_in_bands_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    import medis.metrics.ssim as module

    generator = torch.Generator().manual_seed(5)
    clean = torch.rand(2, 3, 70, 90, generator=generator)
    adversarial = (clean + 0.05 * torch.randn(clean.shape, generator=generator)).clamp(0, 1)
    whole = module.ssim(adversarial, clean)
    monkeypatch.setattr(module, "STRIP_PIXELS", 1000)  # bands of 11 rows: 7 bands, the last one shorter
    banded = module.ssim(adversarial, clean)
    assert torch.allclose(banded, whole, atol=1e-6)
