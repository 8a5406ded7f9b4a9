"""Sweep reports (medis.reporting.sweep, medis.reporting.plots, python -m medis.report) on fake
Hydra multirun folders written with RecordWriter; the fused numbers are worked by hand.

Loss split across jobs (dataset kvasir, target random, no eps, one label):

    job 0 (losses=bce):  a ok 3, b FAIL, c ok 5
    job 1 (losses=dice): a ok 2, b ok 4, c ok 6
    fused: a -> dice (2), b -> dice (4), c -> bce (5): ASR 100.0, distortion 11/3 = 3.67
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from medis.errors import DataError
from medis.report import main
from medis.reporting import RecordWriter
from medis.reporting.plots import plot_asr_vs_eps, plot_distortion_histogram
from medis.reporting.sweep import comparison_rows, find_jobs, gather, job_label, write_comparison
from medis.results.fusion import FUSED_LOSS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EPS4, EPS8 = 4 / 255, 8 / 255
CKPT = "model.checkpoint=run/last.ckpt"


def rec(image_id: str, loss: str, target: str, steps: int | None, eps: float | None = None,
        dataset: str = "kvasir") -> dict:
    """A record; ``steps=None`` marks a failure."""
    success = steps is not None
    return dict(
        dataset=dataset, image_id=image_id, target=target, loss=loss, mode="clean", eps=eps,
        success=success, steps=steps, metric=0.9 if success else 0.1, pruned=False,
        linf=(steps or 0) / 255, l2=0.1, linf_255=float(steps or 0), l2_255=25.5, ssim=0.95, psnr=40.0,
        trajectory=[0.1, 0.9],
    )


def write_job(folder: Path, overrides: list[str], records: list[dict]) -> Path:
    """A Hydra job folder: records.csv and .hydra/overrides.yaml; returns the folder."""
    with RecordWriter(folder / "records.csv") as writer:
        writer.append(records)
    (folder / ".hydra").mkdir(parents=True, exist_ok=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides), encoding="utf-8")
    return folder


def eps_target_sweep(root: Path) -> Path:
    """2 eps x 2 targets (black, untargeted) jobs (losses bce, dice; images a, b); at eps 8 everything succeeds faster."""
    job = 0
    for eps in (EPS4, EPS8):
        for target in ("black", "untargeted"):
            fast = eps == EPS8
            records = [
                rec("a", "bce", target, 2 if fast else 5, eps),
                rec("b", "bce", target, 3 if fast else None, eps),
                rec("a", "dice", target, 1 if fast else None, eps),
                rec("b", "dice", target, 4 if fast else None, eps),
            ]
            write_job(root / str(job), [f"attack.budget.eps={eps}", f"target={target}", "losses=paper6", CKPT], records)
            job += 1
    (root / "multirun.yaml").write_text("hydra: {}\n", encoding="utf-8")
    return root


def loss_split_sweep(root: Path) -> Path:
    """The sweep of the module docstring: one job per loss."""
    write_job(root / "0", ["losses=bce", "target=random"],
              [rec("a", "bce", "random", 3), rec("b", "bce", "random", None), rec("c", "bce", "random", 5)])
    write_job(root / "1", ["losses=dice", "target=random"],
              [rec("a", "dice", "random", 2), rec("b", "dice", "random", 4), rec("c", "dice", "random", 6)])
    return root


def group(rows: list[dict], **where) -> dict[str, dict]:
    """loss -> row, among the rows matching ``where``."""
    return {row["loss"]: row for row in rows if all(row[k] == v for k, v in where.items())}


# --------------------------------------------------------------------------------------------
# Jobs and labels
# --------------------------------------------------------------------------------------------


def test_job_label_drops_only_split_and_column_keys() -> None:
    overrides = [
        "seed=1", "losses=bce_dice", "losses.names=[bce,dice]", "+losses.weights=[1,2]", "target=white",
        "target.kinds=[white,black]", "attack.budget.eps=0.0313", "hydra.job.name=x", "hydra/launcher=basic",
        "resume=true", "attack.budget.steps=20", "++model.width=8", "attack=pgd",
    ]
    assert job_label(overrides) == "++model.width=8 attack.budget.steps=20 attack=pgd seed=1"
    assert job_label(["losses=bce", "target=white"]) == ""
    assert job_label(["attack.budget.eps_scale=2"]) == "attack.budget.eps_scale=2"  # not attack.budget.eps itself


def test_find_jobs_natural_order_nested_and_report_skipped(tmp_path: Path) -> None:
    for name in ("10", "2", "sub/3", "0"):
        write_job(tmp_path / name, [f"seed={name[-1]}", "target=white"], [rec("a", "bce", "white", 1)])
    with RecordWriter(tmp_path / "report" / "old" / "records.csv") as writer:  # never read
        writer.append([rec("z", "bce", "white", 1)])
    (tmp_path / "nohydra").mkdir()
    with RecordWriter(tmp_path / "nohydra" / "records.csv") as writer:
        writer.append([rec("a", "bce", "white", 1)])
    jobs = find_jobs(tmp_path)
    assert [job.folder.relative_to(tmp_path).as_posix() for job in jobs] == ["0", "2", "10", "nohydra", "sub/3"]
    assert [job.label for job in jobs] == ["seed=0", "seed=2", "seed=0", "", "seed=3"]
    assert jobs[1].overrides == ["seed=2", "target=white"]
    assert jobs[1].records == tmp_path / "2" / "records.csv"


def test_bad_overrides_file_is_a_data_error(tmp_path: Path) -> None:
    folder = write_job(tmp_path / "0", [], [rec("a", "bce", "white", 1)])
    (folder / ".hydra" / "overrides.yaml").write_text("seed: 1\n", encoding="utf-8")
    with pytest.raises(DataError, match="overrides.yaml"):
        find_jobs(tmp_path)


# --------------------------------------------------------------------------------------------
# Gathering, fusion across jobs, duplicates
# --------------------------------------------------------------------------------------------


def test_eps_target_grid_is_one_label_with_four_groups(tmp_path: Path) -> None:
    records = gather(eps_target_sweep(tmp_path))
    assert len(records) == 16
    assert {record["job"] for record in records} == {CKPT}
    rows = comparison_rows(records)
    groups = {(row["target"], row["eps"]) for row in rows}
    assert groups == {(t, e) for t in ("black", "untargeted") for e in (EPS4, EPS8)}
    slow = group(rows, target="black", eps=EPS4)
    assert (slow["bce"]["asr"], slow["bce"]["distortion"]) == (50.0, 5.0)
    assert slow["dice"]["asr"] == 0.0 and slow["dice"]["distortion"] is None
    fast = group(rows, target="black", eps=EPS8)
    assert fast[FUSED_LOSS]["asr"] == 100.0
    assert fast[FUSED_LOSS]["distortion"] == pytest.approx((1 + 3) / 2)  # a: dice 1, b: bce 3
    # order: untargeted before black (paper order, not alphabetical), eps ascending, fused row last
    assert [(row["target"], row["eps"]) for row in rows[::3]] == [
        ("untargeted", EPS4), ("untargeted", EPS8), ("black", EPS4), ("black", EPS8)]
    assert [row["loss"] for row in rows[:3]] == ["bce", "dice", FUSED_LOSS]


def test_fusion_across_loss_split_jobs_by_hand(tmp_path: Path) -> None:
    rows = comparison_rows(gather(loss_split_sweep(tmp_path)))
    assert [row["loss"] for row in rows] == ["bce", "dice", FUSED_LOSS]  # one group: jobs fused
    fused = rows[-1]
    assert fused["job"] == "" and fused["eps"] is None
    assert fused["chosen"] == {"a": "dice", "b": "dice", "c": "bce"}
    assert (fused["images"], fused["successes"], fused["asr"]) == (3, 3, 100.0)
    assert fused["distortion"] == pytest.approx((2 + 4 + 5) / 3)
    assert rows[0]["asr"] == pytest.approx(200 / 3) and rows[0]["distortion"] == 4.0


def test_jobs_with_different_labels_are_not_fused(tmp_path: Path) -> None:
    write_job(tmp_path / "0", ["seed=0", "losses=bce"], [rec("a", "bce", "white", 5)])
    write_job(tmp_path / "1", ["seed=1", "losses=bce"], [rec("a", "bce", "white", 1)])
    rows = comparison_rows(gather(tmp_path))  # same image and loss, different labels: no duplicate
    fused = {row["job"]: row["distortion"] for row in rows if row["loss"] == FUSED_LOSS}
    assert fused == {"seed=0": 5.0, "seed=1": 1.0}


def test_duplicate_across_folders_and_dedupe_keeps_later_folder(tmp_path: Path) -> None:
    write_job(tmp_path / "2", ["target=white"], [rec("a", "bce", "white", 7)])
    write_job(tmp_path / "10", ["target=white"], [rec("a", "bce", "white", 1)])
    with pytest.raises(DataError) as err:
        gather(tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / "2") in message and str(tmp_path / "10") in message
    assert "image_id='a'" in message and "loss='bce'" in message and "--dedupe" in message
    kept = gather(tmp_path, dedupe=True)
    assert len(kept) == 1 and kept[0]["steps"] == 1  # folder 10 comes after 2 in natural order


def test_missing_folder_and_no_records_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder not found"):
        gather(tmp_path / "absent")
    (tmp_path / "empty" / "0" / ".hydra").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no records\.csv"):
        gather(tmp_path / "empty")


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def test_write_comparison_csv_and_markdown(tmp_path: Path) -> None:
    records = gather(eps_target_sweep(tmp_path / "sweep")) + gather(loss_split_sweep(tmp_path / "split"))
    csv_path, md_path = write_comparison(records, tmp_path / "out")
    with open(csv_path, newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ["job", "dataset", "target", "eps", "loss", "images", "successes", "asr",
                              "distortion", "linf", "l2", "ssim", "psnr"]
    assert len(table) == 4 * 3 + 3
    assert table[0]["job"] == "" and table[0]["eps"] == ""  # empty label sorts first
    assert float(table[-1]["eps"]) == EPS8 and table[-1]["loss"] == FUSED_LOSS
    lines = md_path.read_text(encoding="utf-8").splitlines()
    assert "## kvasir, job: -" in lines and f"## kvasir, job: {CKPT}" in lines
    header = next(line for line in lines if "black, eps 4/255 ASR %" in line)
    assert header.startswith("| loss | untargeted, eps 4/255 ASR % | untargeted, eps 4/255 distortion | "
                             "untargeted, eps 8/255 ASR %")
    assert "| parallel fusion | 100.0 | 3.67 |" in lines
    assert not list((tmp_path / "out").glob(".*tmp"))  # no temporary file left


def test_plots_return_none_when_there_is_nothing_to_draw(tmp_path: Path) -> None:
    records = gather(loss_split_sweep(tmp_path / "split"))
    assert plot_asr_vs_eps(comparison_rows(records), tmp_path / "asr.png") is None  # no eps
    assert not (tmp_path / "asr.png").exists()
    failures = [dict(r, success=False, steps=None, job="") for r in records]
    assert plot_distortion_histogram(failures, tmp_path / "hist.png") is None
    assert not (tmp_path / "hist.png").exists()


def test_cli_writes_all_four_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = eps_target_sweep(tmp_path / "multirun")
    out = tmp_path / "report_out"
    assert main([str(root), "--out", str(out)]) == 0
    names = ("comparison.csv", "comparison.md", "asr_vs_eps.png", "distortion_histogram.png")
    for name in names:
        assert (out / name).stat().st_size > 0
    for name in names[2:]:
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
    printed = capsys.readouterr().out
    assert "| parallel fusion |" in printed
    assert all(str(out / name) in printed for name in names)


def test_cli_single_run_folder_default_out_and_rerun(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_job(tmp_path / "run", ["target=random"], [rec("a", "bce", "random", 2), rec("a", "dice", "random", 1)])
    assert main([str(run)]) == 0
    assert main([str(run)]) == 0  # the report folder is not mistaken for a job
    written = sorted(path.name for path in (run / "report").iterdir())
    assert written == ["comparison.csv", "comparison.md", "distortion_histogram.png"]  # no eps: no ASR plot
    assert "| bce | 100.0 | 2.00 |" in capsys.readouterr().out


def test_cli_duplicates_exit_2_unless_dedupe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_job(tmp_path / "0", [], [rec("a", "bce", "white", 3)])
    write_job(tmp_path / "1", [], [rec("a", "bce", "white", 3)])
    with pytest.raises(SystemExit) as exited:
        main([str(tmp_path)])
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith("error: record (job=''")
    assert main([str(tmp_path), "--dedupe"]) == 0


def test_cli_errors_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as exited:
        main([str(empty)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and str(empty) in err
    absent = tmp_path / "absent"
    done = subprocess.run([sys.executable, "-m", "medis.report", str(absent)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr == f"error: {absent}: folder not found\n"
    assert not (absent / "report").exists()


def test_import_needs_neither_matplotlib_nor_torch() -> None:
    code = ("import sys, medis.report, medis.reporting.plots, medis.reporting.sweep; "
            "print(sorted(m for m in ('matplotlib', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
