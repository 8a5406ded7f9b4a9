"""Summary files (medis.reporting.summary) on a hand-made record table; numbers worked by hand.

Table: dataset kvasir, losses bce and dice, images a, b, c, targets random and untargeted.

untargeted  bce : a ok 1, b ok 2, c FAIL         -> ASR 66.7, distortion 1.50
            dice: a ok 3, b FAIL, c ok 4         -> ASR 66.7, distortion 3.50
            fused: a 1 (bce), b 2 (bce), c 4 (dice) -> ASR 100.0, distortion 2.33
            chosen linf 2/255, 4/255, 6/255      -> mean 4.00/255
random      bce : a ok 5 (mIoU .80), b FAIL, c FAIL -> ASR 33.3, distortion 5.00
            dice: a ok 5 (mIoU .90), b ok 2, c FAIL -> ASR 66.7, distortion 3.50
            fused: a tie at 5 -> dice (higher mIoU), b 2 (dice) -> ASR 66.7, distortion 3.50
            chosen linf 8/255, 4/255 -> mean 6.00/255 (7.00 if the tie went to bce)
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import pytest

import medis.reporting.summary as summary_mod
from medis.reporting import RecordWriter, read_records, summary_rows, write_summary
from medis.reporting.summary import markdown_table
from medis.results.fusion import summary_table


def rec(image_id: str, loss: str, target: str, success: bool, steps: int | None, metric: float,
        linf: float, **extra) -> dict:
    record = dict(
        dataset="kvasir", image_id=image_id, target=target, loss=loss, mode="medis", success=success,
        steps=steps, metric=metric, trajectory=[metric], pruned=False, linf=linf / 255, l2=linf / 10,
        linf_255=linf, l2_255=linf / 10 * 255, ssim=1.0 - linf / 100, psnr=math.inf if linf == 0 else 40.0 - linf,
    )
    record.update(extra)
    return record


def table() -> list[dict]:
    """The records of the module docstring, targeted ones first (to test column ordering)."""
    return [
        rec("a", "bce", "random", True, 5, 0.80, 10),
        rec("b", "bce", "random", False, None, 0.10, 12),
        rec("c", "bce", "random", False, None, 0.05, 12),
        rec("a", "dice", "random", True, 5, 0.90, 8),
        rec("b", "dice", "random", True, 2, 0.85, 4),
        rec("c", "dice", "random", False, None, 0.20, 12),
        rec("a", "bce", "untargeted", True, 1, 0.10, 2),
        rec("b", "bce", "untargeted", True, 2, 0.20, 4),
        rec("c", "bce", "untargeted", False, None, 0.70, 12),
        rec("a", "dice", "untargeted", True, 3, 0.15, 9),
        rec("b", "dice", "untargeted", False, None, 0.60, 12),
        rec("c", "dice", "untargeted", True, 4, 0.30, 6),
    ]


HEADER = "| loss | untargeted ASR % | untargeted distortion | random ASR % | random distortion |"


def test_markdown_by_hand(tmp_path: Path) -> None:
    csv_path, md_path = write_summary(table(), tmp_path / "run")
    assert (csv_path, md_path) == (tmp_path / "run" / "summary.csv", tmp_path / "run" / "summary.md")
    lines = md_path.read_text(encoding="utf-8").splitlines()
    assert "## kvasir" in lines
    start = lines.index(HEADER)  # untargeted columns come before random ones
    assert lines[start + 1] == "| --- | --- | --- | --- | --- |"
    assert lines[start + 2] == "| bce | 66.7 | 1.50 | 33.3 | 5.00 |"
    assert lines[start + 3] == "| dice | 66.7 | 3.50 | 66.7 | 3.50 |"
    assert lines[start + 4] == "| parallel fusion | 100.0 | 2.33 | 66.7 | 3.50 |"  # fused row last
    assert lines[start + 5] == ""
    assert lines[start + 6] == "Parallel fusion, per target:"
    untargeted, random = lines[start + 8], lines[start + 9]
    # untargeted chosen: (a,bce) linf 2, (b,bce) 4, (c,dice) 6; random: (a,dice) 8, (b,dice) 4
    assert untargeted == ("- untargeted: 3 images attacked, 0 set aside; 0 of 3 successes at the first record; "
                          "L∞ 4.00/255, L2 0.40, SSIM 0.960, PSNR 36.00 dB")
    assert random.startswith("- random: 3 images attacked, 0 set aside; 0 of 2 successes at the first record; "
                             "L∞ 6.00/255")


def test_csv_matches_fusion(tmp_path: Path) -> None:
    csv_path, _ = write_summary(table(), tmp_path)
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["dataset", "target", "loss", "images", "set_aside", "pruned", "successes", "asr",
                                     "distortion", "at_first", "real_asr", "linf", "l2", "ssim", "psnr"]
        got = list(reader)
    expected = summary_table(table())
    assert len(got) == len(expected) == 6
    for row, want in zip(got, expected):
        assert (row["dataset"], row["target"], row["loss"]) == (want["dataset"], want["target"], want["loss"])
        assert int(row["images"]) == want["images"] and int(row["successes"]) == want["successes"]
        assert float(row["asr"]) == pytest.approx(want["asr"])
        for key in ("distortion", "linf", "l2", "ssim", "psnr"):
            assert (row[key] == "") == (want[key] is None)
            if want[key] is not None:
                assert float(row[key]) == pytest.approx(want[key])
    fused = [row for row in got if row["loss"] == "parallel fusion"]
    assert [(r["target"], float(r["asr"]), round(float(r["distortion"]), 4)) for r in fused] == [
        ("random", pytest.approx(200 / 3), 3.5), ("untargeted", 100.0, round(7 / 3, 4))]


def test_csv_round_trip_records_and_summary(tmp_path: Path) -> None:
    """Records read back from CSV (eps key None everywhere) give the same tables, without eps."""
    with RecordWriter(tmp_path / "records.csv") as writer:
        writer.append(table())
    back = read_records(tmp_path / "records.csv")
    assert all(r["eps"] is None for r in back)
    rows = summary_rows(back)
    assert all("eps" not in row for row in rows)
    assert [(r["target"], r["loss"], r["asr"], r["distortion"]) for r in rows] == [
        (r["target"], r["loss"], r["asr"], r["distortion"]) for r in summary_table(table())]
    _, md = write_summary(back, tmp_path)
    assert "| parallel fusion | 100.0 | 2.33 | 66.7 | 3.50 |" in md.read_text(encoding="utf-8")


def test_eps_gives_one_table_per_eps(tmp_path: Path) -> None:
    records = [dict(r, eps=4 / 255) for r in table()]
    records += [dict(r, eps=8 / 255, steps=None, success=False) for r in table()]
    rows = summary_rows(records)
    assert {row["eps"] for row in rows} == {4 / 255, 8 / 255}
    csv_path, md_path = write_summary(records, tmp_path)
    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames[:4] == ["dataset", "target", "eps", "loss"]
        assert len(list(reader)) == 12
    text = md_path.read_text(encoding="utf-8")
    assert text.count(HEADER) == 2
    assert "## kvasir (eps = 0.0156863 (4/255))" in text
    first, second = text.split("## kvasir (eps = 0.0313725 (8/255))")
    assert "| parallel fusion | 100.0 | 2.33 | 66.7 | 3.50 |" in first
    assert "| parallel fusion | 0.0 | - | 0.0 | - |" in second  # nothing succeeded: "-"
    assert "untargeted: 3 images attacked, 0 set aside; 0 of 0 successes at the first record; L∞ -/255, L2 -, SSIM -, PSNR - dB" in second


def test_target_order_and_missing_cells(tmp_path: Path) -> None:
    base = rec("a", "bce", "untargeted", True, 1, 0.1, 0)
    records = [dict(base, target=t) for t in ("zebra", "inverted", "white", "black", "random", "most_similar",
                                              "alpha", "untargeted")]
    records.append(dict(base, target="white", loss="dice", steps=2))  # dice only on white
    _, md = write_summary(records, tmp_path)
    lines = md.read_text(encoding="utf-8").splitlines()
    header = next(line for line in lines if line.startswith("| loss |"))
    order = [cell.removesuffix(" ASR %") for cell in header.strip("| ").split(" | ") if cell.endswith("ASR %")]
    assert order == ["untargeted", "random", "most_similar", "white", "black", "inverted", "alpha", "zebra"]
    dice = next(line for line in lines if line.startswith("| dice |")).strip("| ").split(" | ")
    assert dice[1:] == ["-", "-"] * 3 + ["100.0", "2.00"] + ["-", "-"] * 4
    assert "PSNR inf dB" in md.read_text(encoding="utf-8")  # linf 0 -> psnr inf


def test_atomic_write_leaves_no_temp_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_summary(table(), tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["summary.csv", "summary.md"]
    old = (tmp_path / "summary.md").read_text(encoding="utf-8")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(summary_mod.os, "replace", broken_replace)
    records = table()
    records[0]["steps"] = 9
    with pytest.raises(OSError, match="disk full"):
        write_summary(records, tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["summary.csv", "summary.md"]  # temp file removed
    assert (tmp_path / "summary.md").read_text(encoding="utf-8") == old  # old report intact


def test_invalid_records_write_nothing(tmp_path: Path) -> None:
    bad = table()
    bad[0]["steps"] = None  # successful without steps
    with pytest.raises(ValueError, match="steps"):
        write_summary(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_markdown_table_helper() -> None:
    assert markdown_table(["a", "b|c"], [["1", "x|y"]]) == "| a | b\\|c |\n| --- | --- |\n| 1 | x\\|y |\n"
    with pytest.raises(ValueError, match="row 0 has 1 cells"):
        markdown_table(["a", "b"], [["1"]])


def test_empty_records(tmp_path: Path) -> None:
    csv_path, md_path = write_summary([], tmp_path)
    assert csv_path.read_text() == ("dataset,target,loss,images,set_aside,pruned,successes,asr,distortion,at_first,"
                                    "real_asr,linf,l2,ssim,psnr\n")
    assert "No records." in md_path.read_text(encoding="utf-8")
