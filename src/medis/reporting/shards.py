"""Per-rank record shards of a multi-process (DDP) attack, and their merge into ``records.csv``.

With several processes each rank streams its records to ``records.rank<r>.csv`` (one writer per
file, so no two processes ever append to the same file). At the end rank 0 merges
``records.csv`` (rows kept from an earlier, resumed run) and every shard into ``records.csv``, keeping the FIRST record of every (dataset, image, target, loss): the
distributed sampler pads the last batch by repeating samples, so some images are attacked twice
and must be counted once. The merged file is written atomically (temporary file, then
``os.replace``) before the shards are deleted, so a crash at any point loses no finished row.

Pure Python: no torch, no Lightning.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from medis.reporting.atomic import atomic_write_text
from medis.reporting.record_file import read_records, records_csv_text
from medis.results.records import Record, record_key

__all__ = ["RECORDS_NAME", "dedupe_records", "merge_shards", "shard_path", "stale_shards", "write_records"]

RECORDS_NAME = "records.csv"
"""The merged records file of a run folder."""


def shard_path(folder: str | os.PathLike, rank: int) -> Path:
    """``<folder>/records.rank<rank>.csv``: the file rank ``rank`` streams to."""
    return Path(folder) / f"records.rank{rank}.csv"


def stale_shards(folder: str | os.PathLike) -> list[Path]:
    """Every ``records.rank*.csv`` in ``folder``, sorted by name."""
    return sorted(Path(folder).glob("records.rank*.csv"))


def dedupe_records(records: Iterable[Record]) -> list[Record]:
    """The records with only the FIRST of each (dataset, image_id, target, loss) key kept, in order."""
    seen: set[tuple[str, str, str, str]] = set()
    kept: list[Record] = []
    for record in records:
        key = record_key(record)
        if key not in seen:
            seen.add(key)
            kept.append(record)
    return kept


def write_records(path: str | os.PathLike, records: Iterable[Record | Mapping]) -> Path:
    """Write ``records`` as a complete records CSV at ``path``, atomically (temp file, ``os.replace``)."""
    return atomic_write_text(path, records_csv_text(records))


def merge_shards(folder: str | os.PathLike) -> list[Record]:
    """Merge ``records.csv`` and every ``records.rank*.csv`` of ``folder`` into ``records.csv``.

    Shards of any rank count: a run resumed with fewer processes than the interrupted one must not
    lose the rows of the missing ranks (a fresh run deletes old shards before it starts).

    Returns:
        The merged records (first of each key kept), as written; the shards are deleted.

    Raises:
        DataError: a file is not a records CSV.
    """
    folder = Path(folder)
    merged_path = folder / RECORDS_NAME
    shards = stale_shards(folder)
    sources = ([merged_path] if merged_path.exists() else []) + shards
    records = dedupe_records(record for source in sources for record in read_records(source))
    write_records(merged_path, records)
    for shard in shards:
        shard.unlink()
    return records
