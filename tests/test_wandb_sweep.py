"""README's sweep (2 eps x 2 target kinds, joblib launcher, default data settings) as W&B sees it:
the four offline runs, read back from their transaction logs (with W&B's record schema, and with
`wandb leet inspect`), share their summary metric keys, have distinct names and one group, carry eps
and target as top-level config keys, the long-format tables and the segmentation overlays."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from medis.reporting.wandb_offline import read_offline_run

from .entry_points import REPO, only

EPS = ("0.0078", "0.0314")
TARGETS = ("untargeted", "white")
LAYERS = {"ground_truth", "target", "clean_prediction", "adversarial_prediction"}


def test_sweep_runs_are_comparable_in_wandb(tmp_path: Path, trained_checkpoint: Path) -> None:
    done = subprocess.run(
        [sys.executable, "attack.py", "-m", f"model.checkpoint={trained_checkpoint}", "attack=pgd",
         f"attack.budget.eps={','.join(EPS)}", f"target={','.join(TARGETS)}", "hydra/launcher=joblib",
         "hydra.launcher.n_jobs=2",
         # size only: 20 synthetic images of 64 px (4 test images), the test victim's input size, 2 steps
         f"paths.log_dir={tmp_path / 'outputs'}", f"data.root={tmp_path / 'data'}", "data.synthetic.n=20",
         "data.synthetic.size=64", "model.input_size=64", "attack.budget.steps=2"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = only("outputs/attack/multiruns/*", tmp_path)
    runs = [read_offline_run(job / "wandb") for job in sorted(p for p in sweep.iterdir() if p.is_dir())]
    assert len(runs) == 4

    metric_keys = [{k for k in run.summary if k.startswith("attack/") and isinstance(run.summary[k], (int, float))}
                   for run in runs]
    assert metric_keys[0] and all(keys == metric_keys[0] for keys in metric_keys)
    assert {"attack/asr", "attack/distortion", "attack/real_asr", "attack/by_loss/bce_dice/asr"} <= metric_keys[0]
    assert not any("eps" in key or "0.0" in key for key in metric_keys[0])

    assert len({run.name for run in runs}) == 4 and len({run.group for run in runs}) == 1
    assert {(run.config["eps"], run.config["target"]) for run in runs} == {(float(e), t) for e in EPS for t in TARGETS}
    for run in runs:
        assert run.job_type == "attack" and run.config["attack"] == "pgd"
        assert f"eps={run.config['eps']:g}" in run.name and f"target={run.config['target']}" in run.name
        assert {"attack:pgd", "data:synthetic_isic", f"target:{run.config['target']}"} <= set(run.tags)
        columns, rows = run.table("attack/summary")
        assert {"dataset", "target", "loss", "eps", "asr"} <= set(columns)
        assert {row[columns.index("loss")] for row in rows} >= {"bce_dice", "parallel fusion"}
        assert {row[columns.index("eps")] for row in rows} == {run.config["eps"]}
        columns, rows = run.table("attack/records")
        assert len(rows) == 4 * 6 and {row[columns.index("target")] for row in rows} == {run.config["target"]}
        overlays = run.images("attack/overlays")  # one target a run: the key every run shares
        assert overlays["count"] >= 1 and all(set(masks) == LAYERS for masks in overlays["all_masks"])
        assert all((run.folder / "files" / masks["ground_truth"]["path"]).is_file() for masks in overlays["all_masks"])
        # W&B's own reader (wandb leet inspect) sees the same run
        seen = subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--summary", "--json",
                               str(run.folder)], capture_output=True, text=True, timeout=120)
        assert seen.returncode == 0, seen.stderr[-2000:]
        state = json.loads(seen.stdout)
        assert state["name"] == run.name and list(state["tags"]) == list(run.tags)
        assert (state["config"]["eps"], state["config"]["target"]) == (run.config["eps"], run.config["target"])
        assert {k for k in state["summary"] if k in metric_keys[0]} == metric_keys[0]
