"""Parallel fusion tables (medis.results.fusion) on hand-made records, every expected number worked by hand.

Shukla, Gupta, Gupta, "Exploring the feasibility of adversarial attacks on medical image
segmentation", MTAP 2023: ASR / distortion per loss and with parallel fusion.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from medis.results.fusion import (
    FUSED_LOSS,
    GROUP_KEYS,
    choose_per_image,
    fuse,
    per_loss_table,
    summary_table,
)
from medis.results.records import as_record

approx = pytest.approx
COLUMNS = ["dataset", "target", "loss", "images", "successes", "asr", "distortion", "linf", "l2", "ssim", "psnr",
           "set_aside", "pruned", "at_first", "real_asr"]
EXTRA = dict(set_aside=0, pruned=0, at_first=0, real_asr=None)  # nothing set aside, pruned or judged


def rec(image_id, loss, success, steps, metric, linf=None, l2=None, ssim=None, psnr=None,
        dataset="kvasir", target="untargeted", **extra):
    """One record; norms default to None ("not measured")."""
    return dict(dataset=dataset, image_id=image_id, target=target, loss=loss, success=success,
                steps=steps, metric=metric, linf=linf, l2=l2, ssim=ssim, psnr=psnr, **extra)


def untargeted_kvasir(dataset="kvasir"):
    """3 images x 3 losses, untargeted (lower metric is better for the attacker).

    image a: bce  ok steps 3 metric .40 | dice ok steps 2 metric .45 | iou ok steps 2 metric .30
             -> fewest steps 2 (dice, iou), tie broken by LOWEST metric -> iou
    image b: bce  ok steps 1 metric .10 | dice FAIL                  | iou ok steps 4 metric .20
             -> bce (1 step)
    image c: every loss fails -> counted in images, not in successes, no choice
    Failed records carry norms that must be ignored.
    """
    d = dataset
    return [
        rec("a", "bce", True, 3, 0.40, 0.03, 3.0, 0.70, 30.0, dataset=d),
        rec("a", "dice", True, 2, 0.45, 0.02, 2.0, 0.80, 35.0, dataset=d),
        rec("a", "iou", True, 2, 0.30, 0.02, 2.5, 0.85, 36.0, dataset=d),
        rec("b", "bce", True, 1, 0.10, 0.01, 1.0, 0.95, 45.0, dataset=d),
        rec("b", "dice", False, None, 0.70, 0.10, 9.0, 0.10, 10.0, dataset=d),
        rec("b", "iou", True, 4, 0.20, 0.04, 4.0, 0.60, 28.0, dataset=d),
        rec("c", "bce", False, None, 0.90, 0.10, 9.0, 0.10, 10.0, dataset=d),
        rec("c", "dice", False, None, 0.80, 0.10, 9.0, 0.10, 10.0, dataset=d),
        rec("c", "iou", False, None, 0.85, 0.10, 9.0, 0.10, 10.0, dataset=d),
    ]


def targeted_kvasir():
    """Target "random" (targeted: HIGHER metric is better).

    image a: bce ok steps 2 metric .50 | dice ok steps 2 metric .60 | iou ok steps 3 metric .90
             -> tie on 2 steps, HIGHEST metric -> dice (the untargeted rule would pick bce)
    image b: bce FAIL | dice FAIL | iou ok steps 1 metric .46 -> iou
    """
    t = "random"
    return [
        rec("a", "bce", True, 2, 0.50, 0.02, 2.0, 0.90, 40.0, target=t),
        rec("a", "dice", True, 2, 0.60, 0.02, 2.2, 0.88, 39.0, target=t),
        rec("a", "iou", True, 3, 0.90, 0.03, 3.0, 0.80, 33.0, target=t),
        rec("b", "bce", False, None, 0.10, target=t),
        rec("b", "dice", False, None, 0.20, target=t),
        rec("b", "iou", True, 1, 0.46, 0.01, 1.0, 0.99, 50.0, target=t),
    ]


def by_loss(rows):
    return {row["loss"]: row for row in rows}


# --------------------------------------------------------------------------------------------
# Per-loss numbers
# --------------------------------------------------------------------------------------------


def test_per_loss_asr_distortion_and_norms() -> None:
    rows = per_loss_table(untargeted_kvasir())
    assert [row["loss"] for row in rows] == ["bce", "dice", "iou"]
    assert all(list(row) == COLUMNS for row in rows)  # no "eps" column when no record has one
    t = by_loss(rows)
    # bce: successes a (3 steps), b (1 step) of 3 images -> ASR 2/3*100, distortion (3+1)/2 = 2
    #      linf (.03+.01)/2 = .02, l2 (3+1)/2 = 2, ssim (.70+.95)/2 = .825, psnr (30+45)/2 = 37.5
    assert t["bce"] == approx(dict(**EXTRA, dataset="kvasir", target="untargeted", loss="bce", images=3, successes=2,
                                   asr=200 / 3, distortion=2.0, linf=0.02, l2=2.0, ssim=0.825, psnr=37.5))
    # dice: only a (2 steps) -> ASR 100/3, distortion 2, norms of a-dice
    assert t["dice"] == approx(dict(**EXTRA, dataset="kvasir", target="untargeted", loss="dice", images=3, successes=1,
                                    asr=100 / 3, distortion=2.0, linf=0.02, l2=2.0, ssim=0.80, psnr=35.0))
    # iou: a (2 steps), b (4 steps) -> distortion 3; linf (.02+.04)/2 = .03, l2 (2.5+4)/2 = 3.25,
    #      ssim (.85+.60)/2 = .725, psnr (36+28)/2 = 32
    assert t["iou"] == approx(dict(**EXTRA, dataset="kvasir", target="untargeted", loss="iou", images=3, successes=2,
                                   asr=200 / 3, distortion=3.0, linf=0.03, l2=3.25, ssim=0.725, psnr=32.0))


def test_loss_without_success_has_no_distortion() -> None:
    records = [rec("a", "ce", False, None, 0.9, 0.1, 1.0, 0.5, 20.0), rec("b", "ce", False, None, 0.8)]
    (row,) = per_loss_table(records)
    assert (row["images"], row["successes"], row["asr"]) == (2, 0, 0.0)
    assert row["distortion"] is None and all(row[k] is None for k in ("linf", "l2", "ssim", "psnr"))
    (fused,) = fuse(records)
    assert (fused["images"], fused["successes"], fused["asr"], fused["distortion"]) == (2, 0, 0.0, None)
    assert fused["chosen"] == {}


def test_norm_means_skip_unmeasured_values() -> None:
    # ce: a ok linf .02, ssim None; b ok linf None (NaN as read from Parquet), ssim .9
    # -> linf = .02 (one value), ssim = .9 (one value), l2/psnr never measured -> None; distortion (1+3)/2 = 2
    records = [rec("a", "ce", True, 1, 0.1, linf=0.02), rec("b", "ce", True, 3, 0.1, linf=math.nan, ssim=0.9)]
    (row,) = per_loss_table(records)
    assert row["linf"] == approx(0.02) and row["ssim"] == approx(0.9)
    assert row["l2"] is None and row["psnr"] is None and row["distortion"] == approx(2.0)


# --------------------------------------------------------------------------------------------
# Parallel fusion
# --------------------------------------------------------------------------------------------


def test_fusion_untargeted_tie_broken_by_lowest_metric() -> None:
    (row,) = fuse(untargeted_kvasir())
    # chosen: a -> iou (2 steps, metric .30 < .45), b -> bce (1 step); c has no success.
    assert row["chosen"] == {"a": "iou", "b": "bce"}
    # images 3 (a, b, c), successes 2 -> ASR 200/3; distortion (2+1)/2 = 1.5
    # norms of a-iou and b-bce: linf (.02+.01)/2 = .015, l2 (2.5+1)/2 = 1.75, ssim (.85+.95)/2 = .90,
    # psnr (36+45)/2 = 40.5
    assert row["loss"] == FUSED_LOSS == "parallel fusion"
    chosen = row.pop("chosen")
    assert list(row) == COLUMNS and list(chosen) == ["a", "b"]
    assert row == approx(dict(**EXTRA, dataset="kvasir", target="untargeted", loss=FUSED_LOSS, images=3, successes=2,
                              asr=200 / 3, distortion=1.5, linf=0.015, l2=1.75, ssim=0.90, psnr=40.5))


def test_fusion_targeted_tie_broken_by_highest_metric() -> None:
    (row,) = fuse(targeted_kvasir())
    # a -> dice (2 steps, metric .60 > .50), b -> iou (1 step); both images succeed -> ASR 100
    # distortion (2+1)/2 = 1.5; linf (.02+.01)/2 = .015, l2 (2.2+1)/2 = 1.6, ssim (.88+.99)/2 = .935,
    # psnr (39+50)/2 = 44.5
    assert row.pop("chosen") == {"a": "dice", "b": "iou"}
    assert row == approx(dict(**EXTRA, dataset="kvasir", target="random", loss=FUSED_LOSS, images=2, successes=2,
                              asr=100.0, distortion=1.5, linf=0.015, l2=1.6, ssim=0.935, psnr=44.5))


def test_every_non_untargeted_target_is_targeted() -> None:
    # Same two records under four targets: steps tie, metric .3 (ce) vs .7 (bce).
    # untargeted -> lowest metric -> ce; any other target kind -> highest -> bce.
    for target, winner in [("untargeted", "ce"), ("white", "bce"), ("inverted", "bce"), ("most_similar", "bce")]:
        records = [rec("a", "ce", True, 2, 0.3, target=target), rec("a", "bce", True, 2, 0.7, target=target)]
        assert fuse(records)[0]["chosen"] == {"a": winner}, target


def test_final_tie_break_is_alphabetical_and_order_independent() -> None:
    # Same steps (2) and same metric (.3) for three losses -> the alphabetically first, "alpha".
    records = [rec("a", name, True, 2, 0.3) for name in ("zeta", "mid", "alpha")]
    assert fuse(records)[0]["chosen"] == {"a": "alpha"}
    assert fuse(list(reversed(records)))[0]["chosen"] == {"a": "alpha"}
    targeted = [rec("a", name, True, 2, 0.8, target="black") for name in ("mid", "zeta", "alpha")]
    assert fuse(targeted)[0]["chosen"] == {"a": "alpha"}
    # fewer steps still beats a name: "zeta" with 1 step wins over "alpha" with 2
    assert fuse(records + [rec("b", "zeta", True, 1, 0.3), rec("b", "alpha", True, 2, 0.0)])[0]["chosen"] == {
        "a": "alpha", "b": "zeta"}


def test_fused_images_are_the_union_over_losses() -> None:
    # ce attacked a, b (a ok in 3 steps); pgd attacked only c (ok in 1 step).
    # per loss: ce images 2 successes 1 ASR 50; pgd images 1 successes 1 ASR 100
    # fused: images {a, b, c} = 3, successes 2 -> ASR 200/3, distortion (3+1)/2 = 2
    records = [rec("a", "ce", True, 3, 0.4), rec("b", "ce", False, None, 0.9), rec("c", "pgd", True, 1, 0.1)]
    t = by_loss(per_loss_table(records))
    assert (t["ce"]["images"], t["ce"]["asr"], t["pgd"]["images"], t["pgd"]["asr"]) == (2, 50.0, 1, 100.0)
    (row,) = fuse(records)
    assert (row["images"], row["successes"], row["asr"], row["distortion"]) == (3, 2, approx(200 / 3), 2.0)


def test_groups_kept_apart_and_summary_order() -> None:
    # isic reuses the image ids a, b, c; there every loss fails, so nothing leaks between datasets.
    isic = [dict(r, success=False, steps=None) for r in untargeted_kvasir("isic")]
    records = targeted_kvasir() + isic + untargeted_kvasir()
    fused = {(row["dataset"], row["target"]): row for row in fuse(records)}
    assert set(fused) == {("isic", "untargeted"), ("kvasir", "random"), ("kvasir", "untargeted")}
    assert (fused["isic", "untargeted"]["images"], fused["isic", "untargeted"]["successes"]) == (3, 0)
    assert fused["kvasir", "untargeted"]["chosen"] == {"a": "iou", "b": "bce"}  # as alone
    assert fused["kvasir", "random"]["chosen"] == {"a": "dice", "b": "iou"}  # as alone
    assert fused["kvasir", "untargeted"]["distortion"] == 1.5 and fused["kvasir", "random"]["asr"] == 100.0

    rows = summary_table(records)
    # groups sorted (dataset, target): (isic, untargeted), (kvasir, random), (kvasir, untargeted);
    # inside a group losses alphabetically, the fused row last.
    order = [(row["dataset"], row["target"], row["loss"]) for row in rows]
    assert order == [
        ("isic", "untargeted", "bce"), ("isic", "untargeted", "dice"), ("isic", "untargeted", "iou"),
        ("isic", "untargeted", FUSED_LOSS),
        ("kvasir", "random", "bce"), ("kvasir", "random", "dice"), ("kvasir", "random", "iou"),
        ("kvasir", "random", FUSED_LOSS),
        ("kvasir", "untargeted", "bce"), ("kvasir", "untargeted", "dice"), ("kvasir", "untargeted", "iou"),
        ("kvasir", "untargeted", FUSED_LOSS),
    ]
    # summary rows equal the standalone tables
    assert rows[-4:] == per_loss_table(untargeted_kvasir()) + fuse(untargeted_kvasir())
    # targeted per-loss: bce a only (2 steps) ASR 50; dice a only ASR 50; iou a (3) and b (1) ASR 100, distortion 2
    t = by_loss(rows[4:7])
    assert (t["bce"]["asr"], t["dice"]["asr"], t["iou"]["asr"], t["iou"]["distortion"]) == (50.0, 50.0, 100.0, 2.0)


def test_eps_joins_the_group_key() -> None:
    e4, e8 = 4 / 255, 8 / 255
    # Same image and loss at two budgets: not duplicates.
    # eps 4/255: a ce fails, a bce ok 5 steps -> fused ASR 100, distortion 5, chosen bce
    # eps 8/255: a ce ok 2 steps, a bce ok 3 steps -> chosen ce, distortion 2
    # a record without eps lands in the eps=None group, ordered first.
    records = [
        rec("a", "ce", False, None, 0.8, eps=e4), rec("a", "bce", True, 5, 0.4, eps=e4),
        rec("a", "ce", True, 2, 0.3, eps=e8), rec("a", "bce", True, 3, 0.1, eps=e8),
        rec("a", "ce", True, 7, 0.2),
    ]
    fused = fuse(records)
    assert [row["eps"] for row in fused] == [None, e4, e8]
    assert list(fused[0])[:4] == ["dataset", "target", "eps", "loss"]
    assert [(row["chosen"], row["distortion"]) for row in fused] == [({"a": "ce"}, 7.0), ({"a": "bce"}, 5.0),
                                                                      ({"a": "ce"}, 2.0)]
    per = per_loss_table(records)
    assert [(row["eps"], row["loss"], row["asr"]) for row in per] == [
        (None, "ce", 100.0), (e4, "bce", 100.0), (e4, "ce", 0.0), (e8, "bce", 100.0), (e8, "ce", 100.0)]
    keys = list(choose_per_image(records))
    assert keys == [("kvasir", "untargeted", None, "a"), ("kvasir", "untargeted", e4, "a"),
                    ("kvasir", "untargeted", e8, "a")]
    assert GROUP_KEYS == ("dataset", "target")


def test_extra_group_keys_with_by() -> None:
    # a sweep over modes: same (image, loss) once per mode; grouped apart with by=("mode",)
    records = [rec("a", "ce", True, 1, 0.1, mode="paper"), rec("a", "ce", True, 2, 0.1, mode="clean")]
    with pytest.raises(ValueError, match="duplicate"):
        fuse(records)
    rows = fuse(records, by=("mode",))
    assert [(row["mode"], row["distortion"]) for row in rows] == [("clean", 2.0), ("paper", 1.0)]


# --------------------------------------------------------------------------------------------
# choose_per_image
# --------------------------------------------------------------------------------------------


def test_choose_per_image_returns_the_records_with_their_extra_keys() -> None:
    records = untargeted_kvasir()
    records[2]["trajectory"] = [0.9, 0.6, 0.30]  # a-iou, the winner of image a
    records[3]["attack"] = "ifgsm"  # b-bce
    chosen = choose_per_image(iter(records))  # any iterable, consumed once
    assert list(chosen) == [("kvasir", "untargeted", "a"), ("kvasir", "untargeted", "b")]  # c: no success
    assert chosen["kvasir", "untargeted", "a"] == as_record(records[2])  # the typed record
    assert chosen["kvasir", "untargeted", "a"]["trajectory"] == (0.9, 0.6, 0.30)
    assert chosen["kvasir", "untargeted", "b"]["attack"] == "ifgsm"
    # the norms of the chosen examples, as the fused row averages them
    assert [(r["linf"], r["l2"], r["ssim"], r["psnr"]) for r in chosen.values()] == [
        (0.02, 2.5, 0.85, 36.0), (0.01, 1.0, 0.95, 45.0)]


# --------------------------------------------------------------------------------------------
# Validation, duplicates, dedupe
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["dataset", "image_id", "target", "loss", "success", "steps", "metric"])
def test_missing_key_names_key_and_record(key: str) -> None:
    bad = rec("img7", "dice", True, 2, 0.3)
    del bad[key]
    with pytest.raises(ValueError) as err:
        fuse(untargeted_kvasir() + [bad])
    msg = str(err.value)
    assert f"'{key}'" in msg and "missing" in msg
    for key2, value in (("dataset", "kvasir"), ("image_id", "img7"), ("loss", "dice")):
        if key2 != key:
            assert repr(value) in msg


def test_norm_keys_are_optional() -> None:
    bare = {k: v for k, v in rec("a", "ce", True, 2, 0.3).items() if k not in ("linf", "l2", "ssim", "psnr")}
    (row,) = fuse([bare])
    assert row["distortion"] == 2.0 and row["linf"] is None


@pytest.mark.parametrize("change, words", [
    (dict(success=True, steps=None), "steps"),
    (dict(success=True, steps=2.5), "steps"),
    (dict(success=True, steps=-1), "steps"),
    (dict(success=True, metric=None), "metric"),
    (dict(success="maybe"), "success"),
    (dict(image_id=None), "image_id"),
    (dict(loss=3), "loss"),
    (dict(linf="big"), "linf"),
])
def test_invalid_values_are_rejected(change: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        per_loss_table([dict(rec("a", "ce", True, 2, 0.3), **change)])


def test_values_as_read_back_from_tables_are_accepted() -> None:
    # CSV/Parquet round trips: "True"/"False", NaN steps for failures, 2.0 for 2
    records = [dict(rec("a", "ce", True, 2, 0.3), success="True", steps=2.0),
               dict(rec("b", "ce", False, None, 0.9), success="False", steps=math.nan)]
    (row,) = per_loss_table(records)
    assert (row["successes"], row["distortion"]) == (1, 2.0)
    # steps of a failed record are ignored
    (row,) = per_loss_table([rec("a", "ce", False, 4, 0.9)])
    assert (row["successes"], row["distortion"]) == (0, None)


def test_duplicates_raise_naming_them() -> None:
    records = untargeted_kvasir() + [rec("b", "iou", True, 1, 0.0)]
    with pytest.raises(ValueError) as err:
        summary_table(records)
    msg = str(err.value)
    assert "duplicate" in msg and "'kvasir'" in msg and "'untargeted'" in msg and "'b'" in msg and "'iou'" in msg
    for fn in (per_loss_table, fuse, choose_per_image):
        with pytest.raises(ValueError, match="duplicate"):
            fn(records)


def test_dedupe_keeps_the_last_duplicate() -> None:
    # b-iou appended again: success in 1 step, metric 0, linf .005.
    # kept (last): iou then has a (2 steps) and b (1 step) -> distortion 1.5, ASR 200/3;
    # fused: b ties bce and iou on 1 step, metric 0 < .10 -> iou; distortion (2+1)/2 = 1.5,
    # linf (.02 + .005)/2 = .0125
    records = untargeted_kvasir() + [rec("b", "iou", True, 1, 0.0, linf=0.005)]
    t = by_loss(per_loss_table(records, dedupe=True))
    assert (t["iou"]["images"], t["iou"]["successes"], t["iou"]["distortion"]) == (3, 2, 1.5)
    (row,) = fuse(records, dedupe=True)
    assert row["chosen"] == {"a": "iou", "b": "iou"} and row["images"] == 3
    assert row["linf"] == approx(0.0125)
    # the other order: the failing copy is last -> iou loses b
    records = untargeted_kvasir() + [rec("b", "iou", False, None, 0.9)]
    t = by_loss(per_loss_table(records, dedupe=True))
    assert (t["iou"]["successes"], t["iou"]["distortion"]) == (1, 2.0)
    assert len(summary_table(records, dedupe=True)) == 4
    assert list(choose_per_image(records, dedupe=True)) == [("kvasir", "untargeted", "a"),
                                                            ("kvasir", "untargeted", "b")]


def test_empty_input_gives_empty_tables() -> None:
    assert per_loss_table([]) == fuse([]) == summary_table([]) == []
    assert choose_per_image([]) == {}


def test_fusion_is_pure_python() -> None:
    code = ("import sys, medis.results.fusion; bad = [m for m in ('torch', 'pandas', 'numpy', 'lightning', "
            "'pytorch_lightning', 'hydra', 'omegaconf', 'wandb') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_numpy_scalars_are_accepted() -> None:
    np = pytest.importorskip("numpy")
    # as a pandas DataFrame's to_dict("records") gives them: numpy bools, ints and NaN
    records = [dict(rec("a", "ce", np.bool_(True), np.int64(3), np.float64(0.2), linf=np.float64(0.01)),
                    eps=np.float64(8 / 255)),
               dict(rec("b", "ce", np.bool_(False), np.float64("nan"), np.float64(0.9)), eps=8 / 255)]
    (row,) = fuse(records)
    # one group (numpy 8/255 == float 8/255): images 2, successes 1 -> ASR 50, distortion 3, linf .01
    assert (row["images"], row["successes"], row["asr"], row["distortion"], row["linf"]) == (2, 1, 50.0, 3.0, 0.01)
