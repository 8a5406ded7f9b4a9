"""Reporting: crash-safe record files and summary tables (CSV / Markdown) of attack runs.

Pure Python (no pandas, no Lightning/Hydra/W&B): :class:`RecordWriter` streams records to
``records.csv`` as batches finish, :func:`read_records` and :func:`completed_keys` read them back
for resume, and :func:`write_summary` turns records into ``summary.csv`` and ``summary.md`` in the
layout of Shukla, Gupta, Gupta, MTAP 2023 (ASR % and distortion per loss, with parallel fusion).
"""

from __future__ import annotations

from medis.reporting.record_file import RECORD_COLUMNS, RecordWriter, completed_keys, read_records
from medis.reporting.summary import summary_rows, write_summary

__all__ = ["RECORD_COLUMNS", "RecordWriter", "completed_keys", "read_records", "summary_rows", "write_summary"]
