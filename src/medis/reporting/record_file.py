"""Crash-safe CSV streaming of attack records, and reading them back for resume and reporting.

A *record* (:class:`medis.results.records.Record`) is one row per (image, target kind, loss): the flat table
that :mod:`medis.results.fusion` and the reports consume (docs/architecture.md, "Contracts"). During an
attack the records are appended to ``records.csv`` as batches finish, so that an interrupted run can
resume: the rows already on disk name the (dataset, image, target, loss) triples that need no second
attack (:func:`completed_keys`).

Crash safety rests on three rules:

- every :meth:`RecordWriter.append` writes the whole batch with ONE ``write()`` call, then flushes
  and ``os.fsync``'s, so a crash leaves complete rows followed by at most one partial final line;
- :func:`read_records` ignores a final line that does not end with a newline (the row a crash
  cut), so every row it returns is complete;
- reopening an existing file with :class:`RecordWriter` first truncates such a partial final line,
  so the next append starts on a fresh line instead of gluing a new row onto a cut one (the cut
  record was never complete, hence not in :func:`completed_keys`, and is attacked again);
- a writer never writes a row whose (dataset, image, target, loss) is already in its file, nor drops
  one: it refuses the batch with a one-line error naming the key (two sets with the same file names
  under one name, or a caller repeating work). One writer per file is the run folder lock's job
  (:mod:`medis.runtime.run_lock`).

Format: UTF-8 CSV with the header :data:`~medis.results.records.RECORD_COLUMNS`, ``\\n`` line endings, each
row encoded by :func:`medis.results.records.encode_row` (floats as ``repr``, ``None`` as an empty field,
``trajectory`` as a JSON list). Files with an older header (:data:`~medis.results.records.LEGACY_COLUMNS`)
are read (newer columns at their defaults), not appended to.

Pure Python (csv, os): no pandas, no torch, no Lightning/Hydra/W&B.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

from medis.errors import DataError, naming
from medis.results.records import (
    LEGACY_COLUMNS,
    RECORD_COLUMNS,
    Record,
    RowError,
    as_records,
    decode_row,
    encode_row,
    record_key,
)
from medis.runtime.stop_signals import signals_deferred

__all__ = ["RECORD_COLUMNS", "RecordWriter", "completed_keys", "read_records", "record_key", "records_csv_text"]

_HEADER_LINE = ",".join(RECORD_COLUMNS) + "\n"


def _rows_text(records: Iterable[Record | Mapping]) -> str:
    """The CSV text of a batch of records (all validated before anything is written)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for record in as_records(records):
        writer.writerow(encode_row(record))
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------


def records_csv_text(records: Iterable[Record | Mapping]) -> str:
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

    A row whose :func:`record_key` the file already holds (or an earlier row of the same batch) is a
    :class:`~medis.errors.DataError` naming the key, and nothing of that batch is written: a record
    is never dropped silently.

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
        self.keys: set[tuple[str, str, str, str]] = set()
        """The keys of the complete rows in the file (those on disk at opening and those appended)."""
        try:
            self._file = open(self.path, "a+b", buffering=0)  # noqa: SIM115 - closed by close()
        except OSError as err:
            raise naming(err, self.path)  # noqa: B904 - the OSError stays its context
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
        if complete:
            rows = csv.reader(io.StringIO(complete.decode("utf-8", errors="replace"), newline=""))
            next(rows)
            self.keys = {record_key(dict(zip(RECORD_COLUMNS, fields))) for fields in rows if fields}
        if len(complete) != len(data):
            self._file.truncate(len(complete))
        if not complete:
            self._write(_HEADER_LINE)

    def _write(self, text: str) -> None:
        """Append ``text`` and fsync, with the stop signals held (a row is never cut by one). If the
        disk refuses (full, a file-size limit, read-only), the file is cut back to its whole rows
        and the error names the file."""
        data = memoryview(text.encode("utf-8"))
        with signals_deferred():
            end = self._file.seek(0, os.SEEK_END)
            try:
                while data:
                    data = data[self._file.write(data):]
                os.fsync(self._file.fileno())
            except OSError as err:
                with contextlib.suppress(OSError):
                    self._file.truncate(end)
                raise naming(err, self.path)  # noqa: B904 - the OSError stays its context

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._file.closed

    def append(self, records: Iterable[Record | Mapping]) -> list[Record]:
        """Write a batch of records as complete rows, durably (one write, flush, fsync); returns the
        records written (those whose key the file did not hold yet).

        The whole batch is typed first (:func:`medis.results.records.as_records`): if any record is unusable
        nothing is written.

        Args:
            records: :class:`~medis.results.records.Record` objects (or mappings that become one).

        Raises:
            ValueError: a record misses a key or has a value of the wrong kind.
            TypeError: a record is not a mapping.
            ValueError: the writer is closed.
        """
        if self._file.closed:
            raise ValueError(f"RecordWriter({self.path}) is closed")
        if isinstance(records, Mapping):
            raise TypeError("append takes an iterable of records, not a single record")
        fresh, keys = [], set()
        for record in as_records(records):
            key = record_key(record)
            if key in self.keys or key in keys:
                raise DataError(f"{self.path}: a second record for (dataset, image, target, loss) = {key}; two "
                                f"images share this identity (the same file name in two sets under one "
                                f"data.dataset_name?) or the run repeats work. Nothing of this batch was written")
            keys.add(key)
            fresh.append(record)
        self.keys |= keys
        text = _rows_text(fresh)
        if text:
            self._write(text)
        return fresh

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


def read_records(path: str | os.PathLike) -> list[Record]:
    """Read a records CSV written by :class:`RecordWriter` back into :class:`~medis.results.records.Record` objects.

    A final line without a newline (a row cut by a crash) is skipped; every row returned is
    complete. An empty file (or one holding only a cut header) gives ``[]``.

    Args:
        path: the CSV file.

    Returns:
        The records in file order.

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
    records: list[Record] = []
    try:
        header = next(reader)
        if tuple(header) not in (RECORD_COLUMNS, *LEGACY_COLUMNS):
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
            try:
                records.append(decode_row(fields, header))
            except RowError as err:
                raise DataError(f"{path}: line {start}: {err}") from None
            start = reader.line_num + 1
    except csv.Error as err:
        raise DataError(f"{path}: line {reader.line_num}: malformed CSV ({err})") from None
    return records


def completed_keys(records: Iterable[Mapping]) -> set[tuple[str, str, str, str]]:
    """The :func:`record_key` of every record; a resumed run skips the work in this set."""
    return {record_key(record) for record in records}
