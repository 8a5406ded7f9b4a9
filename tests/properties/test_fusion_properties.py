"""Property-based tests of parallel fusion (docs/method.md, ``medis.results.fusion``) on random record sets.

Records: 1–2 datasets, 1–2 target kinds (untargeted and/or targeted ones), optionally an ``eps``
key (one or two budgets, or only on some records), 1–6 images, 1–6 losses, random success, steps,
metric (ties on purpose) and norms. Every expected number is recomputed here by brute force.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medis.results.fusion import FUSED_LOSS, UNTARGETED, choose_per_image, fuse, per_loss_table, summary_table
from medis.results.records import as_record

PROFILE = settings(max_examples=80, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

LOSSES = ("bce", "combined", "dice", "exp_log", "lovasz", "structure", "tversky")
TARGETS = (UNTARGETED, "random", "similar", "white", "black")
IMAGE_IDS = (0, 1, 7, 12, "a", "b", "case_03", "ISIC_0000001")
METRICS = (0.0, 0.2, 0.45, 0.5, 0.95, 1.0)  # few values: ties on steps AND metric happen
EPS_VALUES = (2 / 255, 8 / 255)


@st.composite
def record_sets(draw, complete: bool = True):
    """A list of records, unique per (dataset, target, eps, image, loss). ``complete``: every loss
    attacks every image of its group (the paper's setting); else some (image, loss) pairs are missing."""
    datasets = draw(st.lists(st.sampled_from(("kvasir", "isic")), min_size=1, max_size=2, unique=True))
    targets = draw(st.lists(st.sampled_from(TARGETS), min_size=1, max_size=2, unique=True))
    eps_mode = draw(st.sampled_from(("absent", "one", "two", "partial")))
    eps_values = {"absent": (None,), "one": EPS_VALUES[:1], "two": EPS_VALUES, "partial": (None, EPS_VALUES[1])}[eps_mode]
    losses = draw(st.lists(st.sampled_from(LOSSES), min_size=1, max_size=6, unique=True))
    images = draw(st.lists(st.sampled_from(IMAGE_IDS), min_size=1, max_size=6, unique=True))
    success_rate = draw(st.sampled_from((0.0, 0.2, 0.5, 0.9, 1.0)))
    # the values of each record come from a drawn seed (drawing hundreds of them one by one is slow)
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    records = []
    for dataset in datasets:
        for target in targets:
            for eps in eps_values:
                for image in images:
                    for loss in losses:
                        if not complete and rng.random() < 0.25:
                            continue
                        success = rng.random() < success_rate
                        steps = rng.randint(0, 10) if success else rng.choice((None, 3, math.nan))
                        record = dict(dataset=dataset, image_id=image, target=target, loss=loss,
                                      success=success, steps=steps, metric=rng.choice(METRICS))
                        if eps is not None:
                            record["eps"] = eps
                        for key in ("linf", "l2", "ssim", "psnr"):
                            if rng.random() < 0.5:
                                record[key] = rng.choice((None, math.nan, 0.1, 0.3, 1.7, 42.0, rng.random()))
                        records.append(record)
    return records


def group_of(record: dict, with_eps: bool) -> tuple:
    key = (record["dataset"], record["target"])
    return key + (record.get("eps"),) if with_eps else key


def brute(records: list[dict]):
    """Per group: images attacked, per-loss records, and per-image successful records."""
    with_eps = any("eps" in r for r in records)
    groups: dict[tuple, dict] = defaultdict(lambda: {"images": set(), "by_loss": defaultdict(list),
                                                     "wins": defaultdict(list)})
    for r in records:
        g = groups[group_of(r, with_eps)]
        g["images"].add(r["image_id"])
        g["by_loss"][r["loss"]].append(r)
        if r["success"]:
            g["wins"][r["image_id"]].append(r)
    return with_eps, groups


def row_group(row: dict, with_eps: bool) -> tuple:
    """The group of a table row (rows carry an "eps" column exactly when some record has eps)."""
    assert ("eps" in row) == with_eps
    return group_of(row, with_eps)


def rows_by_group(rows: list[dict], with_eps: bool) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        out[row_group(row, with_eps)].append(row)
    return out


# ------------------------------------------------------------------------------------- ASR


@PROFILE
@given(records=record_sets(complete=True))
def test_fused_asr_dominates_every_loss(records) -> None:
    """Every loss attacks every image: fused ASR >= each loss's ASR of the group, <= 100; fused
    successes = images with at least one success; images = images attacked."""
    with_eps, groups = brute(records)
    fused = {row_group(row, with_eps): row for row in fuse(records)}
    per = rows_by_group(per_loss_table(records), with_eps)
    assert set(fused) == set(groups) == set(per)
    for key, g in groups.items():
        row = fused[key]
        assert row["loss"] == FUSED_LOSS
        assert row["images"] == len(g["images"])
        assert row["successes"] == len(g["wins"])
        assert 0.0 <= row["asr"] <= 100.0
        assert math.isclose(row["asr"], 100.0 * len(g["wins"]) / len(g["images"]))
        assert sorted(r["loss"] for r in per[key]) == sorted(g["by_loss"])
        for loss_row in per[key]:
            assert loss_row["images"] == len(g["images"])
            assert row["asr"] >= loss_row["asr"], (key, loss_row["loss"])
            assert row["successes"] >= loss_row["successes"]


@PROFILE
@given(records=record_sets(complete=False))
def test_counts_on_incomplete_grids(records) -> None:
    """Some (image, loss) pairs missing: each loss counts only the images it attacked; the fused
    row counts the union (so only successes, not ASR, must dominate)."""
    with_eps, groups = brute(records)
    fused = {row_group(row, with_eps): row for row in fuse(records)}
    per = rows_by_group(per_loss_table(records), with_eps)
    assert set(fused) == set(groups)
    for key, g in groups.items():
        row = fused[key]
        assert (row["images"], row["successes"]) == (len(g["images"]), len(g["wins"]))
        assert 0.0 <= row["asr"] <= 100.0
        for loss_row in per[key]:
            attacked = g["by_loss"][loss_row["loss"]]
            assert loss_row["images"] == len(attacked)
            assert loss_row["successes"] == sum(r["success"] for r in attacked)
            assert 0.0 <= loss_row["asr"] <= 100.0
            assert row["successes"] >= loss_row["successes"]


# ------------------------------------------------------------------------------------- distortion


@PROFILE
@given(records=record_sets(complete=False))
def test_fused_distortion_is_mean_of_per_image_minima(records) -> None:
    """Fused distortion = mean over images with a success of the minimum steps; on the images a
    loss succeeded on (the common set) that mean is <= the loss's own distortion. (The fused
    distortion over ALL fused successes need not be <= a loss's: a loss may succeed only on easy
    images, and fusion adds hard images that only another loss broke.)"""
    with_eps, groups = brute(records)
    fused = {row_group(row, with_eps): row for row in fuse(records)}
    per = rows_by_group(per_loss_table(records), with_eps)
    for key, g in groups.items():
        min_steps = {image: min(r["steps"] for r in wins) for image, wins in g["wins"].items()}
        row = fused[key]
        if not min_steps:
            assert row["distortion"] is None
            continue
        assert math.isclose(row["distortion"], sum(min_steps.values()) / len(min_steps))
        for loss_row in per[key]:
            successes = [r for r in g["by_loss"][loss_row["loss"]] if r["success"]]
            if not successes:
                assert loss_row["distortion"] is None
                continue
            assert math.isclose(loss_row["distortion"], sum(r["steps"] for r in successes) / len(successes))
            common = [min_steps[r["image_id"]] for r in successes]
            assert sum(common) / len(common) <= loss_row["distortion"] + 1e-12, (key, loss_row["loss"])


# ------------------------------------------------------------------------------------- choice


@PROFILE
@given(records=record_sets(complete=False))
def test_choose_per_image_picks_a_fastest_success(records) -> None:
    """The chosen record is an input record of that image, successful, with the fewest steps; ties
    go to the better metric (targeted: highest, untargeted: lowest), then the first loss name.
    fuse()'s "chosen" column names the same losses."""
    with_eps, groups = brute(records)
    chosen = choose_per_image(records)
    expected_keys = {key + (image,) for key, g in groups.items() for image in g["wins"]}
    assert set(chosen) == expected_keys
    fused = {row_group(row, with_eps): row for row in fuse(records)}
    for full_key, record in chosen.items():
        key, image = full_key[:-1], full_key[-1]
        wins = groups[key]["wins"][image]
        assert any(record == as_record(r) for r in wins), "not one of the image's successful records"
        assert record["success"] is True and record["image_id"] == image
        fewest = min(r["steps"] for r in wins)
        assert record["steps"] == fewest
        targeted = key[1] != UNTARGETED
        tied = [r for r in wins if r["steps"] == fewest]
        best_metric = max(r["metric"] for r in tied) if targeted else min(r["metric"] for r in tied)
        assert record["metric"] == best_metric
        assert record["loss"] == min(r["loss"] for r in tied if r["metric"] == best_metric)
        assert fused[key]["chosen"][image] == record["loss"]
    for key, row in fused.items():
        assert set(row["chosen"]) == set(groups[key]["wins"])


# ------------------------------------------------------------------------------------- order, summary


@PROFILE
@given(records=record_sets(complete=False), seed=st.integers(0, 2**32 - 1))
def test_results_do_not_depend_on_record_order(records, seed: int) -> None:
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)
    assert per_loss_table(shuffled) == per_loss_table(records)
    assert fuse(shuffled) == fuse(records)
    for a, b in zip(fuse(shuffled), fuse(records)):
        assert list(a["chosen"].items()) == list(b["chosen"].items())  # same order of images too
    assert summary_table(shuffled) == summary_table(records)
    assert list(choose_per_image(shuffled).items()) == list(choose_per_image(records).items())


@PROFILE
@given(records=record_sets(complete=False))
def test_summary_is_per_loss_rows_plus_one_fused_row_per_group(records) -> None:
    with_eps, groups = brute(records)
    per = per_loss_table(records)
    fused = fuse(records)
    summary = summary_table(records)
    assert len(summary) == len(per) + len(groups) == len(per) + len(fused)
    assert [row for row in summary if row["loss"] != FUSED_LOSS] == per
    assert [row for row in summary if row["loss"] == FUSED_LOSS] == fused
    # each group's rows are contiguous, per-loss rows by loss name, the fused row last
    seen: list[tuple] = []
    for row in summary:
        key = row_group(row, with_eps)
        if not seen or seen[-1] != key:
            assert key not in seen, "a group's rows are split"
            seen.append(key)
    assert len(seen) == len(groups)
    for key, rows in rows_by_group(summary, with_eps).items():
        assert rows[-1]["loss"] == FUSED_LOSS
        names = [row["loss"] for row in rows[:-1]]
        assert names == sorted(groups[key]["by_loss"])


def as_read_back(record: dict, rng: random.Random) -> dict:
    """The record as Parquet/CSV readers return it: NumPy scalars, NaN for missing values, integral
    floats for steps, "True"/"False" strings or numpy bools for success."""
    out = dict(record)
    out["success"] = rng.choice((np.bool_(record["success"]), str(record["success"]), int(record["success"])))
    steps = record["steps"]
    if steps is None or (isinstance(steps, float) and math.isnan(steps)):
        out["steps"] = rng.choice((None, math.nan, np.float64("nan")))
    else:
        out["steps"] = rng.choice((float(steps), np.int64(steps), np.float64(steps)))
    out["metric"] = np.float64(record["metric"])
    if isinstance(record["image_id"], int):
        out["image_id"] = np.int64(record["image_id"])
    if record.get("eps") is not None:
        out["eps"] = np.float64(record["eps"])
    for key in ("linf", "l2", "ssim", "psnr"):
        if key in record:
            value = record[key]
            out[key] = math.nan if value is None else np.float64(value)
    return out


@PROFILE
@given(records=record_sets(complete=False), seed=st.integers(0, 2**32 - 1))
def test_values_as_read_back_from_tables_give_the_same_tables(records, seed: int) -> None:
    rng = random.Random(seed)
    read_back = [as_read_back(r, rng) for r in records]
    assert per_loss_table(read_back) == per_loss_table(records)
    assert fuse(read_back) == fuse(records)
    assert summary_table(read_back) == summary_table(records)
    got, want = choose_per_image(read_back), choose_per_image(records)
    assert list(got) == list(want)
    assert [r["loss"] for r in got.values()] == [r["loss"] for r in want.values()]
