"""The SLURM launcher asks for what Lightning will check under srun: as many tasks per node, and
GPUs, as ``trainer.devices`` (Lightning's own SLURMEnvironment validation, fed the variables srun
would set from the composed launcher config)."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from lightning_fabric.plugins.environments import SLURMEnvironment
from omegaconf import OmegaConf

import medis.config.resolvers  # noqa: F401  (registers the resolvers and the target options)

from .conftest import CONF_DIR


def launcher(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("attack", overrides=["hydra/launcher=slurm", *overrides], return_hydra_config=True)
    return cfg, OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


def srun_validates(cfg, slurm: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", str(slurm["tasks_per_node"]))
    monkeypatch.setenv("SLURM_NNODES", str(slurm["nodes"]))
    monkeypatch.setenv("SLURM_JOB_NAME", "attack")  # not an interactive session
    SLURMEnvironment().validate_settings(num_devices=int(cfg.trainer.devices),
                                         num_nodes=int(cfg.trainer.get("num_nodes", 1)))


@pytest.mark.parametrize("overrides", [(), ("trainer=ddp",), ("trainer=ddp", "trainer.devices=4"), ("engine=gpu",)])
def test_the_launcher_asks_for_what_lightning_checks(overrides: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, slurm = launcher(*overrides)
    assert slurm["tasks_per_node"] == slurm["gpus_per_node"] == int(cfg.trainer.devices)
    srun_validates(cfg, slurm, monkeypatch)


def test_lightning_would_refuse_the_old_request(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, slurm = launcher("trainer=ddp")
    slurm["tasks_per_node"] = 1  # what the launcher asked for before
    with pytest.raises(ValueError, match="does not match"):
        srun_validates(cfg, slurm, monkeypatch)
