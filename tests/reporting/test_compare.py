"""Attack comparison (medis.reporting.compare) on hand-made records; numbers worked by hand.

Group 1: kvasir, untargeted, eps 8/255; images a (clean 0.80) and b (clean 0.60).

    medis (no ``attack`` key)       traj               success  fwd bwd
      a bce   [.80 .50 .30]   ok 2        3   2
      a dice  [.80 .60 .40]   FAIL        3   2
      b bce   [.60 .55 .50]   FAIL        3   2
      b dice  [.60 .58 .57]   FAIL        3   2
      -> images 2, clean .70, adv (min) a .30, b .50 -> .40, ASR 50.0, fwd 6.0, bwd 4.0
    pgd
      a ce    [.80 .45]       FAIL        2   1
      a dice  [.80 .70]       FAIL        2   1
      b ce    [.60 .20]       ok 1        2   1
      b dice  [.60 .35]       ok 1        2   1
      -> images 2, clean .70, adv a .45, b .20 -> .325, ASR 50.0, fwd 4.0, bwd 2.0
    ensemble: adv a min(.30, .45) = .30, b min(.50, .20) = .20 -> .25 (< .40, < .325);
      ASR 100.0 (a by medis, b by pgd; > 50.0 each); fwd 6 + 4 = 10.0, bwd 4 + 2 = 6.0
    (both attacks have a loss "dice": the ensemble must not see it as a duplicate)

Group 2: kvasir, white (targeted), eps 8/255; medis only attacked image a.

    pgd
      a ce    [.10 .50 .70]   ok 2        3   2
      b ce    [.20 .30]       FAIL        2   1
      -> images 2, clean .15, adv (max) a .70, b .30 -> .50, ASR 50.0, fwd 2.5, bwd 1.5
    medis (attack="medis")
      a bce   [.10 .90]       ok 1        (no pass counts)
      -> images 1, clean .10, adv .90, ASR 100.0, fwd/bwd None
    ensemble: images 2, clean .15, adv a max(.70, .90) = .90, b .30 -> .60, ASR 50.0, fwd/bwd None
      (a medis record lacks the counts)
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from medis.reporting.attack_tables import attack_comparison_markdown, format_eps, write_attack_comparison
from medis.reporting.compare import ATTACK_COLUMNS, TRANSFER_COLUMNS, attack_comparison

EPS8 = 8 / 255


def rec(image_id: str, loss: str, target: str, trajectory: list[float], steps: int | None,
        forwards: int | None = None, backwards: int | None = None, **extra) -> dict:
    """A record; ``steps=None`` marks a failure, the metric is the trajectory's last score."""
    success = steps is not None
    record = dict(
        dataset="kvasir", image_id=image_id, target=target, loss=loss, mode="medis", eps=EPS8,
        success=success, steps=steps, metric=trajectory[-1], pruned=False, linf=EPS8, l2=0.5,
        linf_255=8.0, l2_255=127.5, ssim=0.9, psnr=35.0, trajectory=trajectory,
    )
    if forwards is not None:
        record.update(forwards=forwards, backwards=backwards)
    record.update(extra)
    return record


def untargeted() -> list[dict]:
    """Group 1 of the module docstring (medis records carry no ``attack`` key)."""
    return [
        rec("a", "bce", "untargeted", [0.80, 0.50, 0.30], 2, 3, 2),
        rec("a", "dice", "untargeted", [0.80, 0.60, 0.40], None, 3, 2),
        rec("b", "bce", "untargeted", [0.60, 0.55, 0.50], None, 3, 2),
        rec("b", "dice", "untargeted", [0.60, 0.58, 0.57], None, 3, 2),
        rec("a", "ce", "untargeted", [0.80, 0.45], None, 2, 1, attack="pgd"),
        rec("a", "dice", "untargeted", [0.80, 0.70], None, 2, 1, attack="pgd"),
        rec("b", "ce", "untargeted", [0.60, 0.20], 1, 2, 1, attack="pgd"),
        rec("b", "dice", "untargeted", [0.60, 0.35], 1, 2, 1, attack="pgd"),
    ]


def targeted() -> list[dict]:
    """Group 2 of the module docstring."""
    return [
        rec("a", "ce", "white", [0.10, 0.50, 0.70], 2, 3, 2, attack="pgd"),
        rec("b", "ce", "white", [0.20, 0.30], None, 2, 1, attack="pgd"),
        rec("a", "bce", "white", [0.10, 0.90], 1, attack="medis"),
    ]


def by_attack(rows: list[dict], target: str) -> dict[str, dict]:
    return {row["attack"]: row for row in rows if row["target"] == target}


def test_rows_order_and_columns() -> None:
    rows = attack_comparison(targeted() + untargeted())  # targeted first: targets still in registry order
    # attacks in order of first appearance (pgd's white records come first), the ensemble last
    assert [(row["target"], row["attack"]) for row in rows] == [
        ("untargeted", "pgd"), ("untargeted", "medis"), ("untargeted", "ensemble"),
        ("white", "pgd"), ("white", "medis"), ("white", "ensemble"),
    ]
    assert all(tuple(row) == ATTACK_COLUMNS for row in rows)  # no transfer columns without transfer data
    assert all(row["dataset"] == "kvasir" and row["eps"] == EPS8 for row in rows)


def test_untargeted_members_by_hand() -> None:
    rows = by_attack(attack_comparison(untargeted()), "untargeted")
    medis, pgd = rows["medis"], rows["pgd"]  # the records without "attack" are medis's
    assert medis["images"] == 2 and pgd["images"] == 2
    assert medis["clean_miou"] == pytest.approx(0.70) and pgd["clean_miou"] == pytest.approx(0.70)
    assert medis["adv_miou"] == pytest.approx(0.40)
    assert pgd["adv_miou"] == pytest.approx(0.325)
    assert medis["asr"] == pytest.approx(50.0) and pgd["asr"] == pytest.approx(50.0)
    assert (medis["forwards"], medis["backwards"]) == (pytest.approx(6.0), pytest.approx(4.0))
    assert (pgd["forwards"], pgd["backwards"]) == (pytest.approx(4.0), pytest.approx(2.0))


def test_untargeted_ensemble_is_the_per_image_worst_case() -> None:
    rows = by_attack(attack_comparison(untargeted()), "untargeted")
    ensemble = rows["ensemble"]
    assert ensemble["images"] == 2
    assert ensemble["clean_miou"] == pytest.approx(0.70)
    assert ensemble["adv_miou"] == pytest.approx(0.25)  # mean of min(.30, .45) and min(.50, .20)
    assert ensemble["asr"] == pytest.approx(100.0)
    for member in ("medis", "pgd"):
        assert ensemble["asr"] >= rows[member]["asr"]
        assert ensemble["adv_miou"] <= rows[member]["adv_miou"]
    assert ensemble["forwards"] == pytest.approx(10.0) and ensemble["backwards"] == pytest.approx(6.0)


def test_targeted_group_best_is_max_and_image_counts_differ() -> None:
    rows = by_attack(attack_comparison(targeted()), "white")
    pgd, medis, ensemble = rows["pgd"], rows["medis"], rows["ensemble"]
    assert (pgd["images"], medis["images"], ensemble["images"]) == (2, 1, 2)
    assert pgd["clean_miou"] == pytest.approx(0.15) and medis["clean_miou"] == pytest.approx(0.10)
    assert pgd["adv_miou"] == pytest.approx(0.50)  # max: .70 and .30
    assert medis["adv_miou"] == pytest.approx(0.90)
    assert ensemble["adv_miou"] == pytest.approx(0.60)  # max(.70, .90) and .30
    assert ensemble["clean_miou"] == pytest.approx(0.15)
    assert (pgd["asr"], medis["asr"], ensemble["asr"]) == (pytest.approx(50.0), pytest.approx(100.0),
                                                           pytest.approx(50.0))
    assert (pgd["forwards"], pgd["backwards"]) == (pytest.approx(2.5), pytest.approx(1.5))
    assert medis["forwards"] is None and medis["backwards"] is None
    assert ensemble["forwards"] is None and ensemble["backwards"] is None  # a record lacks the counts


def test_transfer_columns_by_hand() -> None:
    # (transfer_metric, transfer_success) per record of untargeted(), in order; pgd b dice has none.
    transfer = [(0.35, True), (0.50, False), (0.60, False), (0.65, False),
                (0.55, False), (0.75, False), (0.30, True), (None, None)]
    records = [dict(record, transfer_metric=metric, transfer_success=ok)
               for record, (metric, ok) in zip(untargeted(), transfer)]
    rows = by_attack(attack_comparison(records), "untargeted")
    assert all(tuple(row)[-2:] == TRANSFER_COLUMNS for row in rows.values())
    assert rows["medis"]["transfer_miou"] == pytest.approx(0.475)  # min: .35 and .60
    assert rows["pgd"]["transfer_miou"] == pytest.approx(0.425)  # .55 and .30
    assert rows["ensemble"]["transfer_miou"] == pytest.approx(0.325)  # .35 and .30
    assert rows["medis"]["transfer_asr"] == pytest.approx(50.0)
    assert rows["pgd"]["transfer_asr"] == pytest.approx(50.0)
    assert rows["ensemble"]["transfer_asr"] == pytest.approx(100.0)
    assert rows["medis"]["adv_miou"] == pytest.approx(0.40)  # the white-box columns are unchanged


def test_attack_none_or_empty_is_medis_and_ensemble_records_go_to_their_prefix() -> None:
    records = untargeted()
    records[0]["attack"], records[1]["attack"] = None, ""
    assert [row["attack"] for row in attack_comparison(records)] == ["medis", "pgd", "ensemble"]
    run = [rec("a", "apgd/masked_bce", "untargeted", [0.8, 0.1], 1, attack="ensemble"),
           rec("a", "segpgd/segpgd", "untargeted", [0.8, 0.3], None, attack="segpgd"),
           rec("a", "segpgd", "untargeted", [0.8, 0.6], None, attack="cospgd")]
    rows = {row["attack"]: row for row in attack_comparison(run)}
    assert list(rows) == ["apgd", "segpgd", "cospgd", "ensemble"]  # order of first appearance
    assert rows["apgd"]["asr"] == pytest.approx(100.0) and rows["segpgd"]["asr"] == pytest.approx(0.0)
    assert rows["ensemble"]["adv_miou"] == pytest.approx(0.1)


def test_missing_trajectory_and_other_bad_records_raise() -> None:
    for bad in ({"trajectory": []}, {"trajectory": None}):
        records = untargeted()
        records[2].update(bad)
        with pytest.raises(ValueError, match=r"record #2 .*image_id='b'.* has no trajectory"):
            attack_comparison(records)
    records = untargeted()
    del records[5]["trajectory"]
    with pytest.raises(ValueError, match="has no trajectory"):
        attack_comparison(records)
    with pytest.raises(ValueError, match="reserved"):
        attack_comparison([rec("a", "bce", "untargeted", [0.8, 0.1], 1, attack="ensemble")])
    with pytest.raises(ValueError, match="duplicate"):
        attack_comparison(untargeted() + untargeted()[:1])


def test_by_key_keeps_jobs_apart() -> None:
    records = [dict(record, job="steps=10") for record in untargeted()]
    records += [dict(record, job="steps=50") for record in untargeted()[:4]]  # medis only
    rows = attack_comparison(records, by=("job",))
    assert [(row["job"], row["attack"]) for row in rows] == [
        ("steps=10", "medis"), ("steps=10", "pgd"), ("steps=10", "ensemble"),
        ("steps=50", "medis"), ("steps=50", "ensemble"),
    ]
    assert list(rows[0])[:2] == ["job", "dataset"]
    assert rows[2]["asr"] == pytest.approx(100.0)  # not diluted by the other job
    assert rows[4]["asr"] == pytest.approx(50.0) and rows[4]["adv_miou"] == pytest.approx(0.40)


def test_format_eps() -> None:
    assert format_eps(8 / 255) == "8/255"
    assert format_eps(0.0) == "0/255"
    assert format_eps(1.0) == "255/255"
    assert format_eps(0.03) == "0.03"
    assert format_eps(None) == "none"
    assert format_eps(float("nan")) == "none"


def test_markdown_by_hand() -> None:
    other_eps = [dict(record, eps=0.03) for record in untargeted()[4:]]  # pgd only at eps 0.03
    text = attack_comparison_markdown(attack_comparison(untargeted() + targeted() + other_eps))
    untargeted_part, white_part = text.split("## kvasir, untargeted\n")[1].split("## kvasir, white\n")
    assert untargeted_part.startswith("\nClean score: 0.700 (mIoU with the ground truth, lower")
    assert ("| attack | score / ASR % (eps 0.03) | passes / image (eps 0.03) "
            "| score / ASR % (eps 8/255) | passes / image (eps 8/255) |") in untargeted_part
    assert "| medis | - | - | 0.400 / 50.0 | 10.0 |" in untargeted_part
    assert "| pgd | 0.325 / 50.0 | 6.0 | 0.325 / 50.0 | 6.0 |" in untargeted_part
    assert "| ensemble | 0.325 / 50.0 | 6.0 | 0.250 / 100.0 | 16.0 |" in untargeted_part
    table = [line for line in untargeted_part.splitlines() if line.startswith("| ")]
    assert table[-1].startswith("| ensemble |")
    assert white_part.startswith("\nClean score: 0.150 (score toward the target, higher")
    assert "| medis | 0.900 / 100.0 | - |" in white_part
    assert "| ensemble | 0.600 / 50.0 | - |" in white_part
    assert "transfer" not in text.split("\n## ")[1]
    empty = attack_comparison_markdown([])
    assert "No records." in empty


def test_markdown_eps_none_job_and_transfer() -> None:
    records = [dict(record, eps=None, job="", transfer_metric=0.5, transfer_success=False)
               for record in untargeted()]
    text = attack_comparison_markdown(attack_comparison(records, by=("job",)))
    assert "## kvasir, untargeted, job: -\n" in text
    assert "| attack | score / ASR % (eps none) | passes / image (eps none) | transfer score / ASR % (eps none) |" in text
    assert "| ensemble | 0.250 / 100.0 | 16.0 | 0.500 / 0.0 |" in text


def test_write_attack_comparison(tmp_path: Path) -> None:
    csv_path, md_path = write_attack_comparison(untargeted(), tmp_path / "out")
    assert (csv_path.name, md_path.name) == ("attacks.csv", "attacks.md")
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == ATTACK_COLUMNS
        rows = list(reader)
    assert [row["attack"] for row in rows] == ["medis", "pgd", "ensemble"]
    assert float(rows[2]["adv_miou"]) == pytest.approx(0.25) and rows[2]["asr"] == "100.0"
    assert rows[0]["images"] == "2" and float(rows[0]["eps"]) == pytest.approx(EPS8)
    assert "| ensemble | 0.250 / 100.0 | 16.0 |" in md_path.read_text(encoding="utf-8")
    with pytest.raises(ValueError):
        write_attack_comparison([dict(untargeted()[0], trajectory=[])], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_import_needs_no_torch() -> None:
    code = "import sys, medis.reporting.compare; print('torch' in sys.modules, 'pandas' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False False"
