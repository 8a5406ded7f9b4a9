"""Property-based tests of every surrogate loss of docs/method.md (``medis.losses.build_loss``).

For random shapes, random binary references (all-zero, all-one, single-pixel and random masks),
random side logits (saturated ones included, |z| up to 1e4) fused as the victim fuses them
(``fuse_side_outputs``: min-max normalised sigmoids in paper fusion), every loss in every mode:

- returns (B,), finite values, finite gradients w.r.t. the side logits;
- is non-negative where the loss is by definition (see NON_NEGATIVE; the signed margins are not);
- is per sample: the value of sample i, and its gradient, ignore the other samples of the batch.

The tensors are built from a drawn seed (cheap), while hypothesis drives the shape, the kind of
mask, the logit scale and the saturation pattern (what matters for shrinking).
"""

from __future__ import annotations

from itertools import product

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medis.losses import LOSS_NAMES, LossContext, build_loss
from medis.losses.base import LOSSES, MODES
from medis.models.frontend import FUSIONS, VictimOutput, fuse_side_outputs

PROFILE = settings(max_examples=12, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow])

# Every registry loss is >= 0 by definition:
#   bce, focal: per-pixel -log p_t >= 0 times weights >= 0;
#   segpgd: weights (1 - λ), λ with λ = t / 2T in [0, 1/2] for 0 <= t <= T (the drawn contexts);
#   cospgd: weights cos or 1 - cos, cos in [0, 1] (both vectors are non-negative);
#   dice, tversky, bce_dice: 1 - D >= 0 because 2PM <= P + M, and TP <= TP + αFP + βFN;
#   logcosh_dice: log cosh >= 0;  exp_log: squares (paper) / clamped powers (clean);
#   structure: BCE-with-logits >= 0 and wIoU >= 0 because 2·Σwσ(z)M <= Σw(σ(z) + M);
#   lovasz: relu(errors) times the increments of the monotone Jaccard set function (>= 0);
#   combined: positive weights of the above;
#   masked_bce: BCE on the pixel set; js: a divergence.
# Excluded: the losses registered with non_negative=False, signed margins such as SEA's normalised logit, DAG and
# ASMA. A tolerance of a few float32 ulps is allowed (log cosh near 0 is computed as
# x + softplus(-2x) - log 2, a difference of nearly equal numbers).
NON_NEGATIVE = frozenset(name for name in LOSS_NAMES if LOSSES[name].non_negative)
NEG_TOL = 1e-6

CASES = list(product(LOSS_NAMES, MODES))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread. On a loaded 2-core machine a parallel region of a few
    hundred pixels waits ~15 ms for a busy worker thread (avg_pool2d: 16 ms vs 26 µs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
MASK_KINDS = ("zeros", "ones", "one_pixel", "random", "random_sparse")
SCALES = (0.5, 3.0, 30.0, 1e4)


@st.composite
def loss_inputs(draw, min_batch: int = 1):
    """(side_logits tuple, reference (B,1,H,W), fusion name, LossContext)."""
    b = draw(st.integers(min_batch, 4))
    h = draw(st.integers(1, 24))
    w = draw(st.integers(1, 24))
    k = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from(SCALES))
    saturate = draw(st.sampled_from(("none", "some", "all")))
    kinds = draw(st.lists(st.sampled_from(MASK_KINDS), min_size=b, max_size=b))
    fusion = draw(st.sampled_from(FUSIONS))
    total = draw(st.integers(1, 10))
    step = draw(st.integers(0, total))
    targeted = draw(st.booleans())

    gen = torch.Generator().manual_seed(seed)
    shape = (b, 1, h, w)
    sides = []
    for _ in range(k):
        z = torch.randn(shape, generator=gen) * scale
        if saturate != "none":
            big = torch.where(torch.rand(shape, generator=gen) > 0.5, 1e4, -1e4)
            pick = torch.rand(shape, generator=gen) < (0.3 if saturate == "some" else 1.1)
            z = torch.where(pick, big, z)
        sides.append(z)
    masks = []
    for kind in kinds:
        if kind == "zeros":
            m = torch.zeros(1, 1, h, w)
        elif kind == "ones":
            m = torch.ones(1, 1, h, w)
        elif kind == "one_pixel":
            m = torch.zeros(1, 1, h, w)
            m[0, 0, int(torch.randint(h, (1,), generator=gen)), int(torch.randint(w, (1,), generator=gen))] = 1
        elif kind == "random":
            m = (torch.rand(1, 1, h, w, generator=gen) > torch.rand(1, generator=gen)).float()
        else:
            m = (torch.rand(1, 1, h, w, generator=gen) > 0.9).float()
        masks.append(m)
    return tuple(sides), torch.cat(masks), fusion, LossContext(step=step, total_steps=total, targeted=targeted)


def outputs_of(side_logits: tuple[torch.Tensor, ...], fusion: str) -> VictimOutput:
    """The VictimOutput the victim builds from these side logits (Victim.forward)."""
    prob, side_probs = fuse_side_outputs(side_logits, fusion)
    return VictimOutput(tuple(side_logits), prob, side_probs)


def paper_fusion(mode: str, fusion: str) -> str:
    """Half of the draws pair each mode with its own fusion (paper loss on paper fusion)."""
    return "paper" if mode == "paper" and fusion == "last" else fusion


@pytest.mark.parametrize("name,mode", CASES)
@PROFILE
@given(data=loss_inputs())
def test_shape_finite_values_and_gradients(name: str, mode: str, data) -> None:
    side_logits, ref, fusion, ctx = data
    leaves = tuple(z.clone().requires_grad_() for z in side_logits)
    out = outputs_of(leaves, paper_fusion(mode, fusion))
    loss = build_loss(name, mode)(out, ref, ctx)
    assert loss.shape == (ref.shape[0],)
    assert torch.isfinite(loss).all(), loss
    if name in NON_NEGATIVE:
        assert (loss >= -NEG_TOL).all(), loss
    loss.sum().backward()
    for z in leaves:
        assert z.grad is None or torch.isfinite(z.grad).all()


@pytest.mark.parametrize("name,mode", CASES)
@PROFILE
@given(data=loss_inputs(min_batch=2), other_seed=st.integers(0, 2**31 - 1), i=st.integers(0, 3))
def test_per_sample_independence(name: str, mode: str, data, other_seed: int, i: int) -> None:
    """Sample i's loss and its gradient are unchanged when the OTHER samples (their logits and
    references) change, equal to the loss of sample i alone, and no gradient leaks across samples."""
    side_logits, ref, fusion, ctx = data
    fusion = paper_fusion(mode, fusion)
    b = ref.shape[0]
    i = i % b
    fn = build_loss(name, mode)

    leaves = tuple(z.clone().requires_grad_() for z in side_logits)
    full = fn(outputs_of(leaves, fusion), ref, ctx)
    full[i].backward()
    others = [j for j in range(b) if j != i]
    for z in leaves:
        if z.grad is not None:
            assert (z.grad[others] == 0).all(), "gradient of sample i's loss reaches another sample"
    grad_i = [None if z.grad is None else z.grad[i].clone() for z in leaves]

    gen = torch.Generator().manual_seed(other_seed)
    keep = torch.zeros(b, 1, 1, 1, dtype=torch.bool)
    keep[i] = True
    changed_logits = tuple(
        torch.where(keep, z, torch.randn(z.shape, generator=gen) * 50.0).requires_grad_() for z in side_logits)
    changed_ref = torch.where(keep, ref, (torch.rand(ref.shape, generator=gen) > 0.5).float())
    changed = fn(outputs_of(changed_logits, fusion), changed_ref, ctx)
    torch.testing.assert_close(changed[i], full[i].detach(), rtol=1e-5, atol=1e-6)
    changed[i].backward()
    for g, z in zip(grad_i, changed_logits):
        if g is not None and z.grad is not None:
            torch.testing.assert_close(z.grad[i], g, rtol=1e-5, atol=1e-7)

    alone = fn(outputs_of(tuple(z[i:i + 1] for z in side_logits), fusion), ref[i:i + 1], ctx)
    torch.testing.assert_close(alone, full[i:i + 1].detach(), rtol=1e-5, atol=1e-6)
