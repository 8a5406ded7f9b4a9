"""PraNet's structure loss: the formula of docs/method.md, per sample, weights applied, safe at extremes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medis.losses.structure import structure_loss, structure_weights


def reference(z: torch.Tensor, m: torch.Tensor, paper_bce: bool) -> torch.Tensor:
    """Straight from the formula, one sample at a time with Python sums."""
    out = []
    for zi, mi in zip(z, m):
        w = 1 + 5 * (F.avg_pool2d(mi[None], 31, 1, 15)[0] - mi).abs()
        bce = -(mi * F.logsigmoid(zi) + (1 - mi) * F.logsigmoid(-zi))
        wbce = bce.mean() if paper_bce else (w * bce).sum() / w.sum()
        p = torch.sigmoid(zi)
        inter = (w * p * mi).sum()
        wiou = 1 - (inter + 1) / ((w * (p + mi)).sum() - inter + 1)
        out.append(wbce + wiou)
    return torch.stack(out)


def test_matches_the_formula_per_sample() -> None:
    torch.manual_seed(0)
    z = torch.randn(3, 1, 40, 48) * 3
    m = (torch.rand(3, 1, 40, 48) > 0.7).float()
    for paper in (False, True):
        torch.testing.assert_close(structure_loss(z, m, paper_bce=paper), reference(z, m, paper))
    assert structure_loss(z, m).shape == (3,)
    # per sample: a sample's loss does not depend on its batch mates
    torch.testing.assert_close(structure_loss(z[:1], m[:1]), structure_loss(z, m)[:1])


def test_weights_emphasise_the_boundary_and_really_apply() -> None:
    m = torch.zeros(1, 1, 64, 64)
    m[..., 16:48, 16:48] = 1
    w = structure_weights(m)
    assert float(w[0, 0, 32, 32]) < float(w[0, 0, 16, 16])  # centre vs edge of the square
    assert float(w.min()) >= 1.0 and float(w.max()) <= 6.0
    z = torch.zeros(1, 1, 64, 64)
    z[..., 16:48, 16] = -8.0  # a mistake on the boundary, where weights are high
    assert not torch.allclose(structure_loss(z, m), structure_loss(z, m, paper_bce=True))


def test_finite_at_extremes() -> None:
    for mask in (torch.zeros(2, 1, 32, 32), torch.ones(2, 1, 32, 32)):
        for logits in (torch.full((2, 1, 32, 32), 80.0), torch.full((2, 1, 32, 32), -80.0), torch.zeros(2, 1, 32, 32)):
            z = logits.clone().requires_grad_()
            loss = structure_loss(z, mask)
            loss.sum().backward()
            assert torch.isfinite(loss).all() and torch.isfinite(z.grad).all()


def test_weights_equal_pranets_31x31_average_pool() -> None:
    """Summed-area weights = 1 + 5|avg_pool2d(M, 31, 1, 15) - M| (zero padding counted): exactly on
    binary masks, to float32 rounding of the float64 pool on soft ones (float32 pooling itself is
    off by up to 5e-6 there), also on images smaller than the window."""
    g = torch.Generator().manual_seed(3)
    for shape in ((2, 1, 192, 256), (3, 1, 20, 17), (1, 1, 1, 40)):
        binary = (torch.rand(shape, generator=g) > 0.6).float()
        soft = torch.rand(shape, generator=g)
        pooled = 1 + 5 * (F.avg_pool2d(binary, 31, 1, 15) - binary).abs()
        assert torch.equal(structure_weights(binary), pooled)
        exact = soft.double()
        pooled = (1 + 5 * (F.avg_pool2d(exact, 31, 1, 15) - exact).abs()).float()
        torch.testing.assert_close(structure_weights(soft), pooled, atol=1e-6, rtol=0)
