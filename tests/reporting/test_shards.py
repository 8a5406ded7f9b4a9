"""Per-rank record shards (medis.reporting.shards): merge, de-duplication of padded samples, stale files."""

from __future__ import annotations

from pathlib import Path

from medis.reporting import RecordWriter, read_records
from medis.reporting.shards import dedupe_records, merge_shards, shard_path, stale_shards, write_records
from tests.reporting.test_record_file import rec


def write_shard(folder: Path, rank: int, records: list[dict]) -> None:
    with RecordWriter(shard_path(folder, rank)) as writer:
        writer.append(records)


def test_merge_dedupes_padding_and_keeps_first(tmp_path: Path) -> None:
    # rank 1 re-attacked image "a" (sampler padding); its copy must not be counted twice
    write_shard(tmp_path, 0, [rec("a", steps=2), rec("b", steps=4)])
    write_shard(tmp_path, 1, [rec("c", steps=1), rec("a", steps=7)])
    merged = merge_shards(tmp_path)
    assert [(r["image_id"], r["steps"]) for r in merged] == [("a", 2), ("b", 4), ("c", 1)]
    assert read_records(tmp_path / "records.csv") == merged
    assert stale_shards(tmp_path) == []


def test_merge_keeps_rows_of_a_resumed_run_and_of_every_rank(tmp_path: Path) -> None:
    write_records(tmp_path / "records.csv", [rec("a"), rec("a", loss="dice")])
    write_shard(tmp_path, 0, [rec("b")])
    write_shard(tmp_path, 3, [rec("c")])  # from an interrupted run with 4 ranks, resumed with fewer
    merged = merge_shards(tmp_path)
    assert sorted((r["image_id"], r["loss"]) for r in merged) == [
        ("a", "bce"), ("a", "dice"), ("b", "bce"), ("c", "bce")]
    assert not shard_path(tmp_path, 3).exists()


def test_dedupe_distinguishes_target_and_loss() -> None:
    records = [rec("a"), rec("a", loss="dice"), rec("a", target="white"), rec("a")]
    assert len(dedupe_records(records)) == 3


def test_write_records_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    write_records(path, [rec("a")])
    write_records(path, [rec("b"), rec("c")])
    assert [r["image_id"] for r in read_records(path)] == ["b", "c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records.csv"]  # no temporary left behind
