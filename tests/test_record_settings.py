"""resume=true compares the settings that define a run's records with the stored ones: a change of
the attack, ε, losses, targets, data, seed or the checkpoint's bytes is refused in one line naming
each key; how the work runs (workers, batch sizes) may change."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

import medis.config.resolvers  # noqa: F401  (registers the resolvers and the target options)
from medis.errors import ConfigError
from medis.runtime.record_settings import SETTINGS_NAME, check_resume_settings, record_settings, write_record_settings

from .entry_points import REPO


def task(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("attack", overrides=list(overrides))
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


@pytest.fixture()
def run(tmp_path: Path) -> Path:
    checkpoint = tmp_path / "victim.ckpt"
    checkpoint.write_bytes(b"weights v1")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "records.csv").write_text("header\n")
    write_record_settings(folder, task(f"model.checkpoint={checkpoint}"))
    return folder


def test_the_same_settings_and_other_loader_settings_resume(run: Path, tmp_path: Path) -> None:
    check_resume_settings(run, task(f"model.checkpoint={tmp_path / 'victim.ckpt'}", "data.num_workers=0",
                                    "data.eval_batch_size=3", "engine.max_batch=2"))


@pytest.mark.parametrize(("override", "key"), [
    ("attack.budget.eps=0.0157", "attack.budget.eps (stored None, now 0.0157)"),
    ("losses=sea", "losses.names"),
    ("target=white", "target.kinds"),
    ("seed=3", "seed (stored 0, now 3)"),
    ("data.shard=0/2", "data.shard"),
    ("attack=pgd", "attack.name"),
])
def test_a_record_defining_change_is_refused_naming_the_key(run: Path, tmp_path: Path, override: str, key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        check_resume_settings(run, task(f"model.checkpoint={tmp_path / 'victim.ckpt'}", override))
    line = str(refused.value)
    assert "\n" not in line and line.startswith(f"resume=true into {run}: ") and key in line, line
    assert str(run / SETTINGS_NAME) in line


def test_new_bytes_under_the_same_checkpoint_path_are_refused(run: Path, tmp_path: Path) -> None:
    (tmp_path / "victim.ckpt").write_bytes(b"weights v2")
    with pytest.raises(ConfigError, match=r"model\.checkpoint#sha256"):
        check_resume_settings(run, task(f"model.checkpoint={tmp_path / 'victim.ckpt'}"))


def test_a_folder_of_an_older_run_is_compared_with_its_hydra_config(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    (folder / ".hydra").mkdir(parents=True)
    (folder / "records.csv").write_text("header\n")
    (folder / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(task()))
    check_resume_settings(folder, task("data.num_workers=0"))
    with pytest.raises(ConfigError, match=r"\.hydra/config\.yaml: attack\.budget\.steps \(stored 10, now 3\)"):
        check_resume_settings(folder, task("attack.budget.steps=3"))


def test_settings_are_the_values_as_typed(tmp_path: Path) -> None:
    settings = record_settings(task("attack.budget.eps=0.0314"))
    assert settings["attack.budget.eps"] == "0.0314" and settings["seed"] == "0"
    assert "data.num_workers" not in settings and "engine.max_batch" not in settings
