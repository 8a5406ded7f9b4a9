"""conf/attack/*.yaml: every attack composes into valid attack plans, untargeted and targeted."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from medis.attacks.plan import attack_members

from ..conftest import CONF_DIR

ATTACKS = {"medis": ("medis", "sign"), "medis_paper": ("medis", "sign"), "pgd": ("pgd", "pgd"),
           "segpgd": ("segpgd", "pgd"), "cospgd": ("cospgd", "pgd"), "apgd": ("apgd", "apgd"),
           "asma": ("asma", "asma"), "dag": ("dag", "dag")}


def compose_attack(name: str) -> dict:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_container(compose(config_name=None, overrides=[f"+attack={name}"]).attack, resolve=True)


def test_every_attack_config_is_listed() -> None:
    assert {path.stem for path in (CONF_DIR / "attack").glob("*.yaml")} == set(ATTACKS) | {"ensemble"}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_single_attack_configs(name: str) -> None:
    (member,) = attack_members(compose_attack(name), ["bce"])
    assert (member.name, member.config(False, "untargeted", 0).update.rule) == ATTACKS[name]
    assert member.config(True, "white", 0).targeted


def test_ensemble_config_runs_every_attack_under_one_budget() -> None:
    members = attack_members(compose_attack("ensemble"), ["bce"])
    assert [m.name for m in members] == ["medis", "segpgd", "cospgd", "apgd", "dag", "asma"]
    configs = [m.config(False, "untargeted", 0) for m in members]
    assert {c.update.eps for c in configs} == {8 / 255} and {c.steps for c in configs} == {20}
    assert all(label.startswith(f"{m.name}/") for m in members for label in m.labels)
