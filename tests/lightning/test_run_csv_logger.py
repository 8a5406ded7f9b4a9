"""The run's CSV logger names its file when a write fails (a full disk raises ENOSPC with no name)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from medis.errors import user_error_line
from medis.lightning.run_csv_logger import RunCSVLogger


def test_a_failed_metrics_write_names_metrics_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logger = RunCSVLogger(save_dir=str(tmp_path), name="csv", version="")
    logger.log_metrics({"val/dice": 0.5}, step=0)
    logger.save()
    assert (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0] == "step,val/dice"

    def full_disk() -> None:
        raise OSError(errno.ENOSPC, "No space left on device")  # what write() raises: no file name

    monkeypatch.setattr(logger.experiment, "save", full_disk)
    with pytest.raises(OSError) as failed:
        logger.save()
    assert user_error_line(failed.value) == f"{tmp_path / 'csv' / 'metrics.csv'}: No space left on device"


def test_it_is_the_logger_the_configs_and_train_py_use() -> None:
    text = (Path(__file__).resolve().parents[2] / "conf" / "logger" / "csv.yaml").read_text()
    assert "_target_: medis.lightning.run_csv_logger.RunCSVLogger" in text
