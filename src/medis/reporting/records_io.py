"""Crash-safe CSV streaming of attack records, and reading them back for resume and reporting.

A *record* is one row per (image, target kind, loss) (see ``ARCHITECTURE.md``, "Record"): the flat
table that :mod:`medis.fusion` and the reports consume. During an attack the records are appended
to ``records.csv`` as batches finish, so that an interrupted run can resume: the rows already on
disk name the (dataset, image, target, loss) triples that need no second attack
(:func:`completed_keys`).

Crash safety rests on three rules:

- every :meth:`RecordWriter.append` writes the whole batch with ONE ``write()`` call, then flushes
  and ``os.fsync``'s, so a crash leaves complete rows followed by at most one partial final line;
- :func:`read_records` ignores a final line that does not end with a newline (the row a crash
  cut), so every row it returns is complete;
- reopening an existing file with :class:`RecordWriter` first truncates such a partial final line,
  so the next append starts on a fresh line instead of gluing a new row onto a cut one (the cut
  record was never complete, hence not in :func:`completed_keys`, and is attacked again).

Format: UTF-8 CSV with the header :data:`RECORD_COLUMNS`, ``\\n`` line endings. ``success`` and
``pruned`` are ``True``/``False``; ``steps`` is an int or empty (``None``); floats are written
with ``repr`` (exact round trip; ``inf``/``nan`` included), empty for ``None``; ``eps`` is empty
when the record has none; ``trajectory`` is a JSON list of floats. The optional columns ``attack``
(name of the attack), ``forwards``/``backwards`` (passes spent on the replica), ``transfer_metric``
and ``transfer_success`` (the adversarial image judged on another model) are empty when absent.
Keys of a record outside :data:`RECORD_COLUMNS` (e.g. an adversarial image) are not stored. Files
with the older header :data:`LEGACY_COLUMNS` are read (new keys ``None``), not appended to.

Pure Python (csv, json, os): no pandas, no torch, no Lightning/Hydra/W&B.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Callable

from medis.errors import DataError

__all__ = ["RECORD_COLUMNS", "RecordWriter", "completed_keys", "read_records", "record_key",
           "records_csv_text"]

RECORD_COLUMNS: tuple[str, ...] = (
    "dataset",
    "image_id",
    "target",
    "loss",
    "mode",
    "eps",
    "success",
    "steps",
    "metric",
    "pruned",
    "linf",
    "l2",
    "linf_255",
    "l2_255",
    "ssim",
    "psnr",
    "trajectory",
    "attack",
    "forwards",
    "backwards",
    "transfer_metric",
    "transfer_success",
)
"""The fixed column order of ``records.csv``."""
LEGACY_COLUMNS: tuple[str, ...] = RECORD_COLUMNS[: RECORD_COLUMNS.index("trajectory") + 1]
"""The header of records files written before ``attack`` and the columns after it existed; such
files are still read (the newer keys come back as ``None``) but not appended to."""

_STR_COLUMNS = ("dataset", "image_id", "target", "loss", "mode", "attack")
_BOOL_COLUMNS = ("success", "pruned", "transfer_success")
_FLOAT_COLUMNS = ("metric", "linf", "l2", "linf_255", "l2_255", "ssim", "psnr")
_INT_COLUMNS = ("steps", "forwards", "backwards")
_OPTIONAL_COLUMNS = ("eps", "attack", "forwards", "backwards", "transfer_metric", "transfer_success")
"""Columns a record may lack (written empty, read back as ``None``)."""
_HEADER_LINE = ",".join(RECORD_COLUMNS) + "\n"


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    return value is None


def _encode_float(value: Any, key: str) -> str:
    if _is_missing(value):
        return ""
    if isinstance(value, (bool, str)):
        raise ValueError(f"record field {key!r} must be a number, got {value!r}")
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        raise ValueError(f"record field {key!r} must be a number, got {value!r}") from None


def _encode_bool(value: Any, key: str) -> str:
    if isinstance(value, str) and value in ("True", "False"):
        return value
    try:
        if value in (0, 1):  # bool, numpy.bool_, 0 / 1
            return str(bool(value))
    except (TypeError, ValueError):
        pass
    raise ValueError(f"record field {key!r} must be a bool, got {value!r}")


def _encode_steps(value: Any, key: str = "steps") -> str:
    if _is_missing(value):
        return ""
    if isinstance(value, (bool, str)) or not isinstance(value, numbers.Real):
        raise ValueError(f"record field {key!r} must be an int or None, got {value!r}")
    as_float = float(value)
    if math.isnan(as_float):  # NaN is how Parquet/pandas spell a missing int
        return ""
    if not as_float.is_integer():
        raise ValueError(f"record field {key!r} must be an int or None, got {value!r}")
    return str(int(as_float))


def _encode_trajectory(value: Any) -> str:
    if _is_missing(value):
        return "[]"
    try:
        return json.dumps([float(v) for v in value])
    except (TypeError, ValueError):
        raise ValueError(f"record field 'trajectory' must be a list of floats, got {value!r}") from None


def _encode(record: Mapping) -> list[str]:
    """One record -> its CSV fields in :data:`RECORD_COLUMNS` order; ValueError if unusable."""
    if not isinstance(record, Mapping):
        raise TypeError(f"a record must be a mapping, got {type(record).__name__}")
    missing = [key for key in RECORD_COLUMNS if key not in record and key not in _OPTIONAL_COLUMNS]
    if missing:
        where = ", ".join(f"{key}={record.get(key, '?')!r}" for key in ("dataset", "image_id", "target", "loss"))
        raise ValueError(f"record ({where}) is missing key(s) {missing}")
    fields: list[str] = []
    for key in RECORD_COLUMNS:
        value = record.get(key)
        if key in _OPTIONAL_COLUMNS and _is_missing(value):
            fields.append("")
        elif key in _STR_COLUMNS:
            if _is_missing(value):
                raise ValueError(f"record field {key!r} is None")
            fields.append(str(value))
        elif key in _BOOL_COLUMNS:
            fields.append(_encode_bool(value, key))
        elif key in _INT_COLUMNS:
            fields.append(_encode_steps(value, key))
        elif key == "trajectory":
            fields.append(_encode_trajectory(value))
        else:  # eps and the float columns
            fields.append(_encode_float(value, key))
    return fields


def _rows_text(records: Iterable[Mapping]) -> str:
    """The CSV text of a batch of records (all validated before anything is written)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for record in records:
        writer.writerow(_encode(record))
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------


def records_csv_text(records: Iterable[Mapping]) -> str:
    """A whole records CSV (header and one line per record) as text; validates like ``append``."""
    return _HEADER_LINE + _rows_text(records)


def _fsync_dir(directory: Path) -> None:
    """Make a new directory entry durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class RecordWriter:
    """Appends records to ``path`` (CSV) so that an interrupted run leaves only COMPLETE rows.

    Each :meth:`append` writes the batch's rows with one ``write()`` call of the whole text, then
    flushes and ``os.fsync``'s. A header (:data:`RECORD_COLUMNS`) is written (and synced) when the
    file is new or empty. Reopening an existing file appends to it without a second header; a
    partial final line left by a crash (no trailing newline) is truncated first, so that the next
    row starts on a line of its own.

    Usable as a context manager::

        with RecordWriter(run_dir / "records.csv") as writer:
            writer.append(batch_records)

    Raises:
        DataError: (at construction) the existing file's header is not :data:`RECORD_COLUMNS`.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        is_new = not self.path.exists()
        self._file = open(self.path, "a+b")  # noqa: SIM115 - closed by close()
        try:
            self._prepare()
        except BaseException:
            self._file.close()
            raise
        if is_new:
            _fsync_dir(self.path.parent)

    def _prepare(self) -> None:
        """Check the header of an existing file, drop a cut final line, write a missing header."""
        self._file.seek(0)
        data = self._file.read()
        complete = data[: data.rfind(b"\n") + 1]  # everything up to the last newline
        if complete:
            header = complete[: complete.find(b"\n") + 1].decode("utf-8", errors="replace")
            if header.rstrip("\r\n") != _HEADER_LINE.rstrip("\n"):
                raise DataError(
                    f"{self.path}: line 1: header {header.strip()!r} is not the records header "
                    f"{_HEADER_LINE.strip()!r}; refusing to append"
                )
        if len(complete) != len(data):
            self._file.truncate(len(complete))
        if not complete:
            self._write(_HEADER_LINE)

    def _write(self, text: str) -> None:
        self._file.seek(0, os.SEEK_END)
        self._file.write(text.encode("utf-8"))
        self._file.flush()
        os.fsync(self._file.fileno())

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._file.closed

    def append(self, records: Iterable[Mapping]) -> None:
        """Write a batch of records as complete rows, durably (one write, flush, fsync).

        The whole batch is validated first: if any record is unusable nothing is written.

        Args:
            records: mappings with the keys of :data:`RECORD_COLUMNS` (``eps`` optional).

        Raises:
            ValueError: a record misses a key or has a value of the wrong kind.
            TypeError: a record is not a mapping.
            ValueError: the writer is closed.
        """
        if self._file.closed:
            raise ValueError(f"RecordWriter({self.path}) is closed")
        if isinstance(records, Mapping):
            raise TypeError("append takes an iterable of records, not a single record")
        text = _rows_text(records)
        if text:
            self._write(text)

    def close(self) -> None:
        """Close the file (idempotent)."""
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RecordWriter({str(self.path)!r})"


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------


def _optional(value: str, cast: Callable[[str], Any], error: Callable[[], DataError]) -> Any:
    """``None`` for an empty field, else ``cast(value)``; ``error()`` is raised when the cast fails."""
    if value == "":
        return None
    try:
        return cast(value)
    except ValueError:
        raise error() from None


def _decode(fields: list[str], path: Path, line: int) -> dict:
    """CSV fields (in RECORD_COLUMNS order) -> a record dict; DataError naming file and line."""

    def fail(key: str, value: str, expected: str) -> DataError:
        return DataError(f"{path}: line {line}: column {key!r} is {value!r}, not {expected}")

    record: dict[str, Any] = {key: None for key in RECORD_COLUMNS}
    for key, value in zip(RECORD_COLUMNS, fields):
        if key in _OPTIONAL_COLUMNS and value == "":
            record[key] = None
        elif key in _STR_COLUMNS:
            record[key] = value
        elif key in _BOOL_COLUMNS:
            if value not in ("True", "False"):
                raise fail(key, value, "True or False")
            record[key] = value == "True"
        elif key in _INT_COLUMNS:
            record[key] = _optional(value, int, lambda: fail(key, value, "an int or empty"))
        elif key == "trajectory":
            try:
                parsed = json.loads(value) if value else []
                if not isinstance(parsed, list):
                    raise ValueError
                record[key] = [float(v) for v in parsed]
            except (ValueError, TypeError):
                raise fail(key, value, "a JSON list of numbers") from None
        else:  # eps and the float columns
            record[key] = _optional(value, float, lambda: fail(key, value, "a number or empty"))
    return record


def read_records(path: str | os.PathLike) -> list[dict]:
    """Read a records CSV written by :class:`RecordWriter` back into record dicts.

    Types: ``success``/``pruned`` bool; ``steps`` int or ``None`` (empty); numbers float (``inf``,
    ``nan`` included), ``None`` where empty; ``eps`` float or ``None``; ``trajectory`` list of
    floats; optional columns ``None`` where empty. A final line without a newline (a row cut by a crash) is skipped; every row returned
    is complete. An empty file (or one holding only a cut header) gives ``[]``.

    Args:
        path: the CSV file.

    Returns:
        The records in file order, each with every key of :data:`RECORD_COLUMNS`.

    Raises:
        DataError: the file is missing, its header is not :data:`RECORD_COLUMNS`, or a complete
            line has the wrong number of fields or an unparseable value (the message names the
            file and the line number).
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise DataError(f"{path}: records file not found") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not a UTF-8 records file ({err.reason})") from None
    text = text[: text.rfind("\n") + 1]  # drop a final line cut by a crash
    if not text:
        return []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[dict] = []
    try:
        header = next(reader)
        if tuple(header) not in (RECORD_COLUMNS, LEGACY_COLUMNS):
            raise DataError(f"{path}: line 1: header {','.join(header)!r} is not the records header "
                            f"{','.join(RECORD_COLUMNS)!r}")
        width = len(header)
        start = reader.line_num + 1
        for fields in reader:
            if not fields:  # a blank line
                start = reader.line_num + 1
                continue
            if len(fields) != width:
                raise DataError(f"{path}: line {start}: {len(fields)} fields, expected {width}")
            records.append(_decode(fields, path, start))
            start = reader.line_num + 1
    except csv.Error as err:
        raise DataError(f"{path}: line {reader.line_num}: malformed CSV ({err})") from None
    return records


def record_key(record: Mapping) -> tuple[str, str, str, str]:
    """A record's identity within a run: ``(dataset, image_id, target, loss)``, all as ``str``."""
    return str(record["dataset"]), str(record["image_id"]), str(record["target"]), str(record["loss"])


def completed_keys(records: Iterable[Mapping]) -> set[tuple[str, str, str, str]]:
    """The :func:`record_key` of every record; a resumed run skips the work in this set."""
    return {record_key(record) for record in records}
