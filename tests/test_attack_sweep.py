"""A 2x2 Hydra multirun of attack.py (eps x target, joblib launcher) and `python -m medis.report` over it."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from medis.reporting import read_records
from medis.results import fusion

from .entry_points import REPO, only, run_entry

EPS = (2 / 255, 8 / 255)


@pytest.mark.slow  # a 4-job sweep (~15 s); tests/test_wandb_sweep.py runs README's sweep by default
def test_eps_by_target_sweep_and_report(tmp_path: Path, trained_checkpoint: Path) -> None:
    done = run_entry("attack.py", tmp_path, "model.input_size=64", "attack.budget.steps=3", "attack/rule=pgd",
                     f"model.checkpoint={trained_checkpoint}",
                     "losses.names=[bce,dice]", f"attack.budget.eps={EPS[0]},{EPS[1]}", "target=untargeted,white",
                     "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "logger=csv", images=20, multirun=True)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = only("outputs/attack/multiruns/*", tmp_path)
    jobs = sorted(p.parent for p in sweep.glob("*/records.csv"))
    assert len(jobs) == 4
    everything = [r for job in jobs for r in read_records(job / "records.csv")]
    assert {(r["eps"], r["target"]) for r in everything} == {(e, t) for e in EPS for t in ("untargeted", "white")}
    for record in everything:  # the budget held in every job
        assert record["linf"] <= record["eps"] + 1e-6

    report = subprocess.run([sys.executable, "-m", "medis.report", str(sweep)], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    out = sweep / "report"
    for name in ("comparison.csv", "comparison.md", "asr_vs_eps.png", "distortion_histogram.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "asr_vs_eps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "comparison.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # one fused row per (eps, target), equal to fusing the records of its job here
    fused = {(float(r["eps"]), r["target"]): r for r in rows if r["loss"] == fusion.FUSED_LOSS}
    assert len(fused) == 4
    for row in fusion.fuse(everything):
        written = fused[(row["eps"], row["target"])]
        assert (written["asr"] == "") if row["asr"] is None else float(written["asr"]) == pytest.approx(row["asr"])
        assert int(written["images"]) == row["images"] and row["images"] + row["set_aside"] == 4


@pytest.mark.slow  # four sharded jobs and one whole run (~25 s); tests/reporting check the merge fast
def test_sharded_jobs_report_like_one_run(tmp_path: Path, trained_checkpoint: Path) -> None:
    """data.shard=0/2,1/2 as two jobs: the report fuses them into the numbers of one unsharded run
    (most-similar targets still come from the whole test split)."""
    common = ("model.input_size=64", "attack.budget.steps=3", "losses.names=[bce,dice]", "target.kinds=[untargeted,most_similar]",
              "data.eval_batch_size=1", "logger=csv", f"model.checkpoint={trained_checkpoint}")
    done = run_entry("attack.py", tmp_path / "one", *common, images=20)
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_entry("attack.py", tmp_path / "two", *common, "data.shard=0/2,1/2", "hydra/launcher=joblib",
                     "hydra.launcher.n_jobs=2", images=20, multirun=True)
    assert done.returncode == 0, done.stderr[-3000:]
    single = read_records(only("one/outputs/attack/runs/*/records.csv", tmp_path))
    sweep = only("two/outputs/attack/multiruns/*", tmp_path)
    report = subprocess.run([sys.executable, "-m", "medis.report", str(sweep)], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    with open(sweep / "report" / "comparison.csv", newline="") as handle:
        rows = {(r["target"], r["loss"]): r for r in csv.DictReader(handle)}
    expected = fusion.summary_table(single)
    assert len(rows) == len(expected) == 6  # one job label: both shards fused together
    for row in expected:
        written = rows[(row["target"], row["loss"])]
        assert int(written["images"]) == row["images"] and row["images"] + row["set_aside"] == 4
        assert (written["asr"] == "") if row["asr"] is None else float(written["asr"]) == pytest.approx(row["asr"])
