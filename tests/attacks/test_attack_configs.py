"""conf/attack: every attack composes into an Attack (or an Ensemble) of the right parts; every update
rule has a conf/attack/rule file that mirrors it; the losses and target groups offer every registry
name without a file per name."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, instantiate

import medis.config  # noqa: F401  (resolvers and registry options)
from medis.attacks import Attack, Ensemble
from medis.attacks.kinds import TARGET_KINDS
from medis.attacks.rules import RULES
from medis.losses import LOSS_NAMES, PAPER_LOSSES, SEA_LOSSES

from ..conftest import CONF_DIR

ATTACKS = {"medis": ("medis", "sign"), "medis_paper": ("medis", "sign"), "pgd": ("pgd", "pgd"),
           "segpgd": ("segpgd", "pgd"), "cospgd": ("cospgd", "pgd"), "apgd": ("apgd", "apgd"),
           "asma": ("asma", "asma"), "dag": ("dag", "dag")}


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="attack", overrides=list(overrides))


def test_every_attack_config_is_listed() -> None:
    assert {path.stem for path in (CONF_DIR / "attack").glob("*.yaml")} == set(ATTACKS) | {"ensemble"}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_single_attack_configs(name: str) -> None:
    attack = instantiate(composed(f"attack={name}").attack, _convert_="all")
    assert isinstance(attack, Attack)
    assert (attack.name, attack.rule.name) == ATTACKS[name]
    assert attack.mode == ("paper" if name == "medis_paper" else "clean")


def test_attack_parts_follow_the_papers() -> None:
    pgd = instantiate(composed("attack=pgd").attack, _convert_="all")
    assert pgd.budget.eps == pytest.approx(8 / 255) and pgd.budget.random_start
    assert pgd.rule.alpha(pgd.budget) == pytest.approx(2 / 255)
    apgd = instantiate(composed("attack=apgd").attack, _convert_="all")
    assert apgd.losses == SEA_LOSSES and apgd.rule.alpha(apgd.budget) == pytest.approx(2 * 8 / 255)
    dag = instantiate(composed("attack=dag").attack, _convert_="all")
    assert dag.criteria.stop == "exact" and dag.budget.eps is None


def test_ensemble_config_runs_every_attack_under_one_budget() -> None:
    ensemble = instantiate(composed("attack=ensemble").attack, _convert_="all")
    assert isinstance(ensemble, Ensemble)
    assert [m.name for m in ensemble.members] == ["medis", "segpgd", "cospgd", "apgd", "dag", "asma"]
    assert {m.budget.eps for m in ensemble.members} == {8 / 255} and {m.budget.steps for m in ensemble.members} == {20}
    assert ensemble.members[0].losses == PAPER_LOSSES
    assert all(label.startswith(f"{m.name}/") for m in ensemble.members for label in
               [ensemble.label(m, loss) for loss in m.losses])


def test_a_member_setting_overrides_the_shared_one_field_by_field() -> None:
    ensemble = instantiate(composed("attack=ensemble", "attack.budget.eps=0.01",
                                    "+attack.members.dag.budget.steps=6").attack, _convert_="all")
    dag = next(m for m in ensemble.members if m.name == "dag")
    assert (dag.budget.steps, dag.budget.eps) == (6, 0.01)
    assert {m.budget.steps for m in ensemble.members if m.name != "dag"} == {20}


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rule_has_a_config_that_mirrors_it(name: str) -> None:
    node = yaml.safe_load((CONF_DIR / "attack" / "rule" / f"{name}.yaml").read_text())
    cls = RULES[name]
    assert get_class(node["_target_"]) is cls
    assert set(node) - {"_target_"} == {f.name for f in dataclasses.fields(cls)}
    rule = instantiate(composed("attack=medis", f"attack/rule={name}", "attack.budget.eps=0.03").attack).rule
    assert type(rule) is cls


def test_rule_files_are_the_registered_rules() -> None:
    assert {path.stem for path in (CONF_DIR / "attack" / "rule").glob("*.yaml")} == set(RULES)


def test_loss_and_target_groups_offer_every_registry_name() -> None:
    for loss in LOSS_NAMES:
        assert list(composed(f"losses={loss}").losses.names) == [loss]
    for kind in TARGET_KINDS:
        assert list(composed(f"target={kind}").target.kinds) == [kind]
    assert list(composed("losses=all").losses.names) == list(LOSS_NAMES)
    assert list(composed("target=all").target.kinds) == ["untargeted", "random", "most_similar", "white", "black"]
    assert list(composed("target=all_targeted").target.kinds) == ["random", "most_similar", "white", "black"]
