"""Fixed attack runs whose records are pinned in ``golden_records.json`` (see test_golden_records.py).

Everything runs in float64 on one thread, on a tiny two-side-output victim fitted for a few Adam
steps to synthetic lesions, so that the records are reproducible across machines to ~1e-12 and a
change of the attack code that changes any record (every column, trajectories included) shows.

``python -m tests.attacks.golden`` prints the records as JSON (what the pinned file holds).
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medis.data.synthetic import render_dermoscopy

GOLDEN_FILE = Path(__file__).with_name("golden_records.json")
NET_SIZE = 32


class TwoSideNet(nn.Module):
    """Two logit maps at the input size: a coarse one (pooled path) and a fine one."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.fine = nn.Conv2d(8, 1, 1)
        self.coarse = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.stem(x)
        coarse = F.interpolate(self.coarse(features), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return coarse, self.fine(features)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def lesions(seed: int, n: int, height: int = 24, width: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """n synthetic dermoscopy images (n, 3, H, W) in [0, 1] and masks (n, 1, H, W), float64."""
    pairs = [render_dermoscopy(np.random.default_rng([seed, i]), height, width) for i in range(n)]
    images = torch.stack([torch.from_numpy(image.copy()).permute(2, 0, 1).double() / 255 for image, _ in pairs])
    masks = torch.stack([torch.from_numpy(mask.copy()).double()[None] for _, mask in pairs])
    return images, masks


@functools.lru_cache(maxsize=1)
def fitted_net() -> TwoSideNet:
    """The victim network: seeded init, 200 Adam steps (float64) on 32 synthetic lesions 48x64."""
    from medis.models.frontend import Victim

    torch.manual_seed(0)
    net = TwoSideNet().double()
    images, masks = lesions(1, 32, 48, 64)
    victim = Victim(net, NET_SIZE, fusion="clean").double()
    optimizer = torch.optim.Adam(net.parameters(), 1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        batch = torch.randint(0, len(images), (8,), generator=generator)
        out = victim(images[batch])
        loss = sum(F.binary_cross_entropy_with_logits(z, masks[batch]) for z in out.side_logits)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.eval()


def plain(value: Any) -> Any:
    """A record value as plain JSON data (floats kept as floats, NaN as the string 'nan')."""
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def as_json(records: list) -> list[dict]:
    """Every column of every record (a typed record's unset columns are ``None``)."""
    return [{key: plain(value) for key, value in dict(record).items()} for record in records]


# ------------------------------------------------------------------------------------ engine runs

ENGINE_RUNS = ("paper_untargeted", "paper_white", "paper_black", "paper_per_loss_targets", "clean_untargeted",
               "clean_targeted", "pgd_random_start", "pgd_targeted_step_eps", "apgd_untargeted", "apgd_targeted",
               "asma_targeted", "dag_untargeted", "mifgsm", "l2_random_start", "options", "paper_no_compaction",
               "transfer", "mixed_sizes")


def engine_run_names() -> list[str]:
    return list(ENGINE_RUNS)


def attack_of(mode: str = "clean", steps: int = 10, update: dict | None = None, name: str = "medis",
              stop_threshold: Any = None, success_threshold: Any = None):
    """An :class:`~medis.attacks.composition.Attack` from the settings the runs were first written with."""
    from medis.attacks import Attack
    from medis.attacks.rules import RULES

    update = dict(update or {})
    rule_name = update.pop("rule", "sign")
    budget = {"steps": steps, "eps": update.pop("eps", None), "random_start": update.pop("random_start", False),
              "norm": "l2" if rule_name == "l2" else "linf"}
    renamed = {"asma_tau": "tau", "asma_beta": "beta"}
    rule = RULES[rule_name](**{renamed.get(key, key): value for key, value in update.items()})
    return Attack(name=name, mode=mode, rule=rule, budget=budget,
                  criteria={"stop": stop_threshold, "success": success_threshold})


def engine_runs() -> dict[str, Callable[[], list]]:
    """name -> a function returning the records of one fixed engine run."""
    from medis.attacks import EngineOptions, run_attack
    from medis.models.frontend import Victim

    net = fitted_net()
    paper = Victim(net, NET_SIZE, fusion="paper").double()
    clean = Victim(net, NET_SIZE, fusion="clean").double()
    other = Victim(net, NET_SIZE + 8, fusion="clean").double()
    images, masks = lesions(7, 3)
    shifted = torch.roll(masks, 1, 0)  # each image's target: the next image's mask
    white = torch.ones_like(masks)
    black = torch.zeros_like(masks)
    paper6 = ["logcosh_dice", "bce_dice", "exp_log", "structure", "lovasz", "combined"]
    eps = 8 / 255

    def run(victim, reference, losses, targeted: bool = False, target_kind: str | None = None, seed: int = 0,
            transfer_to=None, max_batch=None, fusion_only=False, compaction=True, **config) -> Callable[[], list]:
        attack = attack_of(**config)
        target = target_kind or ("random" if targeted else "untargeted")
        options = EngineOptions(max_batch=max_batch, fusion_only=fusion_only, compaction=compaction)
        return lambda: run_attack(victim, images, reference, attack, target=target, losses=losses, options=options,
                                  seed=seed, ids=["a", "b", "c"], dataset="golden", transfer_to=transfer_to).records

    def mixed() -> list:
        small = F.interpolate(images[:2], size=(20, 28), mode="bilinear", align_corners=False)
        small_masks = (F.interpolate(masks[:2], size=(20, 28)) > 0.5).double()
        attack = attack_of(steps=4, update={"rule": "pgd", "eps": eps, "step_size": 2 / 255, "random_start": True})
        return run_attack(clean, [images[0], small[1], images[2], small[0]],
                          [masks[0], small_masks[1], masks[2], small_masks[0]], attack, losses=["bce", "dice"],
                          seed=5, ids=["p", "q", "r", "s"], dataset="mixed").records

    per_loss = {loss: torch.roll(masks, k + 1, 0) for k, loss in enumerate(paper6)}
    runs = {
        "paper_untargeted": run(paper, masks, paper6, mode="paper", steps=6),
        "paper_white": run(paper, white, paper6, mode="paper", steps=6, targeted=True, target_kind="white"),
        "paper_black": run(paper, black, paper6, mode="paper", steps=5, targeted=True, target_kind="black"),
        "paper_per_loss_targets": run(paper, per_loss, paper6, mode="paper", steps=5, targeted=True,
                                      target_kind="random"),
        "clean_untargeted": run(clean, masks, paper6 + ["bce", "dice", "tversky", "focal"], steps=6),
        "clean_targeted": run(clean, shifted, paper6 + ["bce", "dice", "tversky", "focal"], steps=6,
                              targeted=True, target_kind="most_similar"),
        "pgd_random_start": run(clean, masks, ["bce", "segpgd", "cospgd"], steps=6, seed=3, name="pgd",
                                update={"rule": "pgd", "eps": eps, "step_size": 2 / 255, "random_start": True}),
        "pgd_targeted_step_eps": run(clean, shifted, ["segpgd", "cospgd"], steps=5, targeted=True,
                                     target_kind="random", name="segpgd",
                                     update={"rule": "pgd", "eps": eps, "step_size_eps": 0.25}),
        "apgd_untargeted": run(clean, masks, ["masked_bce", "js", "masked_logit"], steps=12, name="apgd",
                               stop_threshold="exact",
                               update={"rule": "apgd", "eps": eps, "step_size_eps": 2.0}),
        "apgd_targeted": run(clean, white, ["masked_bce", "js", "masked_logit"], steps=12, name="apgd",
                             targeted=True, target_kind="white",
                             update={"rule": "apgd", "eps": 4 / 255, "step_size_eps": 2.0, "random_start": True}),
        "asma_targeted": run(clean, shifted, ["asma"], steps=8, targeted=True, target_kind="random", name="asma",
                             update={"rule": "asma", "asma_tau": 2e-4, "asma_beta": 2e-3}),
        "dag_untargeted": run(clean, masks, ["dag"], steps=10, stop_threshold="exact", name="dag",
                              update={"rule": "dag", "step_size": 2 / 255}),
        "mifgsm": run(clean, masks, ["bce", "lovasz"], steps=5, update={"rule": "mifgsm", "eps": eps,
                                                                         "momentum": 0.9}),
        "l2_random_start": run(clean, masks, ["bce", "structure"], steps=5, seed=2,
                               update={"rule": "l2", "eps": 0.5, "step_size": 0.1, "random_start": True}),
        "options": run(clean, masks, paper6, steps=8, max_batch=4, fusion_only=True, success_threshold=0.6,
                       stop_threshold=0.5),
        "paper_no_compaction": run(paper, masks, ["bce_dice", "lovasz"], mode="paper", steps=5, compaction=False),
        "transfer": run(clean, masks, ["bce", "dice"], steps=4, transfer_to=other,
                        update={"rule": "pgd", "eps": eps, "step_size": 2 / 255}),
        "mixed_sizes": mixed,
    }
    assert tuple(runs) == ENGINE_RUNS
    return runs


# ------------------------------------------------------------------------------------ module runs

LOSSES_WHEN_PINNED = ("logcosh_dice", "bce_dice", "exp_log", "structure", "lovasz", "combined", "bce", "dice",
                      "tversky", "focal", "segpgd", "cospgd", "masked_bce", "js", "masked_logit", "dag", "asma")
"""The registry when these runs were pinned (``losses=all`` then): later losses do not change them."""

MODULE_RUNS: dict[str, list[str]] = {
    "module_paper_all_targets": ["attack=medis_paper", "attack.budget.steps=4",
                                 "target.kinds=[untargeted,random,most_similar,white,black,inverted]"],
    "module_clean_all_targets": ["attack=medis", "attack.budget.steps=4", f"losses.names=[{','.join(LOSSES_WHEN_PINNED)}]",
                                 "target.kinds=[untargeted,random,most_similar,white,black,inverted]"],
    "module_pgd": ["attack=pgd", "attack.budget.steps=4", "losses.names=[masked_bce,js,masked_logit]", "seed=3",
                   "target.kinds=[untargeted,most_similar]"],
    "module_ensemble": ["attack=ensemble", "attack.budget.steps=4", "target.kinds=[untargeted,random,white]",
                        "+attack.members.padam_mbce.budget.steps=6"],
}
"""name -> attack.py overrides of a run through the attack module (6 synthetic ISIC test images)."""


def module_records(overrides: list[str], data_root: Path, out_dir: Path) -> list:
    """The records.csv of a run of the attack module as composed by ``attack.py`` with ``overrides``,
    on a float64 victim (the network of :func:`fitted_net`, paper fusion for paper mode)."""
    import pytorch_lightning as pl
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    import medis.config.resolvers  # noqa: F401  (the config resolvers)
    from medis.lightning.attack_job import engine_options
    from medis.lightning.attack_module import AttackModule
    from medis.models.frontend import Victim
    from medis.reporting import read_records

    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="attack", overrides=[
            *overrides, f"data.root={data_root}", "data.synthetic.n=20", "data.synthetic.size=32",
            "data.eval_batch_size=4", "data.num_workers=0"])
    attack = instantiate(cfg.attack, _convert_="all")
    fusion = "paper" if getattr(attack, "mode", "clean") == "paper" else "clean"
    victim = Victim(fitted_net(), NET_SIZE, fusion=fusion, antialias=fusion == "clean").double()
    engine, fast_path = engine_options(cfg.engine)

    class Float64Module(AttackModule):
        def test_step(self, batch: dict, batch_idx: int) -> None:
            batch = {**batch, "image": [t.double() for t in batch["image"]],
                     "mask": [t.double() for t in batch["mask"]]}
            super().test_step(batch, batch_idx)

    module = Float64Module(victim=victim, attack=attack, losses=list(cfg.losses.names), targets=list(cfg.target.kinds),
                           output_dir=str(out_dir), engine=engine, fast_path=fast_path, seed=cfg.seed, gallery_size=0)
    datamodule = instantiate(cfg.data)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, inference_mode=False, limit_test_batches=2)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    trainer.test(module, datamodule=datamodule, verbose=False)
    return read_records(out_dir / "records.csv")


def all_records(tmp: Path) -> dict[str, list[dict]]:
    """Every pinned run's records as JSON data."""
    out: dict[str, list[dict]] = {}
    with one_thread():
        for name, run in engine_runs().items():
            out[name] = as_json(run())
        for name, overrides in MODULE_RUNS.items():
            out[name] = as_json(module_records(overrides, tmp / "data", tmp / name))
    return out


if __name__ == "__main__":
    import tempfile
    import warnings

    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        runs = all_records(Path(tmp))
    lines = [f"{json.dumps(name)}: [\n" + ",\n".join(json.dumps(r, separators=(",", ":")) for r in records) + "\n]"
             for name, records in runs.items()]
    sys.stdout.write("{\n" + ",\n".join(lines) + "\n}\n")
