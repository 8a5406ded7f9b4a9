"""Crash-safe record CSV (medis.reporting.record_file): round trip, reopened writers, cut rows, errors."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from medis.errors import DataError
from medis.reporting import RECORD_COLUMNS, RecordWriter, completed_keys, read_records
from medis.results.records import as_record


def rec(image_id: str, loss: str = "bce", target: str = "untargeted", success: bool = True,
        steps: int | None = 3, **extra) -> dict:
    """A full record; every field set, ``extra`` overrides or adds (e.g. eps)."""
    record = dict(
        dataset="kvasir", image_id=image_id, target=target, loss=loss, mode="medis", success=success,
        steps=steps, metric=0.25, trajectory=[0.9, 0.5, 0.25], pruned=False, linf=4 / 255, l2=1.5,
        linf_255=4.0, l2_255=382.5, ssim=0.97, psnr=38.5,
    )
    record.update(extra)
    return record


def test_columns_fixed_order() -> None:
    assert RECORD_COLUMNS[:6] == ("dataset", "image_id", "target", "loss", "mode", "eps")
    assert RECORD_COLUMNS[16] == "trajectory"
    assert RECORD_COLUMNS[17:] == ("attack", "forwards", "backwards", "transfer_metric", "transfer_success",
                                   "set_aside", "clean_metric", "real_metric", "real_success", "worst_metric",
                                   "worst_steps", "worst_linf", "worst_l2", "worst_ssim", "worst_psnr",
                                   "worst_real_metric", "worst_real_success", "worst_transfer_metric",
                                   "worst_transfer_success")


def test_optional_attack_columns_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    full = rec("a", attack="apgd", forwards=11, backwards=10, transfer_metric=0.25, transfer_success=True)
    with RecordWriter(path) as writer:
        writer.append([full, rec("b")])
    a, b = read_records(path)
    assert (a["attack"], a["forwards"], a["backwards"], a["transfer_metric"], a["transfer_success"]) == (
        "apgd", 11, 10, 0.25, True)
    assert all(b[key] is None for key in ("attack", "forwards", "backwards", "transfer_metric", "transfer_success"))
    with pytest.raises(ValueError, match="forwards"):
        RecordWriter(tmp_path / "other.csv").append([rec("c", forwards=1.5)])


def test_legacy_header_is_read_not_appended(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    legacy = RECORD_COLUMNS[:17]
    with RecordWriter(tmp_path / "new.csv") as writer:
        writer.append([rec("a")])
    with open(tmp_path / "new.csv", newline="") as source, open(path, "w", newline="") as target:
        csv.writer(target, lineterminator="\n").writerows(row[:len(legacy)] for row in csv.reader(source))
    (record,) = read_records(path)
    assert record["image_id"] == "a" and record["attack"] is None and record["forwards"] is None
    with pytest.raises(DataError, match="header"):
        RecordWriter(path)


def test_round_trip_types(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    records = [
        rec("a", eps=8 / 255),
        rec("b, with comma", success=False, steps=None, psnr=math.inf, trajectory=[], pruned=True),
        rec("c", success=False, steps=None, ssim=None, metric=float("nan"), trajectory=[1.0, math.inf]),  # no eps
    ]
    with RecordWriter(path) as writer:
        writer.append(records)
    assert writer.closed
    back = read_records(path)
    assert len(back) == 3
    a, b, c = back
    assert set(a) == set(RECORD_COLUMNS)
    assert a["eps"] == 8 / 255  # exact (repr round trip)
    assert a["linf"] == 4 / 255 and a["steps"] == 3 and isinstance(a["steps"], int)
    assert a["success"] is True and a["pruned"] is False
    assert a["trajectory"] == (0.9, 0.5, 0.25)
    assert b["image_id"] == "b, with comma"
    assert b["steps"] is None and b["success"] is False and b["pruned"] is True
    assert b["psnr"] == math.inf and b["trajectory"] == ()
    assert c["eps"] is None and c["ssim"] is None and c["metric"] is None  # NaN: not measured
    assert c["trajectory"] == (1.0, math.inf)
    # everything else equal to what was written
    expected = {key: None for key in RECORD_COLUMNS} | {"set_aside": False} | dict(records[0])  # absent: defaults
    assert dict(a) == expected | {"trajectory": tuple(expected["trajectory"])}
    assert a == as_record(records[0])


def test_header_once_across_reopened_writers(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "records.csv"
    with RecordWriter(path) as writer:
        writer.append([rec("a"), rec("b")])
    with RecordWriter(path) as writer:  # a resumed run
        writer.append([rec("c")])
        writer.append([])  # nothing to write: no change
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(RECORD_COLUMNS)
    assert sum(line.startswith("dataset,") for line in lines) == 1
    assert [r["image_id"] for r in read_records(path)] == ["a", "b", "c"]


def test_new_writer_without_rows_leaves_a_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    RecordWriter(path).close()
    assert path.read_text() == ",".join(RECORD_COLUMNS) + "\n"
    assert read_records(path) == []


def test_truncated_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    with RecordWriter(path) as writer:
        writer.append([rec("a"), rec("b")])
    full = path.read_text()
    with RecordWriter(path) as writer:
        writer.append([rec("c")])
    row_c = path.read_text()[len(full):]
    path.write_text(full + row_c[: len(row_c) // 2])  # a crash cut row c in its middle, no newline
    assert [r["image_id"] for r in read_records(path)] == ["a", "b"]


def test_reopen_after_crash_drops_cut_row_and_appends_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    with RecordWriter(path) as writer:
        writer.append([rec("a")])
    with open(path, "a") as handle:
        handle.write("kvasir,b,untargeted,bce,med")  # cut row
    with RecordWriter(path) as writer:
        writer.append([rec("b"), rec("c")])
    assert [r["image_id"] for r in read_records(path)] == ["a", "b", "c"]


def test_cut_header_only_gives_no_records(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    path.write_text("dataset,image_id,tar")
    assert read_records(path) == []
    with RecordWriter(path) as writer:  # the cut header is replaced by a whole one
        writer.append([rec("a")])
    assert [r["image_id"] for r in read_records(path)] == ["a"]


def test_wrong_field_count_raises_with_line_number(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    with RecordWriter(path) as writer:
        writer.append([rec("a"), rec("b")])
    with open(path, "a") as handle:
        handle.write("kvasir,c,untargeted\n")  # a complete but malformed line: line 4
    with pytest.raises(DataError, match=rf"records\.csv: line 4: 3 fields, expected {len(RECORD_COLUMNS)}"):
        read_records(path)


def test_bad_value_raises_with_line_number(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    with RecordWriter(path) as writer:
        writer.append([rec("a")])
    text = path.read_text().replace(",True,", ",yes,", 1)
    path.write_text(text)
    with pytest.raises(DataError, match=r"line 2: column 'success' is 'yes'"):
        read_records(path)


def test_foreign_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match="line 1"):
        read_records(path)
    with pytest.raises(DataError, match="refusing to append"):
        RecordWriter(path)
    assert path.read_text() == "a,b,c\n1,2,3\n"  # untouched


def test_invalid_batch_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    bad = rec("b")
    bad["ssim"] = "high"
    with RecordWriter(path) as writer:
        with pytest.raises(ValueError, match="ssim"):
            writer.append([rec("a"), bad])
        with pytest.raises(ValueError, match="steps"):
            writer.append([rec("c", steps=2.5)])
    assert read_records(path) == []


def test_append_after_close_raises(tmp_path: Path) -> None:
    writer = RecordWriter(tmp_path / "records.csv")
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        writer.append([rec("a")])


def test_each_append_is_one_write_and_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import medis.reporting.record_file as record_file

    synced: list[int] = []
    monkeypatch.setattr(record_file.os, "fsync", lambda fd: synced.append(fd))
    path = tmp_path / "records.csv"
    writer = RecordWriter(path)
    before = len(synced)
    writes: list[bytes] = []
    real_file = writer._file

    class Spy:
        def __getattr__(self, name):
            return getattr(real_file, name)

        def write(self, data: bytes) -> int:
            writes.append(bytes(data))
            return real_file.write(data)

    writer._file = Spy()  # type: ignore[assignment]
    writer.append([rec("a"), rec("b"), rec("c")])
    writer._file = real_file
    writer.close()
    assert len(writes) == 1 and writes[0].count(b"\n") == 3
    assert len(synced) == before + 1


def test_completed_keys(tmp_path: Path) -> None:
    records = [rec("a"), rec("a", loss="dice"), rec("b", target="white"), rec("a")]
    assert completed_keys(records) == {
        ("kvasir", "a", "untargeted", "bce"),
        ("kvasir", "a", "untargeted", "dice"),
        ("kvasir", "b", "white", "bce"),
    }
    path = tmp_path / "records.csv"
    with RecordWriter(path) as writer:
        writer.append([dict(rec("1"), image_id=1)])  # a non-str id is stored as text
    assert completed_keys(read_records(path)) == {("kvasir", "1", "untargeted", "bce")}


def test_a_row_already_in_the_file_is_refused_never_dropped(tmp_path: Path) -> None:
    """A resumed run's writer knows the keys on disk: a repeated (dataset, image, target, loss), in the
    file or within a batch, is a one-line DataError naming the key, and nothing of that batch is written."""
    path = tmp_path / "records.csv"
    with RecordWriter(path) as writer:
        with pytest.raises(DataError, match=r"second record .*'kvasir', 'a', 'untargeted', 'bce'"):
            writer.append([rec("a"), rec("b"), rec("a", success=False)])
        written = writer.append([rec("a"), rec("b")])
        assert [r.image_id for r in written] == ["a", "b"]
    with RecordWriter(path) as writer:  # resumed
        assert writer.keys == {("kvasir", "a", "untargeted", "bce"), ("kvasir", "b", "untargeted", "bce")}
        with pytest.raises(DataError, match="second record"):
            writer.append([rec("b", loss="dice"), rec("b", steps=7)])
        written = writer.append([rec("b", loss="dice"), rec("a", target="white")])
        assert [(r.image_id, r.target, r.loss) for r in written] == [("b", "untargeted", "dice"), ("a", "white", "bce")]
    rows = read_records(path)
    assert len(rows) == 4 and len(completed_keys(rows)) == 4
    assert next(r for r in rows if r.image_id == "b" and r.loss == "bce").steps == 3  # the first one stays
    # the same file name in two sets is two records
    with RecordWriter(path) as writer:
        writer.append([rec("a", dataset="polyp/CVC-300"), rec("a", dataset="polyp/Kvasir")])
