"""One validation pass over a composed ``train.py`` / ``attack.py`` config, before any work.

Hydra composes whatever the command line says: ``attack.budget.eps=abc`` becomes the text ``'abc'``
and ``resume=maybe`` a (true-looking) text, and the mistake would surface deep inside a run, as a
traceback or, worse, as a wrong run. :func:`check_config` checks every key of :data:`SCHEMA` that
the config holds, for type and range, and stops at the first bad one with a one-line
:class:`~medis.errors.ConfigError` naming the key, the value and what is allowed::

    attack.budget.eps='abc': expected a number in (0, 1], or null

Keys of :data:`SCHEMA` may hold ``*`` for any one level (``attack.members.*.budget.steps`` checks
every member of an ensemble); keys a config does not hold are skipped, so one schema serves both
entry points. Names that a registry resolves (losses, target kinds, update rules) are checked by
their registries; the choices written here that mirror a registry are compared with it by
``tests/test_config_schema.py``.

Torch-free (omegaconf, pathlib).
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from medis.errors import ConfigError
from medis.runtime.byte_sizes import parse_size

__all__ = ["Rule", "SCHEMA", "check_config", "choice", "either", "integer", "optional", "real"]


@dataclass(frozen=True)
class Rule:
    """What a key accepts: a test of the resolved value and its description for the error."""

    accepts: Callable[[Any], bool]
    allowed: str


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)


def _interval(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    low, high = (f"{v:g}" if isinstance(v, float) else str(v) for v in (lo, hi))
    if lo is None and hi is None:
        return ""
    if hi is None:
        return f" {'>' if lo_open else '>='} {low}"
    if lo is None:
        return f" {'<' if hi_open else '<='} {high}"
    return f" in {'(' if lo_open else '['}{low}, {high}{')' if hi_open else ']'}"


def _within(value: float, lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> bool:
    if lo is not None and (value <= lo if lo_open else value < lo):
        return False
    return hi is None or (value < hi if hi_open else value <= hi)


def integer(lo: int | None = None, hi: int | None = None, multiple: int | None = None) -> Rule:
    """A whole number (not a bool) in ``[lo, hi]``, optionally a multiple of ``multiple``."""
    text = "an integer" + _interval(lo, hi, False, False) + (f", a multiple of {multiple}" if multiple else "")
    return Rule(lambda v: _is_int(v) and _within(v, lo, hi, False, False) and (not multiple or v % multiple == 0), text)


def real(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False) -> Rule:
    """A number (int or float, not a bool, not NaN) in the interval."""
    return Rule(lambda v: _is_real(v) and _within(v, lo, hi, lo_open, hi_open),
                "a number" + _interval(lo, hi, lo_open, hi_open))


def choice(*options: Any) -> Rule:
    """One of ``options`` (compared with ``==``, type included: ``16`` is not ``'16'``)."""
    return Rule(lambda v: any(v == o and type(v) is type(o) for o in options),
                "one of " + ", ".join(str(o) for o in options))


def either(*rules: Rule) -> Rule:
    """Any of ``rules``."""
    return Rule(lambda v: any(r.accepts(v) for r in rules), ", or ".join(r.allowed for r in rules))


def optional(rule: Rule) -> Rule:
    """``rule`` or null."""
    return Rule(lambda v: v is None or rule.accepts(v), rule.allowed + ", or null")


def list_of(rule: Rule, min_len: int = 1) -> Rule:
    """A list of at least ``min_len`` items, each accepted by ``rule``."""
    return Rule(lambda v: isinstance(v, (list, tuple)) and len(v) >= min_len and all(rule.accepts(x) for x in v),
                f"a list of {rule.allowed}" + (" (not empty)" if min_len else ""))


BOOL = Rule(lambda v: isinstance(v, bool), "true or false")
TEXT = Rule(lambda v: isinstance(v, str) and v.strip() != "", "a non-empty text")
ANY_TEXT = Rule(lambda v: isinstance(v, str), "a text")
FILE = Rule(lambda v: isinstance(v, str) and Path(v).is_file(), "the path of an existing file")
PROBABILITY = real(0, 1)
SEED = integer(0, 2**32 - 1)
SHARD = Rule(lambda v: isinstance(v, str) and bool(re.fullmatch(r"\d+/\d+", v))
             and int(v.split("/")[0]) < int(v.split("/")[1]), "i/n with 0 <= i < n (e.g. 0/4)")
BATCH_LIMIT = optional(either(integer(0), real(0, 1)))
NETWORK_SIZE = integer(32, multiple=32)
LIGHTNING_PRECISIONS = ("64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64", "32", "16",
                        "bf16", "transformer-engine", "transformer-engine-float16")

_ATTACK = {
    "name": TEXT,
    "mode": choice("clean", "paper"),
    "losses": optional(list_of(TEXT)),
    "budget.steps": integer(1),
    "budget.eps": optional(real(0, 1)),
    "budget.norm": choice("linf", "l2"),
    "budget.random_start": BOOL,
    "criteria.stop": optional(either(real(0, 1), choice("exact", "never"))),
    "criteria.success": optional(real(0, 1)),
    "rule.step_size": real(0, lo_open=True),
    "rule.step_size_eps": optional(real(0, lo_open=True)),
    "rule.momentum": real(0),
    "rule.rho": real(0, 1, lo_open=True),
    "rule.track": choice("sea", "ce", "loss"),
    "rule.tau": real(0, lo_open=True),
    "rule.beta": real(0, lo_open=True),
    "rule.l2": real(0),
    "rule.beta1": real(0, 1, hi_open=True),
    "rule.beta2": real(0, 1, hi_open=True),
    "rule.adam_eps": real(0, lo_open=True),
    "rule.amsgrad": BOOL,
    "rule.radii": list_of(real(1)),
    "rule.stages": list_of(real(0, 1, lo_open=True)),
}

SCHEMA: dict[str, Rule] = {
    # both entry points
    "seed": SEED,
    "task_name": TEXT,
    "wait_for_lock": real(0),
    # data (conf/data/_base.yaml)
    "data.root": TEXT,
    "data.layout": choice("isic2016", "isic2017", "isic2018", "kvasir", "cvc_clinicdb", "pranet", "generic"),
    "data.train_split": optional(TEXT),
    "data.val_split": optional(TEXT),
    "data.test_split": optional(TEXT),
    "data.val_fraction": real(0, 1, hi_open=True),
    "data.test_fraction": real(0, 1, hi_open=True),
    "data.image_size": NETWORK_SIZE,
    "data.batch_size": integer(1),
    "data.eval_batch_size": optional(integer(1)),
    "data.num_workers": integer(0),
    "data.pin_memory": BOOL,
    "data.test_mode": choice("attack", "eval"),
    "data.dataset_name": optional(TEXT),
    "data.mask_suffix": ANY_TEXT,
    "data.synthetic.kind": TEXT,
    "data.synthetic.n": integer(1),
    "data.synthetic.size": integer(32),
    "data.synthetic.seed": SEED,
    "data.seed": SEED,
    "data.shard": optional(SHARD),
    "data.augment.hflip": PROBABILITY,
    "data.augment.vflip": PROBABILITY,
    "data.augment.rotate": real(0, 180),
    "data.augment.scale": real(0, 1, hi_open=True),
    "data.augment.rotate_p": PROBABILITY,
    "data.augment.color_jitter.brightness": real(0),
    "data.augment.color_jitter.contrast": real(0),
    "data.augment.color_jitter.saturation": real(0),
    "data.augment.color_jitter.hue": real(0, 0.5),
    "data.augment.color_jitter.p": PROBABILITY,
    # model (conf/model)
    "model.input_size": NETWORK_SIZE,
    "model.fusion": choice("paper", "clean", "last"),
    "model.antialias": BOOL,
    "model.checkpoint": optional(FILE),
    "model.backbone_weights": optional(FILE),
    "model.net.channel": integer(1),
    # trainer (conf/trainer): Lightning's own types, checked before Lightning sees them
    "trainer.accelerator": choice("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu"),
    "trainer.devices": either(integer(-1), choice("auto"), list_of(integer(0)),
                              Rule(lambda v: isinstance(v, str) and bool(re.fullmatch(r"-?\d+(,\d+)*,?", v)),
                                   "a text of device indices (e.g. '0,1')")),
    "trainer.num_nodes": integer(1),
    "trainer.max_epochs": optional(integer(-1)),
    "trainer.max_steps": integer(-1),
    "trainer.check_val_every_n_epoch": optional(integer(1)),
    "trainer.log_every_n_steps": integer(1),
    "trainer.num_sanity_val_steps": integer(-1),
    "trainer.deterministic": either(BOOL, choice("warn")),
    "trainer.benchmark": optional(BOOL),
    "trainer.precision": either(choice(*LIGHTNING_PRECISIONS), choice(16, 32, 64)),
    "trainer.limit_train_batches": BATCH_LIMIT,
    "trainer.limit_val_batches": BATCH_LIMIT,
    "trainer.limit_test_batches": BATCH_LIMIT,
    "trainer.fast_dev_run": either(BOOL, integer(0)),
    "trainer.overfit_batches": either(integer(0), real(0, 1)),
    "trainer.accumulate_grad_batches": integer(1),
    # attack.py (conf/attack.yaml, conf/attack, conf/engine)
    "gallery_size": integer(0),
    "resume": BOOL,
    "transfer_to": optional(FILE),
    **{f"attack.{key}": rule for key, rule in _ATTACK.items()},
    **{f"attack.members.*.{key}": rule for key, rule in _ATTACK.items()},
    "attack.cascade": BOOL,
    "attack.floor": real(0, 1, hi_open=True),
    "attack.warm_start": BOOL,
    "engine.max_batch": optional(either(integer(1), choice("auto"))),
    "engine.memory_limit": Rule(lambda v: v == "auto" or parse_size(v) is not None,
                                 "auto, or a size such as 6GB, 6GiB, 512MB (more than 0 bytes)"),
    "engine.loss_size": optional(integer(16)),
    "engine.compaction": BOOL,
    "engine.fusion_only": BOOL,
    "engine.precision": choice("fp32", "bf16", "fp64"),
    "engine.channels_last": BOOL,
    "engine.compile": BOOL,
    "engine.compile_mode": optional(choice("default", "reduce-overhead", "max-autotune",
                                           "max-autotune-no-cudagraphs")),
    "engine.compile_backend": choice("inductor", "aot_eager", "eager", "cudagraphs"),
    # train.py (conf/train.yaml)
    "init_from": optional(FILE),
    "backbone_weights": optional(FILE),
    "ckpt_path": optional(FILE),
    "module.optimizer.lr": real(0),
    "module.optimizer.weight_decay": real(0),
    "module.scheduler.step_size": integer(1),
    "module.scheduler.gamma": real(0, 1, lo_open=True),
    "module.scales": list_of(real(0, lo_open=True)),
    "module.grad_clip": optional(real(0)),
    "module.grad_clip_algorithm": choice("value", "norm"),
    "module.val_fusion": choice("last", "clean", "paper"),
    "module.paper_bce": BOOL,
    "module.num_val_examples": integer(0),
    # adversarial training (conf/experiment/adv_train.yaml)
    "module.adversarial.share": PROBABILITY,
    "module.adversarial.warmup_epochs": real(0),
    "module.adversarial.seed": SEED,
    **{f"module.adversarial.{part}.{key}": rule for part in ("attack", "validation") for key, rule in _ATTACK.items()},
    # the robustness curve (conf/experiment/robustness_curve.yaml)
    "curve.eps": list_of(real(0, lo_open=True)),
    "curve.checkpoints": optional(list_of(FILE)),
    "curve.labels": optional(list_of(TEXT)),
    "curve.images": optional(integer(1)),
    "curve.checks.enabled": BOOL,
    "curve.checks.eps": real(0, lo_open=True),
    "curve.checks.tolerance": real(0),
    "curve.checks.step_factor": integer(1),
    "curve.checks.large_eps": optional(real(0, lo_open=True)),
    "curve.checks.large_eps_max": PROBABILITY,
    "curve.checks.seeds": list_of(SEED, min_len=0),
    "curve.checks.gradient_images": integer(1),
    "curve.checks.transfer_from": optional(FILE),
    # loggers
    "logger.wandb.offline": BOOL,
    "logger.wandb.project": TEXT,
}
"""Key (``*``: any one level) -> what it accepts."""


def _concrete(cfg: DictConfig, pattern: str) -> list[str]:
    """The keys of ``cfg`` matching ``pattern`` (``*`` expanded over the mapping at that level)."""
    keys = [""]
    for part in pattern.split("."):
        expanded = []
        for prefix in keys:
            if part != "*":
                expanded.append(f"{prefix}.{part}" if prefix else part)
                continue
            node = OmegaConf.select(cfg, prefix, throw_on_missing=False) if prefix else cfg
            if isinstance(node, DictConfig):
                expanded.extend(f"{prefix}.{name}" for name in node.keys())
        keys = expanded
    return keys


def _holds(cfg: DictConfig, key: str) -> bool:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, throw_on_missing=False) if parent else cfg
    return isinstance(node, DictConfig) and leaf in node.keys()  # (`in node` is False for ??? values)


def _value(cfg: DictConfig, key: str) -> Any:
    """The resolved value of ``key`` (lists as Python lists), or a one-line error."""
    try:
        value = OmegaConf.select(cfg, key, throw_on_missing=True)
    except MissingMandatoryValue:
        raise ConfigError(f"{key} is missing: set it on the command line ({key}=<value>)") from None
    except OmegaConfBaseException as err:
        raise ConfigError(f"{key}: {str(err).strip().splitlines()[0]}") from None
    if isinstance(value, (ListConfig, DictConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    return value


def check_config(cfg: DictConfig, schema: dict[str, Rule] | None = None) -> None:
    """Check every key of ``schema`` (default :data:`SCHEMA`) that ``cfg`` holds.

    Raises:
        ConfigError: ``<key>=<value>: expected <what is allowed>`` for the first bad value, or the
            key's resolution error.
    """
    for pattern, rule in (schema or SCHEMA).items():
        for key in _concrete(cfg, pattern):
            if not _holds(cfg, key):
                continue
            value = _value(cfg, key)
            if not rule.accepts(value):
                raise ConfigError(f"{key}={value!r}: expected {rule.allowed}")
