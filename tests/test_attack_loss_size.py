"""engine.loss_size through attack.py: the fused table stays within the documented bound, and the
run says how it ran."""

from __future__ import annotations

import pytest

import subprocess
import sys
from pathlib import Path

from medis.reporting import read_records
from medis.results import fusion

from .entry_points import REPO

# docs/image_sizes.md: losses at half the image's side change a fused verdict on at most this share
# of the images per target, and a recorded (full-size) score by this much on average
VERDICT_SHARE, SCORE_CHANGE = 0.25, 0.05


def attack(tmp_path: Path, checkpoint: Path, loss_size: str) -> Path:
    run = tmp_path / f"loss_size_{loss_size}"
    done = subprocess.run([sys.executable, "attack.py", f"data.root={tmp_path / 'isic'}", "data.synthetic.n=40",
                           "data.synthetic.size=128", "model.input_size=64", f"model.checkpoint={checkpoint}",
                           "target.kinds=[untargeted,white]", f"engine.loss_size={loss_size}", "logger=csv",
                           "gallery_size=0", f"hydra.run.dir={run}"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return run


@pytest.mark.slow  # two 40-image runs (~40 s); engine.loss_size has fast tests in tests/attacks/
def test_losses_at_half_the_side_keep_the_fused_table_within_the_bound(tmp_path: Path, trained_checkpoint: Path) -> None:
    full = read_records(attack(tmp_path, trained_checkpoint, "null") / "records.csv")
    capped_run = attack(tmp_path, trained_checkpoint, "80")
    capped = read_records(capped_run / "records.csv")
    assert ", losses at " in (capped_run / "attack.log").read_text()  # every batch says how it runs
    key = {(r.target, r.image_id, r.loss): r for r in full}
    assert set(key) == {(r.target, r.image_id, r.loss) for r in capped}
    attacked = [r for r in capped if not r.set_aside]
    assert attacked and all(r.set_aside == key[(r.target, r.image_id, r.loss)].set_aside for r in capped)
    changes = [abs(r.metric - key[(r.target, r.image_id, r.loss)].metric) for r in attacked]
    assert sum(changes) / len(changes) <= SCORE_CHANGE
    for target in ("untargeted", "white"):
        broken = {label: {r.image_id for r in records if r.target == target and r.success}
                  for label, records in (("full", full), ("capped", capped))}
        images = {r.image_id for r in attacked if r.target == target}
        assert len(broken["full"] ^ broken["capped"]) <= VERDICT_SHARE * len(images)
    rows = {(row["target"], row["loss"]) for row in fusion.summary_table(capped)}
    assert ("untargeted", fusion.FUSED_LOSS) in rows
