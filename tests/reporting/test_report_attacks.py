"""``python -m medis.report`` on records that name their attack: attacks.csv / attacks.md.

Job "-" (no override): an ensemble run on kvasir, untargeted, eps 8/255, images a (clean .80) and
b (clean .60), losses qualified as "<attack>/<loss>":

    medis/bce  a [.80 .30] ok 1 (fwd 3, bwd 2)   b [.60 .50] FAIL (3, 2)
    pgd/ce     a [.80 .45] FAIL (2, 1)           b [.60 .20] ok 1 (2, 1)
    -> medis: adv (.30 + .50) / 2 = .400, ASR 50.0, passes 5.0
       pgd:   adv (.45 + .20) / 2 = .325, ASR 50.0, passes 3.0
       ensemble: adv (.30 + .20) / 2 = .250, ASR 100.0, passes 8.0

Job "seed=2": pgd/ce alone on image a, [.80 .10] ok 1 -> ASR 100.0, adv .100 (kept apart).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from medis.report import main
from medis.reporting import RECORD_COLUMNS

from .test_sweep import write_job

EPS8 = 8 / 255


def rec(image_id: str, loss: str, trajectory: list[float] | None, steps: int | None, forwards: int,
        backwards: int, attack: str | None) -> dict:
    success = steps is not None
    return dict(
        dataset="kvasir", image_id=image_id, target="untargeted", loss=loss, mode="clean", eps=EPS8,
        success=success, steps=steps, metric=(trajectory or [0.5])[-1], pruned=False, linf=EPS8, l2=0.5,
        linf_255=8.0, l2_255=127.5, ssim=0.9, psnr=35.0, trajectory=trajectory, attack=attack,
        forwards=forwards, backwards=backwards, transfer_metric=None, transfer_success=None,
    )


def ensemble_sweep(root: Path) -> Path:
    write_job(root / "0", ["attack=ensemble"], [
        rec("a", "medis/bce", [0.80, 0.30], 1, 3, 2, "medis"),
        rec("b", "medis/bce", [0.60, 0.50], None, 3, 2, "medis"),
        rec("a", "pgd/ce", [0.80, 0.45], None, 2, 1, "pgd"),
        rec("b", "pgd/ce", [0.60, 0.20], 1, 2, 1, "pgd"),
    ])
    write_job(root / "1", ["attack=ensemble", "seed=2"], [rec("a", "pgd/ce", [0.80, 0.10], 1, 2, 1, "pgd")])
    return root


def test_records_columns_know_the_attack() -> None:
    assert {"attack", "forwards", "backwards", "transfer_metric", "transfer_success"} <= set(RECORD_COLUMNS)


def test_cli_writes_attack_comparison_per_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = ensemble_sweep(tmp_path / "multirun")
    out = tmp_path / "out"
    assert main([str(root), "--out", str(out)]) == 0
    with open(out / "attacks.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames[:3] == ["job", "dataset", "target"]
        assert "transfer_miou" not in reader.fieldnames
        rows = [(row["job"], row["attack"], row["images"], round(float(row["adv_miou"]), 6), row["asr"],
                 float(row["forwards"]) + float(row["backwards"])) for row in reader]
    assert rows == [
        ("attack=ensemble", "medis", "2", 0.4, "50.0", 5.0),
        ("attack=ensemble", "pgd", "2", 0.325, "50.0", 3.0),
        ("attack=ensemble", "ensemble", "2", 0.25, "100.0", 8.0),
        ("attack=ensemble seed=2", "pgd", "1", 0.1, "100.0", 3.0),
        ("attack=ensemble seed=2", "ensemble", "1", 0.1, "100.0", 3.0),
    ]
    printed = capsys.readouterr().out
    assert "## kvasir, untargeted, job: attack=ensemble\n" in printed
    assert "| ensemble | 0.250 / 100.0 | 8.0 |" in printed
    assert "(eps 8/255)" in printed
    assert str(out / "attacks.csv") in printed and str(out / "attacks.md") in printed
    assert (out / "attacks.md").read_text(encoding="utf-8") in printed


def test_cli_without_attack_names_writes_no_attack_files(tmp_path: Path) -> None:
    run = write_job(tmp_path / "run", [], [rec("a", "bce", [0.8, 0.3], 1, 3, 2, None)])
    assert main([str(run)]) == 0
    assert not (run / "report" / "attacks.csv").exists()
    assert (run / "report" / "comparison.csv").exists()


def test_cli_missing_trajectory_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_job(tmp_path / "run", [], [rec("a", "pgd/ce", None, None, 2, 1, "pgd")])
    with pytest.raises(SystemExit) as exited:
        main([str(run)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {run}: record #0") and "no trajectory" in err
    assert not (run / "report").exists()  # validated before anything is written
