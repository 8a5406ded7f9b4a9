"""Surrogate losses of docs/method.md: each against a straightforward formula, per sample, gradients that
flow, safety at the extremes, and the registry's errors."""

from __future__ import annotations

import math
from itertools import product

import pytest
import torch
import torch.nn.functional as F

from medis.errors import ConfigError
from medis.losses import LOSS_NAMES, PAPER_LOSSES, LossContext, build_loss
from medis.losses.lovasz import lovasz_hinge, lovasz_hinge_rows
from medis.models.frontend import VictimOutput, fused_output

MODES = ("clean", "paper")
SHAPE = (2, 1, 6, 7)
K = 4


# ----------------------------------------------------------------------------- helpers


def make_outputs(side_logits: tuple[torch.Tensor, ...], mode: str) -> VictimOutput:
    return fused_output(side_logits, mode)


def random_case(seed: int = 0, shape: tuple[int, ...] = SHAPE) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = tuple(torch.randn(shape, generator=gen) * (1.0 + k) for k in range(K))
    mask = (torch.rand(shape, generator=gen) > 0.6).float()
    return logits, mask


def dice_ref(p: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    out = []
    for pi, mi in zip(p, m):
        den = float((pi.sum() + mi.sum()).detach())
        out.append(torch.tensor(1.0) if den == 0 else 2 * (pi * mi).sum() / den)
    return torch.stack(out)


def bce_pixels_ref(p: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return -(m * torch.log(p).clamp_min(-100) + (1 - m) * torch.log(1 - p).clamp_min(-100))


def bce_ref(p: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return bce_pixels_ref(p, m).flatten(1).mean(1)


def jaccard_loss_of_set(chosen: set[int], fg: set[int]) -> float:
    """Δ_J(S) = |S| / |F ∪ S| (Berman et al. 2018), 0 for the empty set."""
    union = fg | chosen
    return len(chosen) / len(union) if union else 0.0


def lovasz_brute(z: list[float], m: list[float], smooth: bool = False) -> float:
    """Lovász extension of Δ_J at relu(errors) (or the smooth elu(errors) + 1), from the set function
    itself (no cumsum formula)."""
    errors = [1.0 - zi * (2.0 * mi - 1.0) for zi, mi in zip(z, m)]
    fg = {i for i, mi in enumerate(m) if mi > 0.5}
    order = sorted(range(len(z)), key=lambda i: -errors[i])
    total, chosen, prev = 0.0, set(), 0.0
    for i in order:
        chosen.add(i)
        cur = jaccard_loss_of_set(chosen, fg)
        e = errors[i]
        total += ((e + 1.0 if e > 0 else math.exp(e)) if smooth else max(e, 0.0)) * (cur - prev)
        prev = cur
    return total


def structure_ref(z: torch.Tensor, m: torch.Tensor, weighted_bce: bool) -> torch.Tensor:
    w = 1 + 5 * (F.avg_pool2d(m, 31, 1, 15) - m).abs()
    bce = -(m * F.logsigmoid(z) + (1 - m) * F.logsigmoid(-z))
    wbce = (w * bce).sum((1, 2, 3)) / w.sum((1, 2, 3)) if weighted_bce else bce.mean((1, 2, 3))
    s = torch.sigmoid(z)
    inter = (w * s * m).sum((1, 2, 3))
    return wbce + 1 - (inter + 1) / ((w * (s + m)).sum((1, 2, 3)) - inter + 1)


def reference_loss(name: str, mode: str, out: VictimOutput, m: torch.Tensor, ctx: LossContext) -> torch.Tensor:
    """Every loss straight from its formula (docs/method.md and the papers): the paper forms of the six
    on the fused probability; every clean form on the fused logit z (logit of the clamped P where the
    victim has none), P = σ(z), BCE = −log σ(±z)."""
    if mode == "paper" and name in PAPER_LOSSES:
        return paper_reference(name, out, m, ctx)
    z = out.logit if out.logit is not None else torch.logit(out.prob, eps=1e-6)
    p = torch.sigmoid(z)
    pix = -(m * F.logsigmoid(z) + (1 - m) * F.logsigmoid(-z))
    n = pix[0].numel()
    d = dice_ref(p, m)
    bce = pix.flatten(1).mean(1)
    floor = 1e-6 * bce  # where the loss's own gradient can vanish (medis.losses.logits.with_floor)
    if name == "logcosh_dice":
        return torch.log(torch.cosh(1 - d)) + floor
    if name == "bce_dice":
        return bce + 1 - d
    if name == "exp_log":
        return 0.8 * (-torch.log(d) + 1e-6) ** 0.3 + 0.2 * ((pix + 1e-6) ** 0.3).flatten(1).mean(1)
    if name == "structure":
        return sum(structure_ref(zk, m, weighted_bce=True) for zk in out.side_logits)
    if name == "lovasz":
        return torch.tensor([lovasz_brute(zi.flatten().tolist(), mi.flatten().tolist(), smooth=True)
                             for zi, mi in zip(z, m)]) + floor
    if name == "combined":
        parts = {k: reference_loss(k, mode, out, m, ctx)
                 for k in ("structure", "logcosh_dice", "bce_dice", "exp_log", "lovasz")}
        return (0.21 * parts["structure"] + 0.18 * parts["logcosh_dice"] + 0.20 * parts["bce_dice"]
                + 0.15 * parts["exp_log"] + 0.26 * parts["lovasz"])
    if name == "bce":
        return bce
    if name == "dice":
        return 1 - d + floor
    if name == "tversky":
        tp, fp, fn = (p * m).sum((1, 2, 3)), (p * (1 - m)).sum((1, 2, 3)), ((1 - p) * m).sum((1, 2, 3))
        return 1 - tp / (tp + 0.3 * fp + 0.7 * fn) + floor
    if name == "cosine":  # 1 - cos((log(1 - P), log P), one-hot M), pixel mean
        s_fg, s_bg = torch.log(p), torch.log(1 - p)
        own = torch.where(m == 1, s_fg, s_bg)
        return (1 - own / torch.sqrt(s_fg ** 2 + s_bg ** 2)).flatten(1).mean(1)
    if name == "focal":
        p_t = torch.where(m == 1, p, 1 - p)
        a_t = torch.where(m == 1, 0.25, 0.75)
        return (-a_t * (1 - p_t) ** 2 * torch.log(p_t)).flatten(1).mean(1) + floor
    # the pixel set: still right (untargeted) / not yet at the target (targeted)
    right = ((z > 0).float() == m).float()
    todo = (1 - right) if ctx.targeted else right
    if name == "segpgd":  # early weight on the pixels still to be won, whichever the direction
        lam = ctx.step / (2 * ctx.total_steps)
        return (((1 - lam) * todo * pix).sum((1, 2, 3)) + (lam * (1 - todo) * pix).sum((1, 2, 3))) / n
    if name == "cospgd":
        cos = (p * m + (1 - p) * (1 - m)) / (torch.sqrt(p ** 2 + (1 - p) ** 2) * torch.sqrt(m ** 2 + (1 - m) ** 2))
        weight = (1 - cos) if ctx.targeted else cos
        return (weight.detach() * pix).flatten(1).mean(1)
    if name == "masked_bce":
        return (todo * pix).sum((1, 2, 3)) / n
    if name == "js":
        mid_fg, mid_bg = (p + m) / 2, ((1 - p) + (1 - m)) / 2

        def kl(a_fg, a_bg):
            terms = [torch.where(a > 0, a * torch.log(a / b), torch.zeros_like(a))
                     for a, b in ((a_fg, mid_fg), (a_bg, mid_bg))]
            return terms[0] + terms[1]

        return ((kl(p, 1 - p) + kl(m, 1 - m)) / 2).flatten(1).mean(1)
    if name == "normalized_logit":
        return -(torch.where(m == 1, 1.0, -1.0) * z / torch.sqrt(1 + z ** 2)).sum((1, 2, 3)) / n
    if name == "masked_logit":
        return -(todo * torch.where(m == 1, 1.0, -1.0) * z / torch.sqrt(1 + z ** 2)).sum((1, 2, 3)) / n
    if name == "dag":  # logit of the adversarial class minus the reference's: (1 - 2M) z
        return (todo * torch.where(m == 1, -z, z)).sum((1, 2, 3))
    if name == "asma":  # (1 - 2M) P: the other class's probability up to a constant
        return (todo * torch.where(m == 1, -p, p)).sum((1, 2, 3))
    return None  # no reference yet: test_matches_the_formula asks for one


def paper_reference(name: str, out: VictimOutput, m: torch.Tensor, ctx: LossContext) -> torch.Tensor:
    """The paper's six in the notebooks' forms, on the fused probability P."""
    p = out.prob
    d = dice_ref(p, m)
    bce = bce_ref(p, m)
    if name == "logcosh_dice":
        return torch.log(torch.cosh(1 - d))
    if name == "bce_dice":
        return bce + 1 - d
    if name == "exp_log":
        return 0.5 * (-torch.log(1 - d)) ** 2 + 0.5 * (-torch.log(bce)) ** 2
    if name == "structure":
        return sum(structure_ref(z, m, weighted_bce=False) for z in out.side_probs)
    if name == "lovasz":  # probabilities as logits, mean over rows
        values = []
        for pi, mi in zip(p, m):
            rows = [lovasz_brute(pi[0, r].tolist(), mi[0, r].tolist()) for r in range(pi.shape[1])]
            values.append(sum(rows) / len(rows))
        return torch.tensor(values)
    parts = {k: paper_reference(k, out, m, ctx) for k in ("structure", "logcosh_dice", "bce_dice", "exp_log", "lovasz")}
    return (0.21 * parts["structure"] + 0.18 * parts["logcosh_dice"] + 0.20 * parts["bce_dice"]
            + 0.15 * parts["exp_log"] + 0.26 * parts["lovasz"])


CTXS = (LossContext(step=3, total_steps=10, targeted=False), LossContext(step=7, total_steps=10, targeted=True))


# ----------------------------------------------------------------------------- formulas


@pytest.mark.parametrize("name,mode", list(product(LOSS_NAMES, MODES)))
def test_matches_the_formula(name: str, mode: str) -> None:
    logits, m = random_case(1)
    logits = tuple(z.double() for z in logits)
    m = m.double()
    out = make_outputs(logits, mode)
    for ctx in CTXS:
        want = reference_loss(name, mode, out, m, ctx)
        if want is None:
            pytest.fail(f"add a reference for {name}: its formula, written independently, in reference_loss "
                        f"(tests/losses/test_surrogates.py)")
        got = build_loss(name, mode)(out, m, ctx)
        assert got.shape == (2,)
        torch.testing.assert_close(got, want.to(got.dtype), rtol=1e-6, atol=1e-7)


def test_registry_lists_the_paper_losses_first_in_the_papers_order() -> None:
    assert PAPER_LOSSES == ("logcosh_dice", "bce_dice", "exp_log", "structure", "lovasz", "combined")
    assert LOSS_NAMES[:6] == PAPER_LOSSES and list(LOSS_NAMES[6:]) == sorted(LOSS_NAMES[6:])
    assert len(set(LOSS_NAMES)) == len(LOSS_NAMES)


def test_paper_and_clean_modes_differ_where_they_should() -> None:
    logits, m = random_case(2)
    out = make_outputs(logits, "clean")  # same outputs for both modes: only the loss differs
    for name in LOSS_NAMES:
        clean = build_loss(name, "clean")(out, m, LossContext())
        paper = build_loss(name, "paper")(out, m, LossContext())
        if name in ("exp_log", "structure", "lovasz", "combined"):
            assert not torch.allclose(clean, paper), name
        else:
            torch.testing.assert_close(clean, paper)


def test_dice_family_hand_values() -> None:
    m = torch.zeros(1, 1, 2, 2)
    m[..., 0, :] = 1
    p = torch.tensor([[[[1.0, 0.5], [0.5, 0.0]]]])
    out = VictimOutput((torch.logit(p),), p, (p,))
    # D = 2 * 1.5 / (2 + 2) = 0.75
    torch.testing.assert_close(build_loss("dice")(out, m, LossContext()), torch.tensor([0.25]))
    torch.testing.assert_close(build_loss("logcosh_dice")(out, m, LossContext()),
                               torch.tensor([math.log(math.cosh(0.25))]))
    # TP = 1.5, FP = 0.5, FN = 0.5
    torch.testing.assert_close(build_loss("tversky")(out, m, LossContext()),
                               torch.tensor([1 - 1.5 / (1.5 + 0.15 + 0.35)]))
    # empty prediction and empty mask: D = 1, Tversky 0
    zero = torch.zeros(1, 1, 2, 2)
    empty = VictimOutput((zero - 80,), zero, (zero,))
    for name in ("dice", "logcosh_dice", "tversky"):
        torch.testing.assert_close(build_loss(name)(empty, zero, LossContext()), torch.tensor([0.0]))


def test_segpgd_schedule_and_cospgd_weights() -> None:
    m = torch.tensor([[[[1.0, 0.0]]]])
    p = torch.tensor([[[[0.8, 0.9]]]])  # pixel 0 right, pixel 1 wrong
    out = VictimOutput((torch.logit(p),), p, (p,))
    b0, b1 = -math.log(0.8), -math.log(0.1)
    for step, total in ((0, 10), (5, 10), (10, 10)):
        lam = step / 20
        got = build_loss("segpgd")(out, m, LossContext(step=step, total_steps=total))
        torch.testing.assert_close(got, torch.tensor([((1 - lam) * b0 + lam * b1) / 2]))
    c0 = (0.8 * 1) / math.sqrt(0.8 ** 2 + 0.2 ** 2)
    c1 = (0.1 * 1) / math.sqrt(0.9 ** 2 + 0.1 ** 2)
    torch.testing.assert_close(build_loss("cospgd")(out, m, LossContext()), torch.tensor([(c0 * b0 + c1 * b1) / 2]))
    torch.testing.assert_close(build_loss("cospgd")(out, m, LossContext(targeted=True)),
                               torch.tensor([((1 - c0) * b0 + (1 - c1) * b1) / 2]))


@pytest.mark.parametrize("name", ["segpgd", "cospgd"])
def test_pixel_weights_carry_no_gradient(name: str) -> None:
    logits, m = random_case(3)
    leaf = logits[0].clone().requires_grad_()
    ctx = LossContext(step=4, total_steps=10, targeted=False)
    build_loss(name)(make_outputs((leaf,), "clean"), m, ctx).sum().backward()
    leaf2 = logits[0].clone().requires_grad_()
    reference_loss(name, "clean", make_outputs((leaf2,), "clean"), m, ctx).sum().backward()
    torch.testing.assert_close(leaf.grad, leaf2.grad)
    if name == "cospgd":  # with a gradient through cos the result would differ
        leaf3 = logits[0].clone().requires_grad_()
        p = torch.sigmoid(leaf3)
        cos = (p * m + (1 - p) * (1 - m)) / (torch.sqrt(p ** 2 + (1 - p) ** 2) * torch.sqrt(m ** 2 + (1 - m) ** 2))
        (cos * bce_pixels_ref(p, m)).mean().backward()
        assert not torch.allclose(leaf.grad, leaf3.grad)


# ----------------------------------------------------------------------------- Lovász


def test_lovasz_rows_match_brute_force_on_tiny_inputs() -> None:
    gen = torch.Generator().manual_seed(4)
    z = torch.randn(40, 5, generator=gen, dtype=torch.float64) * 2
    m = (torch.rand(40, 5, generator=gen) > 0.5).double()
    m[0] = 0  # a row with no foreground
    m[1] = 1
    z[2] = 0.0  # ties
    got = lovasz_hinge_rows(z, m)
    want = torch.tensor([lovasz_brute(zi.tolist(), mi.tolist()) for zi, mi in zip(z, m)], dtype=torch.float64)
    torch.testing.assert_close(got, want)


def test_lovasz_known_values() -> None:
    m = torch.tensor([[[[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]]])
    signs = 2 * m - 1
    # perfect prediction with margins >= 1: no loss
    assert float(lovasz_hinge(signs * 1.5, m)) == 0.0
    # logits all 0: every error is 1, the extension at the all-ones vector is Δ_J(everything) = 1
    torch.testing.assert_close(lovasz_hinge(torch.zeros_like(m), m), torch.tensor([1.0]))
    torch.testing.assert_close(lovasz_hinge(torch.zeros_like(m), torch.zeros_like(m)), torch.tensor([1.0]))
    # errors in {0, 1}: the extension equals the Jaccard loss 1 - IoU of flipping the error set
    flip = torch.tensor([[[[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]]]).bool()
    z = torch.where(flip, torch.zeros_like(m), signs)  # error 1 on flip, 0 elsewhere
    pred = torch.where(flip, 1 - m, m)
    iou = (pred * m).sum() / ((pred + m) > 0).float().sum()
    torch.testing.assert_close(lovasz_hinge(z, m), (1 - iou).view(1))


# ----------------------------------------------------------------------------- per sample, gradients


@pytest.mark.parametrize("mode", MODES)
def test_per_sample_values_ignore_batch_mates(mode: str) -> None:
    logits, m = random_case(5, (3, 1, 6, 7))
    out = make_outputs(logits, mode)
    other = tuple(torch.randn_like(z) * 4 for z in logits)
    for name in LOSS_NAMES:
        fn = build_loss(name, mode)
        ctx = LossContext(step=2, total_steps=5)
        full = fn(out, m, ctx)
        assert full.shape == (3,), name
        for i in range(3):
            alone = fn(make_outputs(tuple(z[i:i + 1] for z in logits), mode), m[i:i + 1], ctx)
            torch.testing.assert_close(alone, full[i:i + 1], msg=f"{name} sample {i}")
        # changing the other samples leaves sample 0 alone
        mixed = tuple(torch.cat([z[:1], o[1:]]) for z, o in zip(logits, other))
        torch.testing.assert_close(fn(make_outputs(mixed, mode), m, ctx)[0], full[0], msg=name)


@pytest.mark.parametrize("mode", MODES)
def test_input_gradient_flows(mode: str) -> None:
    _, m = random_case(6)
    gen = torch.Generator().manual_seed(6)
    base = torch.randn(SHAPE, generator=gen)
    for name in LOSS_NAMES:
        for ctx in CTXS:
            x = base.clone().requires_grad_()
            sides = tuple((1.0 + 0.5 * k) * x + 0.3 * k for k in range(K))
            loss = build_loss(name, mode)(make_outputs(sides, mode), m, ctx)
            assert loss.shape == (2,) and torch.isfinite(loss).all(), name
            loss.sum().backward()
            assert torch.isfinite(x.grad).all(), (name, mode, ctx)
            assert x.grad.abs().sum() > 0, (name, mode, ctx)
            # each sample's gradient is its own: per-sample losses, not a mean that mixes them
            assert (x.grad.flatten(1).abs().sum(1) > 0).all(), (name, mode, ctx)


# ----------------------------------------------------------------------------- safety


def extreme_masks() -> dict[str, torch.Tensor]:
    one_pixel = torch.zeros(SHAPE)
    one_pixel[:, :, 3, 4] = 1
    return {"zeros": torch.zeros(SHAPE), "ones": torch.ones(SHAPE), "one_pixel": one_pixel}


def extreme_side_logits() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    mixed = torch.where(torch.rand(SHAPE, generator=gen) > 0.5, 80.0, -80.0)
    return {"+80": torch.full(SHAPE, 80.0), "-80": torch.full(SHAPE, -80.0), "mixed": mixed, "-mixed": -mixed}


@pytest.mark.parametrize("mode", MODES)
def test_finite_through_fusion_at_saturation(mode: str) -> None:
    for (mname, m), (zname, z0) in product(extreme_masks().items(), extreme_side_logits().items()):
        for name, ctx in product(LOSS_NAMES, CTXS):
            x = z0.clone().requires_grad_()
            sides = tuple(x if k % 2 == 0 else x.flip(-1) for k in range(K))
            loss = build_loss(name, mode)(make_outputs(sides, mode), m, ctx)
            loss.sum().backward()
            where = (name, mode, mname, zname)
            assert torch.isfinite(loss).all(), where
            assert torch.isfinite(x.grad).all(), where


@pytest.mark.parametrize("mode", MODES)
def test_finite_with_probabilities_exactly_zero_or_one(mode: str) -> None:
    gen = torch.Generator().manual_seed(8)
    patterns = {"0": torch.zeros(SHAPE), "1": torch.ones(SHAPE),
                "0/1": (torch.rand(SHAPE, generator=gen) > 0.5).float()}
    for (mname, m), (pname, p0) in product(extreme_masks().items(), patterns.items()):
        for pattern in (p0, 1 - p0):
            for name, ctx in product(LOSS_NAMES, CTXS):
                prob = pattern.clone().requires_grad_()
                side_probs = tuple(pattern.clone().requires_grad_() for _ in range(K))
                side_logits = tuple((pattern * 160 - 80).requires_grad_() for _ in range(K))
                loss = build_loss(name, mode)(VictimOutput(side_logits, prob, side_probs), m, ctx)
                loss.sum().backward()
                where = (name, mode, mname, pname)
                assert torch.isfinite(loss).all(), where
                for leaf in (prob, *side_probs, *side_logits):
                    assert leaf.grad is None or torch.isfinite(leaf.grad).all(), where


def test_saturated_predictions_reach_expected_values() -> None:
    """Sanity at the extremes: the clamps give the documented values, not just finite ones."""
    m = extreme_masks()["one_pixel"]
    p = torch.zeros(SHAPE)
    out = VictimOutput((p - 80,), p, (p,), p - 80)  # fused logit -80 everywhere
    n = m[0].numel()
    # clean forms read the logit: the one foreground pixel costs softplus(80) = 80, the rest ~0
    torch.testing.assert_close(build_loss("bce")(out, m, LossContext()), torch.full((2,), 80.0 / n))
    # paper exp-log reads P = 0: D = 0 -> -log(1) = 0; BCE with logs clamped at -100 = 100/42
    torch.testing.assert_close(build_loss("exp_log", "paper")(out, m, LossContext()),
                               torch.full((2,), 0.5 * math.log(n / 100.0) ** 2))
    # clean exp-log: D clamped to 1e-7 (1 - D to the float32 below 1 - 1e-7); one pixel with -ln p_t = 80,
    # the others ~0; bases shifted by 1e-6
    minus_log_d = float(-torch.log1p(-torch.tensor(1 - 1e-7)))
    want = 0.8 * (minus_log_d + 1e-6) ** 0.3 + 0.2 * ((80 + 1e-6) ** 0.3 + (n - 1) * 1e-6 ** 0.3) / n
    torch.testing.assert_close(build_loss("exp_log", "clean")(out, m, LossContext()), torch.full((2,), want))


# ----------------------------------------------------------------------------- registry errors


def test_unknown_name_or_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="nope") as err:
        build_loss("nope")
    assert "\n" not in str(err.value) and "logcosh_dice" in str(err.value)
    with pytest.raises(ConfigError, match="fancy") as err:
        build_loss("dice", mode="fancy")
    assert "\n" not in str(err.value) and "paper" in str(err.value) and "clean" in str(err.value)


def test_loss_context_is_frozen_with_defaults() -> None:
    ctx = LossContext()
    assert (ctx.step, ctx.total_steps, ctx.targeted) == (0, 1, False)
    with pytest.raises(AttributeError):
        ctx.step = 3  # type: ignore[misc]
