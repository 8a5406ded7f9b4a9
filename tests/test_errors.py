"""User errors: one line, the culprit named, exit status 2, also when raised in a loader worker."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medis.data.datamodule import SegmentationDataModule
from medis.errors import DataError, exit_on_user_error, one_line


def test_worker_errors_reduce_to_their_line(synthetic_root: Path, tmp_path: Path, capsys) -> None:
    root = tmp_path / "isic"
    shutil.copytree(synthetic_root / "isic2018", root)
    victim = sorted((root / "ISIC2018_Task1-2_Test_Input").glob("ISIC_*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:200])  # truncated JPEG
    dm = SegmentationDataModule(str(root), "isic2018", "train", "val", "test", num_workers=1)

    @exit_on_user_error
    def main() -> None:
        for _ in dm.test_dataloader():
            pass

    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: unreadable or truncated image") and victim.name in err


def test_one_line_keeps_plain_messages() -> None:
    assert one_line(DataError("missing folder /x")) == "missing folder /x"
