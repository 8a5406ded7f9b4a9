"""``train.py experiment=adv_train`` and ``attack.py experiment=robustness_curve`` end to end, as a user
runs them, on small synthetic data: the robust checkpoint loads in attack.py like any other, and the
curve writes its table, plot, curve.json and checks.json with every check."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from medis.models.checkpoints import read_checkpoint
from medis.reporting.wandb_offline import read_offline_run

from .entry_points import only, run_entry

SMALL_TRAINING = ("model.input_size=64", "model.net.channel=8", "trainer.max_epochs=1", "data.batch_size=4",
                  "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1", "module.scales=[1.0]",
                  "logger=csv", "callbacks.val_predictions=null")
SMALL_CASCADE = ("attack.budget.steps=2", "attack.members.medis.budget.steps=1", "curve.images=2",
                 "curve.eps=[2,4]", "curve.checks.seeds=[1]", "curve.checks.gradient_images=1")


@pytest.fixture(scope="module")
def robust_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("adv_train")
    done = run_entry("train.py", root, "experiment=adv_train", *SMALL_TRAINING)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = only("outputs/train/runs/*", root)
    with (run_dir / "csv" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert any(row.get("val/robust_dice") for row in rows)  # logged each epoch beside val/dice
    assert any(row.get("val/dice") for row in rows)
    assert any(row.get("train/adversarial_share") == "1.0" for row in rows)
    return only("checkpoints/best-*-robust*.ckpt", run_dir)  # chosen by the robust validation Dice


def test_the_checkpoint_says_how_it_was_trained(robust_checkpoint: Path) -> None:
    hparams = read_checkpoint(robust_checkpoint)["hyper_parameters"]
    assert hparams["adversarial"]["attack"]["losses"] == ["bce"]
    assert hparams["adversarial"]["attack"]["eps"] == pytest.approx(4 / 255)
    assert hparams["adversarial"]["share"] == 1.0
    assert hparams["victim"]["input_size"] == 64


def test_the_robust_checkpoint_loads_in_attack_py_like_any_other(robust_checkpoint: Path, tmp_path: Path) -> None:
    done = run_entry("attack.py", tmp_path, "experiment=smoke", f"model.checkpoint={robust_checkpoint}", "logger=csv",
                     "data.synthetic.n=8", "gallery_size=0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert only("outputs/attack/runs/*/records.csv", tmp_path).stat().st_size > 0


def test_the_curve_compares_two_models_and_runs_every_check(robust_checkpoint: Path, trained_checkpoint: Path,
                                                            tmp_path: Path) -> None:
    done = run_entry("attack.py", tmp_path, "experiment=robustness_curve",
                     f"curve.checkpoints=[{trained_checkpoint},{robust_checkpoint}]", "curve.labels=[clean,robust]",
                     f"curve.checks.transfer_from={trained_checkpoint}", *SMALL_CASCADE)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = only("outputs/attack/runs/*", tmp_path)
    curve = json.loads((run_dir / "curve.json").read_text())
    assert set(curve["models"]) == {"clean", "robust"}
    for model in curve["models"].values():
        assert set(model["eps"]) == {"2", "4"}
        for row in model["eps"].values():
            assert len(row["per_image_miou"]) == 2 and 0 <= row["miou"] <= 1 and 0 <= row["dice"] <= 1
            # each image's worst case is no better for the model than its clean prediction
        assert model["eps"]["4"]["miou"] <= model["clean"]["miou"] + 1e-6
    checks = json.loads((run_dir / "checks.json").read_text())
    names = {"more_steps", "transfer", "large_eps", "seeds", "gradients"}
    assert set(checks["robust"]) == names and set(checks["clean"]) == names
    assert checks["robust"]["transfer"]["passed"] in (True, False)  # judged: the clean model is the source
    assert checks["clean"]["transfer"]["passed"] is None  # the source itself
    assert checks["robust"]["gradients"]["passed"] is True
    assert checks["robust"]["gradients"]["measured"]["nonfinite_gradient_share"] == 0
    table = (run_dir / "curve.md").read_text()
    assert "| clean |" in table and "| robust |" in table and "mIoU @4/255" in table
    assert (run_dir / "curve.png").stat().st_size > 10_000
    assert len(list((run_dir / "records").glob("*.csv"))) == 4
    assert "robustness curve:" in done.stdout
    # W&B (offline, the default logger): the table, the plot and a metric per model and radius
    wandb_run = read_offline_run(run_dir / "wandb")
    columns, rows = wandb_run.table("robustness_curve")
    assert columns == ["model", "eps_255", "worst_miou", "worst_dice"] and len(rows) == 4
    assert wandb_run.images("robustness_curve_plot")
    assert {"curve/robust/miou@4", "curve/clean/dice@0"} <= wandb_run.history_keys


def test_a_missing_checkpoint_is_one_line(tmp_path: Path) -> None:
    done = run_entry("attack.py", tmp_path, "experiment=robustness_curve", "curve.checkpoints=[nowhere.ckpt]")
    assert done.returncode != 0
    assert "nowhere.ckpt" in done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("model", ["unet", pytest.param("pranet", marks=pytest.mark.slow)])  # pranet: ~12 s
def test_adversarial_training_runs_for_every_architecture(model: str, tmp_path: Path) -> None:
    """One training and one validation batch (fast dev run) of the U-Net and of the full PraNet."""
    done = run_entry("train.py", tmp_path, "experiment=adv_train", f"model={model}", "debug=fdr", "model.input_size=64",
                     "data.batch_size=2", "module.scales=[1.0]", "module.adversarial.validation.budget.steps=1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "val/robust_dice" in done.stdout
