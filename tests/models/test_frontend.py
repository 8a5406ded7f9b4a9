"""The differentiable victim: in-graph preprocessing, fusion formulas, gradients, BPDA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medis.models.frontend import (
    BPDA,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Victim,
    fuse_side_outputs,
    soft_argmax_onehot,
    soft_threshold,
)
from medis.models.pranet import pranet_lite
from medis.models.unet import UNet


@pytest.mark.parametrize("net, size", [(pranet_lite, 64), (lambda: UNet(base_channels=8, depth=3), 48)])
@pytest.mark.parametrize("shape", [(37, 53), (90, 61)])
def test_gradient_reaches_the_input_at_any_size(net, size: int, shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    victim = Victim(net(), size).freeze()
    x = torch.rand(2, 3, *shape, requires_grad=True)
    out = victim(x)
    assert out.prob.shape == (2, 1, *shape) and all(z.shape == (2, 1, *shape) for z in out.side_logits)
    assert 0.0 <= float(out.prob.detach().min()) and float(out.prob.detach().max()) <= 1.0
    F.binary_cross_entropy(out.prob.clamp(1e-6, 1 - 1e-6), torch.ones_like(out.prob)).backward()
    assert torch.isfinite(x.grad).all()
    assert (x.grad != 0).float().mean() > 0.5  # the resize in the graph spreads gradient over the image
    assert all(p.grad is None for p in victim.model.parameters())


def test_paper_fusion_matches_the_formula_by_hand() -> None:
    z1 = torch.tensor([[[[0.0, 2.0], [-2.0, 4.0]]]])
    z2 = torch.tensor([[[[1.0, 1.0], [1.0, 3.0]]]])
    prob, probs = fuse_side_outputs((z1, z2), "paper")
    expected = []
    for z in (z1, z2):
        p = [1 / (1 + torch.exp(-v)).item() for v in z.flatten()]
        low, high = min(p), max(p)
        expected.append([(v - low) / (high - low + 1e-8) for v in p])
    by_hand = torch.tensor([(a + b) / 2 for a, b in zip(*expected)]).view(1, 1, 2, 2)
    torch.testing.assert_close(prob, by_hand)
    assert float(probs[0].min()) == 0.0 and abs(float(probs[0].max()) - 1.0) < 1e-6
    # z2 is constant but for one pixel: its min-max map is 0 except that pixel
    torch.testing.assert_close(probs[1], torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]]]), atol=1e-6, rtol=0)


def test_paper_fusion_is_per_image() -> None:
    z = torch.stack([torch.linspace(-1, 1, 4).view(1, 2, 2), torch.linspace(5, 9, 4).view(1, 2, 2)])
    prob, _ = fuse_side_outputs((z,), "paper")
    for i in range(2):
        assert abs(float(prob[i].min())) < 1e-6 and abs(float(prob[i].max()) - 1) < 1e-5  # eps 1e-8 / range


def test_clean_and_last_fusion() -> None:
    z1, z2 = torch.randn(2, 1, 5, 5), torch.randn(2, 1, 5, 5)
    torch.testing.assert_close(fuse_side_outputs((z1, z2), "clean")[0], torch.sigmoid((z1 + z2) / 2))
    torch.testing.assert_close(fuse_side_outputs((z1, z2), "last")[0], torch.sigmoid(z2))
    with pytest.raises(ValueError, match="fusion must be one of"):
        fuse_side_outputs((z1,), "mean")


class _Probe(nn.Module):
    """Returns its input's first channel as the logit map, to observe preprocessing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x
        return x[:, :1]


def test_preprocessing_resizes_and_normalises_in_the_graph() -> None:
    probe = _Probe()
    victim = Victim(probe, (8, 12), fusion="clean")
    x = torch.rand(1, 3, 16, 24)
    out = victim(x)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    resized = F.interpolate(x, size=(8, 12), mode="bilinear", align_corners=False)
    torch.testing.assert_close(probe.seen, (resized - mean) / std)
    expected_logit = F.interpolate(probe.seen[:, :1], size=(16, 24), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out.side_logits[0], expected_logit)
    torch.testing.assert_close(out.mask, (torch.sigmoid(expected_logit) > 0.5).float())


def test_forward_list_matches_single_images() -> None:
    torch.manual_seed(1)
    victim = Victim(pranet_lite(), 64).freeze()
    images = [torch.rand(3, 40, 70), torch.rand(3, 64, 64), torch.rand(3, 81, 33)]
    together = victim.forward_list(images)
    for image, joint in zip(images, together):
        alone = victim(image.unsqueeze(0))
        assert joint.prob.shape == (1, 1, *image.shape[1:])
        torch.testing.assert_close(joint.prob, alone.prob, atol=1e-4, rtol=1e-3)  # batched conv rounding


def test_freeze_sets_inference_mode() -> None:
    victim = Victim(pranet_lite(), 64).train()
    victim.freeze()
    assert not victim.training and not victim.model.training
    assert not any(p.requires_grad for p in victim.parameters())


def test_bpda_exact_forward_and_approximate_backward() -> None:
    quantise = BPDA(lambda v: torch.round(v * 8) / 8)
    x = torch.rand(4, 4, requires_grad=True)
    y = quantise(x)
    assert torch.equal(y, torch.round(x.detach() * 8) / 8)
    (y * torch.arange(16.0).view(4, 4)).sum().backward()
    torch.testing.assert_close(x.grad, torch.arange(16.0).view(4, 4))  # identity backward

    threshold = BPDA(lambda v: (v > 0.5).float(), surrogate=lambda v: soft_threshold(v, 0.5, 10.0))
    x = torch.tensor([0.2, 0.5, 0.9], requires_grad=True)
    y = threshold(x)
    assert y.tolist() == [0.0, 0.0, 1.0]
    y.sum().backward()
    s = torch.sigmoid(10.0 * (x.detach() - 0.5))
    torch.testing.assert_close(x.grad, 10.0 * s * (1 - s))


def test_soft_approximations() -> None:
    x = torch.tensor([0.1, 0.49, 0.51, 0.9])
    assert (soft_threshold(x, 0.5, 200.0).round() == (x > 0.5).float()).all()
    logits = torch.tensor([[1.0, 5.0, 2.0]])
    assert soft_argmax_onehot(logits, temperature=0.01).argmax(1).item() == 1
    torch.testing.assert_close(soft_argmax_onehot(logits).sum(1), torch.ones(1))
