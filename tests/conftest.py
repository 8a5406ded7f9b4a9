"""Shared fixtures: small synthetic sets written in every real layout (generated once per test run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medis.data.synthetic import generate

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# kind -> (n, size); small so that the whole set of layouts is written in a few seconds.
SYNTHETIC_SETS = {
    "isic2016": 20,
    "isic2017": 20,
    "isic2018": 20,
    "kvasir": 12,
    "cvc_clinicdb": 12,
    "pranet": 30,
    "generic_dermoscopy": 8,
}


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``pranet_lite`` checkpoint trained by ``train.py`` for 15 epochs at 64 px on 60 synthetic ISIC
    images (~15 s, validation Dice ~0.7): a victim whose clean predictions are mostly right, so that
    the attack tests attack something (clean mode sets aside the images a model already fails)."""
    from .entry_points import only, run_entry

    root = tmp_path_factory.mktemp("trained")
    done = run_entry("train.py", root, "experiment=demo_train", "model.input_size=64", "trainer.max_epochs=15",
                     "trainer.precision=32-true",
                     "data.batch_size=8", "module.scales=[1.0]", "logger=csv", "callbacks.val_predictions=null",
                     images=60)
    assert done.returncode == 0, done.stderr[-3000:]
    return only("outputs/train/runs/*/checkpoints/best-*.ckpt", root)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one small synthetic set per kind: ``<root>/<kind>``, images 64 px high."""
    root = tmp_path_factory.mktemp("synthetic")
    for kind, n in SYNTHETIC_SETS.items():
        generate(kind, root / kind, n=n, size=64, seed=1, progress=False)
    return root
