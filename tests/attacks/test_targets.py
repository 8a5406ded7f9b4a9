"""Targets of targeted attacks (docs/method.md): the two-class mIoU table, each target kind, paper mode,
and the one target builder (TargetPool) with its batching-independent seeding."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from medis.attacks.similarity import most_similar_index, pairwise_miou, resize_mask, similarity_table
from medis.attacks.targets import (
    TARGET_KINDS,
    TargetPool,
    kinds_named,
    make_targets,
    paper_random_targets,
    same_as_ground_truth,
)
from medis.errors import ConfigError, DataError


def reference_miou(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-class mIoU of one pair, straight from the definition: NaN-mean over classes present."""
    ious = []
    for cls in (True, False):
        x, y = a == cls, b == cls
        union = int((x | y).sum())
        if union:
            ious.append(int((x & y).sum()) / union)
    return sum(ious) / len(ious)


def random_masks(n: int, h: int, w: int, seed: int) -> list[torch.Tensor]:
    """n masks (1, h, w) float {0, 1}, blob-like, with varied foreground fractions."""
    g = torch.Generator().manual_seed(seed)
    noise = F.avg_pool2d(torch.rand(n, 1, h, w, generator=g), 5, 1, 2)
    level = torch.rand(n, 1, 1, 1, generator=g) * 0.6 + 0.2
    return list((noise > level).float())


def test_pairwise_miou_matches_the_per_pair_reference() -> None:
    g = torch.Generator().manual_seed(0)
    p = 50
    a = torch.rand(7, p, generator=g) > torch.rand(7, 1, generator=g)
    b = torch.rand(6, p, generator=g) > torch.rand(6, 1, generator=g)
    a[0], a[1] = False, True  # empty, full
    b[0], b[1] = False, True
    b[2] = a[2]  # identical pair
    got = pairwise_miou(a, b.float())  # bool and float inputs mixed
    assert got.shape == (7, 6) and got.dtype == torch.float64
    expected = torch.tensor([[reference_miou(x, y) for y in b] for x in a], dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    # A class absent from both masks contributes nothing: empty/empty and full/full score 1.
    assert got[0, 0] == 1 and got[1, 1] == 1 and got[2, 2] == 1
    # Empty against full: each class present in exactly one of them -> IoU 0 for both.
    assert got[0, 1] == 0 and got[1, 0] == 0


def test_pairwise_miou_counts_are_exact_at_network_size() -> None:
    p = 352 * 352
    a = torch.zeros(2, p, dtype=torch.bool)
    a[0, :p - 1] = True  # all but one pixel
    a[1, 1:] = True
    got = pairwise_miou(a, a)
    # fg: (p-2)/p, bg: 0 (the single background pixels differ) -> mean (p-2)/(2p).
    assert got[0, 1].item() == ((p - 2) / p + 0.0) / 2
    assert got[0, 0].item() == 1.0


def test_pairwise_miou_rejects_mismatched_sizes() -> None:
    with pytest.raises(DataError):
        pairwise_miou(torch.zeros(2, 10), torch.zeros(2, 11))


def test_similarity_table_symmetric_with_minus_one_diagonal_and_chunk_invariant() -> None:
    masks = random_masks(9, 40, 30, seed=1) + random_masks(4, 25, 50, seed=2)  # mixed sizes
    masks[3] = torch.zeros(1, 40, 30)
    masks[10] = torch.ones(25, 50)  # (H, W) accepted too
    full = similarity_table(masks, size=(32, 32), chunk=len(masks))
    assert full.shape == (13, 13)
    torch.testing.assert_close(full, full.T, rtol=0, atol=0)
    assert (full.diagonal() == -1).all()
    off = full[~torch.eye(13, dtype=torch.bool)]
    assert (off >= 0).all() and (off <= 1).all()
    for chunk in (1, 4, 5, 100):
        torch.testing.assert_close(similarity_table(masks, size=(32, 32), chunk=chunk), full, rtol=0, atol=0)
    # Entries are the mIoU of the masks resized (nearest) to the common size.
    r = [resize_mask(m, (32, 32)).flatten().bool() for m in masks]
    assert full[2, 7].item() == pytest.approx(reference_miou(r[2], r[7]), abs=1e-12)
    assert full[3, 10].item() == 0.0  # empty against full


def test_most_similar_picks_the_right_other_mask() -> None:
    base = torch.zeros(1, 20, 20)
    a = base.clone(); a[:, 2:10, 2:10] = 1
    b = base.clone(); b[:, 2:10, 2:11] = 1  # almost a
    c = base.clone(); c[:, 12:18, 12:18] = 1  # far from both
    d = base.clone(); d[:, 12:18, 11:18] = 1  # almost c
    e = torch.ones(1, 20, 20)  # full: closest to the largest masks
    table = similarity_table([a, b, c, d, e], size=(20, 20))
    idx = most_similar_index(table)
    assert idx.tolist()[:4] == [1, 0, 3, 2]
    assert (idx != torch.arange(5)).all()


def test_most_similar_ties_go_to_the_lowest_index_and_never_itself() -> None:
    m = torch.zeros(1, 8, 8)
    table = similarity_table([m, m, m, m])  # all identical: every off-diagonal entry is 1
    assert most_similar_index(table).tolist() == [1, 0, 0, 0]
    with pytest.raises(DataError):
        most_similar_index(torch.full((1, 1), -1.0))


@pytest.mark.parametrize("kind", ["white", "black", "inverted"])
def test_constant_and_inverted_kinds(kind: str) -> None:
    masks = random_masks(3, 30, 40, seed=3) + random_masks(2, 17, 23, seed=4)
    targets = make_targets(kind, masks)
    assert len(targets) == len(masks)
    for t, m in zip(targets, masks):
        assert t.shape == m.shape and t.dtype == torch.float32
        expected = {"white": torch.ones_like(m), "black": torch.zeros_like(m), "inverted": 1 - m}[kind]
        assert torch.equal(t, expected)


def test_random_targets_seeded_per_image_and_resized() -> None:
    sizes = [(30, 40), (17, 23), (64, 48), (30, 40), (9, 11), (50, 50)]
    masks = [random_masks(1, h, w, seed=10 + i)[0] for i, (h, w) in enumerate(sizes)]
    pool = random_masks(20, 36, 36, seed=5)
    t1 = make_targets("random", masks, seed=7, pool=pool)
    t2 = make_targets("random", masks, seed=7, pool=pool)
    t3 = make_targets("random", masks, seed=8, pool=pool)
    for a, b, m in zip(t1, t2, masks):
        assert a.shape == m.shape and torch.equal(a, b)
        assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert any(not torch.equal(a, c) for a, c in zip(t1, t3))
    # Each target is one pool mask resized with nearest to its image's size; one draw per image.
    resized = [[resize_mask(p, m.shape[-2:]) for p in pool] for m in masks]
    picks = [next(j for j, r in enumerate(rs) if torch.equal(r, t)) for rs, t in zip(resized, t1)]
    assert len(set(picks)) > 1
    # Default pool: the evaluation set itself.
    own = make_targets("random", masks, seed=0)
    for t, m in zip(own, masks):
        assert any(torch.equal(t, resize_mask(p, m.shape[-2:])) for p in masks)


def test_most_similar_targets_resized_with_nearest_to_each_image() -> None:
    a = torch.zeros(1, 40, 40); a[:, 5:20, 5:20] = 1
    b = torch.zeros(1, 30, 20); b[:, 4:15, 3:10] = 1  # same relative box as a
    c = torch.zeros(1, 50, 60); c[:, 30:45, 40:55] = 1
    masks = [a, b, c]
    targets = make_targets("most_similar", masks)
    idx = most_similar_index(similarity_table(masks)).tolist()
    assert idx[:2] == [1, 0]
    for t, m, j in zip(targets, masks, idx):
        assert t.shape == m.shape
        assert set(t.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(t, F.interpolate(masks[j][None], size=m.shape[-2:], mode="nearest")[0])
    # Images of a larger evaluation set, given by their positions in it: the same targets.
    assert torch.equal(make_targets("most_similar", [b], positions=[1], pool=masks)[0], targets[1])
    with pytest.raises(DataError):
        make_targets("most_similar", [a])  # a set of one mask has no "other" mask


def test_paper_random_targets_one_shared_mask_per_loss() -> None:
    masks = [random_masks(1, h, w, seed=20 + h)[0] for h, w in [(30, 40), (17, 23), (64, 48)]]
    pool = random_masks(30, 32, 32, seed=6)
    losses = ["dice", "bce_dice", "exp_log", "structure", "lovasz", "combined"]
    out = paper_random_targets(masks, losses, seed=3, pool=pool)
    assert list(out) == losses
    picks = []
    for loss in losses:
        targets = out[loss]
        assert [t.shape for t in targets] == [m.shape for m in masks]
        # The same pool mask for every image of this loss.
        shared = [j for j, p in enumerate(pool)
                  if all(torch.equal(t, resize_mask(p, m.shape[-2:])) for t, m in zip(targets, masks))]
        assert shared
        picks.append(shared[0])
    assert len(set(picks)) > 1  # losses face different targets (the quirk)
    again = paper_random_targets(masks, losses, seed=3, pool=pool)
    assert all(torch.equal(a, b) for loss in losses for a, b in zip(out[loss], again[loss]))
    with pytest.raises(ConfigError):
        paper_random_targets(masks, ["dice", "dice"])


def test_same_as_ground_truth_flags_images_to_skip() -> None:
    black_gt = torch.zeros(1, 20, 30)
    white_gt = torch.ones(1, 10, 10)
    lesion = torch.zeros(1, 15, 15); lesion[:, 3:9, 4:10] = 1
    masks = [black_gt, white_gt, lesion]
    assert same_as_ground_truth(make_targets("black", masks), masks).tolist() == [True, False, False]
    assert same_as_ground_truth(make_targets("white", masks), masks).tolist() == [False, True, False]
    assert not same_as_ground_truth(make_targets("inverted", masks), masks).any()
    assert same_as_ground_truth([m.bool() for m in masks], masks).all()  # dtype does not matter


def test_unknown_kind_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'grey'.*" + ", ".join(TARGET_KINDS)):
        make_targets("grey", [torch.zeros(1, 4, 4)])
    assert list(TARGET_KINDS)[:5] == ["untargeted", "random", "most_similar", "white", "black"]  # the paper's first
    assert [k for k, kind in TARGET_KINDS.items() if kind.uniform] == ["white", "black"]
    assert kinds_named("paper") == ["untargeted", "random", "most_similar", "white", "black"]
    with pytest.raises(ConfigError, match="'some'"):
        kinds_named("some")


def test_one_seeding_scheme_whatever_the_batching() -> None:
    """A random target depends on the seed and the image's position in the set, never on which other
    images share its batch: the attack module (a pool with keys) and the library agree."""
    masks = [random_masks(1, 20 + i, 24, seed=40 + i)[0] for i in range(8)]
    whole = make_targets("random", masks, seed=5)
    for position in (0, 3, 7):
        alone = make_targets("random", [masks[position]], seed=5, positions=[position], pool=masks)
        assert torch.equal(alone[0], whole[position])
    pool = TargetPool(masks, keys=[("set", f"id{i}") for i in range(8)], seed=5)
    batch = [("set", "id6"), ("set", "id2")]
    module = pool.references("random", [masks[6], masks[2]], pool.positions(batch))
    assert torch.equal(module[0], whole[6]) and torch.equal(module[1], whole[2])
    paper = paper_random_targets(masks, ["bce", "dice"], seed=5)
    assert torch.equal(pool.references("random", masks[:1], [0], ["bce", "dice"], "paper")["dice"][0],
                       paper["dice"][0])


def test_pool_keeps_masks_at_most_pool_size_a_side() -> None:
    big = torch.zeros(1, 600, 400)
    big[:, 100:300, 50:250] = 1
    pool = TargetPool([big, big.flip(-1)], pool_size=256)
    assert max(pool.masks[0].shape[-2:]) == 256
    target = pool.mask(1, big)
    assert target.shape == big.shape and set(target.unique().tolist()) == {0.0, 1.0}


def test_similarity_table_of_300_network_size_masks_completes() -> None:
    """Not a timing assertion: the table of a realistic set (300 masks of 352x352) completes."""
    g = torch.Generator().manual_seed(0)
    masks = list(torch.rand(300, 1, 44, 44, generator=g).repeat_interleave(8, 2).repeat_interleave(8, 3) > 0.6)
    start = time.perf_counter()
    table = similarity_table(masks)
    elapsed = time.perf_counter() - start
    assert table.shape == (300, 300) and (table.diagonal() == -1).all()
    print(f"similarity_table(300 x 352x352 -> 128x128): {elapsed:.3f} s")


def test_nearest_indices_match_torch_nearest_resize() -> None:
    """The similarity table picks pixels by index; they must be those of F.interpolate(mode="nearest")."""
    import random

    from medis.attacks.similarity import nearest_indices

    rng = random.Random(0)
    for _ in range(300):
        h, w, out_h, out_w = (rng.randint(1, 400) for _ in range(4))
        x = torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w)
        expected = F.interpolate(x, size=(out_h, out_w), mode="nearest")[0, 0]
        assert torch.equal(x[0, 0][nearest_indices(h, out_h)][:, nearest_indices(w, out_w)], expected), (h, w, out_h, out_w)
