"""Read an offline W&B run back from its ``run-<id>.wandb`` file, without a server or network.

W&B writes every run, online or offline, as a transaction log: a 7-byte header (``:W&B``, magic
0xBEE1, version 0) and then records framed as in LevelDB's log format (32 KiB blocks; each chunk a
7-byte header ``crc32, length, type`` with type full/first/middle/last), each record one protobuf
``wandb.proto.wandb_internal_pb2.Record`` (W&B's own schema, shipped with the ``wandb`` package).
This module reassembles the records and reads the run's name, group, job type, tags, config,
summary, logged keys and tables (tables and images are files beside the log, under ``files/``).

    python -m medis.reporting.wandb_offline outputs/attack/runs/<time>/wandb/offline-run-*

prints what a run holds.
"""

from __future__ import annotations

import json
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

__all__ = ["OfflineRun", "read_offline_run", "wandb_records"]

HEADER = struct.Struct("<4sHB")
CHUNK = struct.Struct("<IHB")
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path: Path) -> Iterator[Any]:
    """The protobuf records of a ``.wandb`` transaction log, in order.

    Raises:
        ValueError: not a W&B log (bad header) or a chunk runs past the end of the file.
    """
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    ident, magic, _version = HEADER.unpack_from(data, 0)
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path}: not a W&B transaction log")
    position, pending = HEADER.size, b""
    while position + CHUNK.size <= len(data):
        room = BLOCK - position % BLOCK
        if room < CHUNK.size:  # block trailer
            position += room
            continue
        _crc, length, kind = CHUNK.unpack_from(data, position)
        if kind == 0 and length == 0:  # zero padding to the end of the block
            position += room
            continue
        start = position + CHUNK.size
        if start + length > len(data):
            raise ValueError(f"{path}: record chunk at byte {position} runs past the end of the file")
        pending += data[start:start + length]
        position = start + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def _key(item: Any) -> str:
    return item.key or item.nested_key[0]


def _set(target: dict[str, Any], item: Any) -> None:
    """Set an item's JSON value at its key, or at its nested key path (``[key, field, ...]``)."""
    path = [item.key] if item.key else list(item.nested_key)
    for part in path[:-1]:
        inner = target.get(part)
        target = target.setdefault(part, {}) if isinstance(inner, dict) or inner is None else {}
    target[path[-1]] = json.loads(item.value_json)


@dataclass
class OfflineRun:
    """What an offline W&B run holds.

    Attributes:
        folder: the ``offline-run-*`` folder.
        name, group, job_type, tags: the run's display name, group, job type and tags.
        config: top-level config keys -> values (JSON-decoded).
        summary: summary keys -> last value (JSON-decoded; a table or image entry is a dict).
        history_keys: every key logged with ``log``.
    """

    folder: Path
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history_keys: set[str] = field(default_factory=set)

    def table(self, key: str) -> tuple[list[str], list[list[Any]]]:
        """``(columns, rows)`` of the table logged as ``key`` (its JSON file under ``files/``)."""
        entry = self.summary.get(key)
        if not isinstance(entry, dict) or "path" not in entry:
            raise KeyError(f"{self.folder}: no table {key!r} in the summary")
        data = json.loads((self.folder / "files" / entry["path"]).read_text())
        return data["columns"], data["data"]

    def images(self, key: str) -> dict[str, Any]:
        """The summary entry of the images logged as ``key`` (``filenames``, ``captions``, ``all_masks``...)."""
        entry = self.summary.get(key)
        if not isinstance(entry, dict):
            raise KeyError(f"{self.folder}: no images {key!r} in the summary")
        return entry


def read_offline_run(folder: Path) -> OfflineRun:
    """Read the ``offline-run-*`` folder (or a ``wandb/`` folder holding exactly one such run)."""
    folder = Path(folder)
    logs = sorted(folder.glob("run-*.wandb")) or sorted(folder.glob("offline-run-*/run-*.wandb"))
    if len(logs) != 1:
        raise ValueError(f"{folder}: expected one run-*.wandb, found {len(logs)}")
    run = OfflineRun(folder=logs[0].parent)
    for record in wandb_records(logs[0]):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.name, run.group, run.job_type = record.run.display_name, record.run.run_group, record.run.job_type
            run.tags = tuple(record.run.tags)
            for item in record.run.config.update:
                _set(run.config, item)
        elif kind == "config":
            for item in record.config.update:
                _set(run.config, item)
        elif kind == "summary":
            for item in record.summary.update:
                _set(run.summary, item)
        elif kind == "history":
            run.history_keys.update(_key(item) for item in record.history.item)
    run.config = {key: value.get("value", value) if isinstance(value, dict) and set(value) <= {"value", "desc"}
                  else value for key, value in run.config.items()}
    return run


def main(argv: list[str] | None = None) -> int:
    """Print name, group, tags, comparison config keys and metric keys of each run folder given."""
    for folder in argv if argv is not None else sys.argv[1:]:
        run = read_offline_run(Path(folder))
        print(f"{run.folder}\n  name {run.name!r}, group {run.group!r}, job type {run.job_type!r}, tags {list(run.tags)}")
        plain = {k: v for k, v in run.config.items() if not isinstance(v, (dict, list))}
        print(f"  config {plain}")
        print("  summary " + ", ".join(sorted(k for k in run.summary if not k.startswith("_"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
