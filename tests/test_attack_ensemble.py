"""attack=ensemble (the cascade) through attack.py (W&B offline and CSV logging), on two budgets, with
transfer to a second model: members run in order on the images still standing; the report's ensemble row
is at least as strong as each member at every eps."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medis.models.pranet import pranet_lite
from medis.reporting import read_records

from .entry_points import REPO, only, run_entry

EPS = (2 / 255, 8 / 255)
MEMBERS = ("padam_cos", "padam_mbce", "padam_mlogit", "medis")


def test_ensemble_sweep_transfer_and_report(tmp_path: Path, trained_checkpoint: Path) -> None:
    torch.manual_seed(123)
    other = tmp_path / "other_model.pt"
    torch.save(pranet_lite(channel=16).state_dict(), other)  # a second, differently initialised model
    done = run_entry("attack.py", tmp_path, "model.input_size=64", "attack=ensemble", "attack.budget.steps=2",
                     f"attack.budget.eps={EPS[0]},{EPS[1]}", f"transfer_to={other}", "gallery_size=1",
                     f"model.checkpoint={trained_checkpoint}",
                     images=20, multirun=True)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = only("outputs/attack/multiruns/*", tmp_path)
    records = [r for path in sorted(sweep.glob("*/records.csv")) for r in read_records(path)]
    assert {r["attack"] for r in records} <= set(MEMBERS) and MEMBERS[0] in {r["attack"] for r in records}
    assert all(r["loss"].split("/")[0] == r["attack"] for r in records)  # qualified <member>/<loss>
    for path in sorted(sweep.glob("*/records.csv")):  # a member only gets the images its predecessor left standing
        by_member = {m: {r.image_id for r in read_records(path) if r.attack == m} for m in MEMBERS}
        for earlier, later in zip(MEMBERS, MEMBERS[1:]):
            assert by_member[later] <= by_member[earlier]
    attacked = [record for record in records if not record.set_aside]
    assert attacked
    for job in sorted(sweep.glob("*/records.csv")):  # logged like any attack: W&B (offline) and CSV
        assert list((job.parent / "wandb").glob("offline-run-*"))
        header = (job.parent / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
        assert {"attack/asr", "attack/by_loss/padam_cos/cosine/asr"} <= set(header)
    for record in records:
        assert record["linf"] <= record["eps"] + 1e-6  # every member held the shared budget
    for record in attacked:
        assert record["forwards"] >= 1 and record["transfer_metric"] is not None
        if record["transfer_success"] is not None:  # None: the transfer model already fails the clean image
            assert record["transfer_success"] == (record["transfer_metric"] <= 0.5)
        assert record["worst_transfer_metric"] is not None

    report = subprocess.run([sys.executable, "-m", "medis.report", str(sweep)], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    with open(sweep / "report" / "attacks.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for eps in EPS:
        at = {r["attack"]: r for r in rows if abs(float(r["eps"]) - eps) < 1e-9}
        assert set(at) <= set(MEMBERS) | {"ensemble"} and "ensemble" in at
        ensemble = at.pop("ensemble")
        for name, row in at.items():
            if row["images"] == ensemble["images"]:  # a member that attacked every image
                assert float(ensemble["asr"]) >= float(row["asr"]), (eps, name)
                assert float(ensemble["adv_miou"]) <= float(row["adv_miou"]) + 1e-12, (eps, name)
        spent = sum(float(row["forwards"]) * int(row["images"]) for row in at.values())
        assert float(ensemble["forwards"]) == pytest.approx(spent / int(ensemble["images"]))
        assert ensemble["transfer_miou"] != ""
        judged = [r for r in attacked if r["worst_transfer_success"] is not None and abs(r["eps"] - eps) < 1e-9]
        assert (ensemble["transfer_asr"] != "") == bool(judged)  # empty: the other model fails every clean image
    assert "ensemble" in (sweep / "report" / "attacks.md").read_text()
