"""conf/attack: every attack composes into an Attack (or an Ensemble) of the right parts; every update
rule has a conf/attack/rule file that mirrors it; the losses and target groups offer every registry
name without a file per name."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, instantiate

import medis.config.resolvers  # noqa: F401  (resolvers and registry options)
from medis.attacks import Attack, Ensemble
from medis.attacks.rules import RULES
from medis.attacks.targets import TARGET_KINDS
from medis.losses import LOSS_NAMES, PAPER_LOSSES, SEA_LOSSES

from ..conftest import CONF_DIR

ATTACK_FILES = sorted(path.stem for path in (CONF_DIR / "attack").glob("*.yaml"))
PAPER_PARTS = {"medis": ("medis", "sign"), "medis_paper": ("medis", "sign"), "pgd": ("pgd", "pgd"),
               "segpgd": ("segpgd", "pgd"), "cospgd": ("cospgd", "pgd"), "apgd": ("apgd", "apgd"),
               "asma": ("asma", "asma"), "dag": ("dag", "dag"), "padam": ("padam", "padam"), "sea": ("sea", "apgd")}
"""(records' name, rule) of the attacks of the papers; any other attack config only has to compose."""


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="attack", overrides=list(overrides))


@pytest.mark.parametrize("name", ATTACK_FILES)
def test_every_attack_config_composes_into_an_attack_of_registered_parts(name: str) -> None:
    attack = instantiate(composed(f"attack={name}").attack, _convert_="all")
    assert isinstance(attack, (Attack, Ensemble))
    for member in (attack.members if isinstance(attack, Ensemble) else (attack,)):
        assert member.rule.name in RULES and set(member.losses or ()) <= set(LOSS_NAMES)
    if name in PAPER_PARTS:
        assert (attack.name, attack.rule.name) == PAPER_PARTS[name]
        assert attack.mode == ("paper" if name == "medis_paper" else "clean")


def test_attack_parts_follow_the_papers() -> None:
    pgd = instantiate(composed("attack=pgd").attack, _convert_="all")
    assert pgd.budget.eps == pytest.approx(8 / 255) and pgd.budget.random_start
    assert pgd.rule.alpha(pgd.budget) == pytest.approx(2 / 255)
    apgd = instantiate(composed("attack=apgd").attack, _convert_="all")
    assert apgd.losses == SEA_LOSSES and apgd.rule.alpha(apgd.budget) == pytest.approx(2 * 8 / 255)
    dag = instantiate(composed("attack=dag").attack, _convert_="all")
    assert dag.criteria.stop == "exact" and dag.budget.eps is None
    padam = instantiate(composed("attack=padam").attack, _convert_="all")  # Halmosi et al. 2024
    assert padam.losses == ("bce", "cosine") and padam.budget.steps == 200 and padam.budget.random_start
    assert padam.rule.alpha(padam.budget) == pytest.approx(2 / 255) and padam.rule.amsgrad
    assert (padam.rule.beta1, padam.rule.beta2, padam.rule.adam_eps) == (0.9, 0.999, 1e-8)
    sea = instantiate(composed("attack=sea").attack, _convert_="all")  # Croce, Singh, Hein 2024
    assert sea.losses == ("masked_bce", "js", "masked_logit", "segpgd") and sea.budget.random_start
    assert [(st.length, st.radius) for st in (sea.rule.stage(p, 302) for p in (0, 91, 182))] == [
        (90, 2.0), (90, 1.5), (120, 1.0)]


def test_public_protocol_runs_every_member_on_every_image() -> None:
    protocol = instantiate(composed("attack=padam_sea").attack, _convert_="all")
    assert isinstance(protocol, Ensemble) and not protocol.cascade
    assert [(m.name, m.losses, m.budget.steps) for m in protocol.members] == [
        ("padam", ("bce", "cosine"), 200), ("sea", SEA_LOSSES, 302)]
    assert protocol.members[1].rule.radii == (2.0, 1.5, 1.0)


def test_ensemble_config_is_a_cascade_of_cheap_strong_members_first() -> None:
    ensemble = instantiate(composed("attack=ensemble").attack, _convert_="all")
    assert isinstance(ensemble, Ensemble) and ensemble.cascade and ensemble.warm_start
    assert ensemble.floor == 0.005
    assert [m.name for m in ensemble.members] == ["padam_cos", "padam_mbce", "padam_mlogit", "medis"]
    assert {m.budget.eps for m in ensemble.members} == {8 / 255}
    assert ensemble.members[-1].losses == PAPER_LOSSES and ensemble.members[-1].budget.steps == 10
    assert all(label.startswith(f"{m.name}/") for m in ensemble.members for label in
               [ensemble.label(m, loss) for loss in m.losses])


def test_a_member_setting_overrides_the_shared_one_field_by_field() -> None:
    ensemble = instantiate(composed("attack=ensemble", "attack.budget.eps=0.01",
                                    "+attack.members.padam_mbce.budget.steps=6").attack, _convert_="all")
    member = next(m for m in ensemble.members if m.name == "padam_mbce")
    assert (member.budget.steps, member.budget.eps) == (6, 0.01)
    assert {m.budget.steps for m in ensemble.members if m.name not in ("padam_mbce", "medis")} == {200}


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
