"""The one validation pass over composed configs (medis.config.schema)."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import medis.config.resolvers  # noqa: F401  (registers the resolvers the configs use)
from medis.config.schema import SCHEMA, check_config, choice, either, integer, optional, real
from medis.errors import ConfigError

from .conftest import CONF_DIR

ATTACK_OPTIONS = sorted(path.stem for path in (CONF_DIR / "attack").glob("*.yaml"))


def composed(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(name, overrides=list(overrides))
    OmegaConf.set_struct(cfg, False)
    cfg.paths.output_dir = "/tmp/unused"  # ${hydra:...} is only set inside a Hydra run
    return cfg


@pytest.mark.parametrize("overrides", [
    ("attack",), ("attack", "experiment=demo"), ("attack", "experiment=compare_attacks"),
    ("attack", "experiment=paper_isic"), ("attack", "trainer=gpu", "engine=gpu"),
    *[("attack", f"attack={option}") for option in ATTACK_OPTIONS],
    ("train",), ("train", "experiment=demo_train"), ("train", "debug=fdr"), ("train", "model=pranet"),
    ("train", "experiment=adv_train"), ("train", "experiment=isic_adv_transfer"),
    ("attack", "experiment=robustness_curve"),
])
def test_every_shipped_config_passes(overrides: tuple[str, ...]) -> None:
    """Every shipped combination passes, once the weights a user brings (absent here) are set aside."""
    cfg = composed(*overrides)
    if "model" in cfg:
        cfg.model.checkpoint = None
    if cfg.get("init_from"):
        cfg.init_from = None
    check_config(cfg)


def test_the_robust_transfer_recipe_is_pir_at_on_isic_transfer() -> None:
    """experiment=isic_adv_transfer: isic_transfer's PraNet from PraNet-19.pth, with PIR-AT's attack."""
    robust, plain = composed("train", "experiment=isic_adv_transfer"), composed("train", "experiment=isic_transfer")
    for key in ("model.net._target_", "data.layout", "trainer.max_epochs", "data.batch_size", "module.optimizer.lr",
                "module.scales", "init_from"):
        assert OmegaConf.select(robust, key) == OmegaConf.select(plain, key), key
    attack = robust.module.adversarial.attack
    assert list(attack.losses) == ["bce"] and attack.budget.steps == 2 and attack.rule.step_size == 0.01
    assert attack.budget.eps == pytest.approx(4 / 255) and attack.budget.random_start
    assert robust.module.adversarial.share == 1.0
    assert robust.callbacks.model_checkpoint.monitor == "val/robust_dice"
    assert plain.module.adversarial is None


@pytest.mark.parametrize(("override", "message"), [
    ("seed=-1", "seed=-1: expected an integer in [0, 4294967295]"),
    ("seed=1.5", "seed=1.5: expected an integer"),
    ("gallery_size=-3", "gallery_size=-3: expected an integer >= 0"),
    ("resume=1", "resume=1: expected true or false"),
    ("transfer_to=/nonexistent.ckpt", "transfer_to='/nonexistent.ckpt': expected the path of an existing file, or null"),
    ("wait_for_lock=-1", "wait_for_lock=-1: expected a number >= 0"),
    ("attack.budget.eps=abc", "attack.budget.eps='abc': expected a number in [0, 1], or null"),
    ("attack.budget.norm=l3", "attack.budget.norm='l3': expected one of linf, l2"),
    ("attack.criteria.stop=sometimes", "attack.criteria.stop='sometimes': expected a number in [0, 1], or one of exact, never, or null"),
    ("attack.rule.step_size=0", "attack.rule.step_size=0: expected a number > 0"),
    ("engine.max_batch=0", "engine.max_batch=0: expected an integer >= 1, or one of auto, or null"),
    ("data.image_size=100", "data.image_size=100: expected an integer >= 32, a multiple of 32"),
    ("data.shard=4/4", "data.shard='4/4': expected i/n with 0 <= i < n (e.g. 0/4), or null"),
    ("data.augment.hflip=2", "data.augment.hflip=2: expected a number in [0, 1]"),
    ("trainer.limit_test_batches=-1", "trainer.limit_test_batches=-1: expected an integer >= 0, or a number in [0, 1], or null"),
    ("trainer.precision=17", "trainer.precision=17: expected one of 64-true"),
    ("trainer.accelerator=abacus", "trainer.accelerator='abacus': expected one of auto, cpu, gpu"),
    ("model.checkpoint=/nonexistent.ckpt", "model.checkpoint='/nonexistent.ckpt': expected the path of an existing file"),
    ("attack/rule=padam", None),
])
def test_a_bad_value_is_one_line_naming_key_value_and_range(override: str, message: str | None) -> None:
    if message is None:  # a valid one, among the bad ones for contrast
        check_config(composed("attack", override, "attack.budget.eps=0.03"))
        return
    with pytest.raises(ConfigError) as caught:
        check_config(composed("attack", override))
    text = str(caught.value)
    assert text.startswith(message) and "\n" not in text, text


def test_cascade_keys_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"^attack\.floor=1\.5: expected a number in \[0, 1\)"):
        check_config(composed("attack", "attack=ensemble", "attack.floor=1.5"))
    with pytest.raises(ConfigError, match=r"^attack\.members\.padam_cos\.rule\.beta2=1\.0: expected a number in \[0, 1\)"):
        check_config(composed("attack", "attack=ensemble", "attack.members.padam_cos.rule.beta2=1.0"))
    with pytest.raises(ConfigError, match=r"^attack\.rule\.radii=\[0\.5, 1\.0\]: expected a list of a number >= 1"):
        check_config(composed("attack", "attack=sea", "attack.rule.radii=[0.5,1.0]"))


def test_ensemble_members_are_checked_by_wildcard() -> None:
    cfg = composed("attack", "attack=ensemble", "+attack.members.padam_cos.budget.random_start=sometimes")
    with pytest.raises(ConfigError, match=r"^attack\.members\.padam_cos\.budget\.random_start='sometimes': expected true"):
        check_config(cfg)


def test_a_missing_mandatory_value_names_the_key() -> None:
    cfg = composed("attack")
    cfg.data.root = "???"  # OmegaConf's mark of a mandatory value (conf/data/_base.yaml)
    with pytest.raises(ConfigError, match=r"^data\.root is missing: set it on the command line"):
        check_config(cfg)


def test_train_keys_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"^module\.scales=\[1\.0, -2\.0\]: expected a list of a number > 0"):
        check_config(composed("train", "module.scales=[1.0,-2.0]"))
    with pytest.raises(ConfigError, match=r"^module\.val_fusion='mean': expected one of last, clean, paper"):
        check_config(composed("train", "module.val_fusion=mean"))


def test_rules_read_as_they_say() -> None:
    assert integer(1).accepts(3) and not integer(1).accepts(True) and not integer(1).accepts(2.0)
    assert real(0, 1, lo_open=True).accepts(1) and not real(0, 1, lo_open=True).accepts(0)
    assert not real(0).accepts(float("nan")) and real(0).accepts(float("inf"))
    assert choice(16, "16").accepts(16) and not choice(16).accepts("16")
    assert optional(integer(0)).accepts(None) and either(integer(0), choice("auto")).accepts("auto")


def test_choices_mirror_the_registries() -> None:
    from medis.attacks.budget import NORMS
    from medis.attacks.criteria import MODES, STOP_WORDS
    from medis.attacks.rules.apgd import TRACKED
    from medis.data.layouts import LAYOUTS
    from medis.lightning.segmentation_module import FUSIONS as VAL_FUSIONS
    from medis.models.frontend import FUSIONS
    from medis.models.wrappers import COMPILE_BACKENDS, PRECISIONS

    def options(key: str) -> set:
        rule = SCHEMA[key]
        return {word for word in rule.allowed.replace("one of ", "").replace(", or null", "").split(", ")}

    assert options("data.layout") == set(LAYOUTS)
    assert options("attack.budget.norm") == set(NORMS)
    assert options("attack.mode") == set(MODES)
    assert options("attack.rule.track") == set(TRACKED)
    assert options("engine.precision") == set(PRECISIONS)
    assert options("engine.compile_backend") == set(COMPILE_BACKENDS)
    assert options("model.fusion") == set(FUSIONS)
    assert options("module.val_fusion") == set(VAL_FUSIONS)
    assert all(SCHEMA["attack.criteria.stop"].accepts(word) for word in STOP_WORDS)


@pytest.mark.parametrize(("name", "override", "nearest"), [
    ("attack", "+attack.stesp=5", "attack.budget.steps"),
    ("attack", "+data.eval_bach_size=4", "data.eval_batch_size"),
    ("attack", "+resum=true", "resume"),
    ("attack", "+losses.nmes=[bce]", "losses.names"),
    ("attack", "+target.kind=[white]", "target.kinds"),
    ("attack", "+attack.rule.momentum=0.9", None),  # PGD has no momentum (MI-FGSM has)
    ("train", "+model.net.widht=8", None),
])
def test_a_key_added_with_plus_that_nothing_takes_is_one_line(name: str, override: str, nearest: str | None) -> None:
    from medis.config.added_keys import check_added_keys

    key = override.split("=")[0].lstrip("+")
    cfg = composed(name, *(["attack=pgd"] if "rule" in override else []), override)
    with pytest.raises(ConfigError, match=f"unknown key {key}") as caught:
        check_added_keys(cfg, [override])
    if nearest:
        assert str(caught.value).endswith(f"the nearest key is {nearest}")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("name", "overrides"), [
    ("train", ("+trainer.limit_train_batches=2",)), ("train", ("+trainer.gradient_clip_val=1.0",)),
    ("attack", ("+callbacks.early._target_=pytorch_lightning.callbacks.EarlyStopping",)),
    ("attack", ("attack=ensemble", "+attack.members.padam_mbce.budget.steps=6")),
    ("train", ("++model.net.channel=8",)), ("train", ("model=unet", "+model.net.in_channels=3")),
])
def test_a_key_added_with_plus_that_something_takes_passes(name: str, overrides: tuple[str, ...]) -> None:
    from medis.config.added_keys import check_added_keys

    check_added_keys(composed(name, *overrides), list(overrides))


def test_an_added_typo_stops_attack_py_before_any_work(tmp_path) -> None:
    from .entry_points import run_entry

    done = run_entry("attack.py", tmp_path, "+attack.stesp=5")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: unknown key attack.stesp (added with +attack.stesp=...): no config group, schema entry or "
        "constructor takes it; the nearest key is attack.budget.steps")
    assert not (tmp_path / "outputs" / "attack").exists() or not list((tmp_path / "outputs" / "attack").rglob("*.csv"))
