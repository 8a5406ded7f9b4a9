"""Training a segmentation network with PraNet's recipe (Fan et al., MICCAI 2020).

The recipe, as PraNet's ``MyTrain.py`` runs it, is the default:

- structure loss (:func:`medis.losses.structure_loss`, weights really applied) summed over all
  side outputs;
- multi-scale training: for each batch and each rate in ``scales`` (0.75, 1, 1.25) the batch is
  resized (bilinear, ``align_corners=True``, masks too) to ``round(size·rate/32)·32`` and gets its
  OWN optimiser step, so a batch makes ``len(scales)`` steps (manual optimisation);
- gradient clipping at 0.5 by value (PraNet's ``clip_gradient`` clamps each gradient entry);
- Adam at lr 1e-4 with step decay (``StepLR``; PraNet: ×0.1 every 50 epochs), both from config as
  ``_partial_`` callables;
- validation: per-image Dice, IoU and the ISIC thresholded Jaccard, macro-averaged (torchmetrics),
  on the prediction of ``val_fusion`` (``last``: PraNet's finest side output).

With ``adversarial`` (:class:`medis.lightning.adversarial.AdversarialTraining`, ``experiment=adv_train``)
a share of every batch is replaced, before the multi-scale steps, by the worst case an attack of the
core finds around it, the network in eval mode while the attack runs and back in train mode for the
update; the adversarial images then take the same path as clean ones (normalisation in the graph,
every scale, the structure loss on every side output). Validation then also reports the Dice under
the cheap validation attack (``val/robust_dice``, ``val/robust_iou``), the run's checkpoint criterion.

Images arrive in [0, 1] at the network size; ImageNet normalisation happens here, in the graph, as
in :class:`medis.models.frontend.Victim`. The network is ``self.model``, so checkpoint keys are
``model.<key>`` (what :func:`medis.models.checkpoints.load_weights` expects).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Callable, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from medis.errors import ConfigError
from medis.lightning.adversarial import (AdversarialTraining, adversarial_count, describe, training_victim,
                                        worst_case_examples)
from medis.lightning.overlap_metric import PerImageOverlap
from medis.losses.structure import structure_loss
from medis.models.frontend import FUSIONS, IMAGENET_MEAN, IMAGENET_STD, Fusion, fuse_side_outputs

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


def multiscale_size(size: int, rate: float) -> int:
    """PraNet's rounding of a rescaled training size to a multiple of 32 (at least 32)."""
    return max(32, int(round(size * rate / 32) * 32))


def rescaled_batch(images: torch.Tensor, masks: torch.Tensor, rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, 3, S, S) and masks (B, 1, S, S) at PraNet's training scale ``rate``: bilinearly resized
    (``align_corners=True``) to :func:`multiscale_size`, or returned as they are when that is S."""
    size = images.shape[-1]
    target = multiscale_size(size, rate)
    if target == size:
        return images, masks
    return tuple(F.interpolate(t, size=(target, target), mode="bilinear", align_corners=True)
                 for t in (images, masks))


def _plain(value: Any) -> Any:
    """``value`` as plain Python data (dicts, lists, numbers, strings), as weights-only loading reads it."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _as_tuple(out: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


class SegmentationModule(pl.LightningModule):
    """LightningModule that trains ``net`` with PraNet's recipe (see the module docstring).

    Args:
        net: maps a normalised (B, 3, S, S) batch to one logit map or a tuple of side outputs.
        optimizer: ``functools.partial`` of an optimiser class (Hydra ``_partial_: true``).
        scheduler: partial of an epoch-wise LR scheduler, or ``None``.
        scales: multi-scale training rates (one optimiser step each).
        grad_clip: gradient clipping value (``None`` or 0 disables it).
        grad_clip_algorithm: ``value`` (PraNet) or ``norm``.
        val_fusion: how side outputs become the validation prediction (``last``, ``clean``, ``paper``).
        paper_bce: PraNet's unweighted BCE term in the structure loss.
        num_val_examples: validation samples kept each epoch for the prediction gallery.
        mean, std: normalisation.
        victim: what the checkpoints carry besides ``val_fusion``, ``mean`` and ``std`` so that
            ``attack.py model.checkpoint=...`` attacks this model as trained
            (:mod:`medis.models.victim_spec`): ``{"net": {"_target_": ..., **arguments},
            "input_size": S, "antialias": the loaders' resize}``.
    """

    def __init__(self, net: nn.Module, optimizer: OptimizerFactory, scheduler: SchedulerFactory | None = None,
                 scales: Sequence[float] = (0.75, 1.0, 1.25), grad_clip: float | None = 0.5,
                 grad_clip_algorithm: str = "value", val_fusion: Fusion = "last", paper_bce: bool = False,
                 num_val_examples: int = 4, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, victim: Mapping[str, Any] | None = None,
                 adversarial: AdversarialTraining | None = None) -> None:
        super().__init__()
        if not scales or any(rate <= 0 for rate in scales):
            raise ConfigError(f"module.scales must be positive rates, got {list(scales)}")
        if val_fusion not in FUSIONS:
            raise ConfigError(f"module.val_fusion must be one of {FUSIONS}, got {val_fusion!r}")
        if grad_clip_algorithm not in ("value", "norm"):
            raise ConfigError(f"module.grad_clip_algorithm must be 'value' or 'norm', got {grad_clip_algorithm!r}")
        self.automatic_optimization = False
        # plain Python values only, so that checkpoints load with torch.load(weights_only=True)
        self.save_hyperparameters({
            "scales": [float(rate) for rate in scales], "grad_clip": None if grad_clip is None else float(grad_clip),
            "grad_clip_algorithm": str(grad_clip_algorithm), "val_fusion": str(val_fusion),
            "paper_bce": bool(paper_bce), "num_val_examples": int(num_val_examples),
            "mean": [float(v) for v in mean], "std": [float(v) for v in std]})
        if adversarial is not None and not isinstance(adversarial, AdversarialTraining):
            raise ConfigError(f"module.adversarial must be adversarial-training settings (_target_: "
                              f"medis.lightning.adversarial.AdversarialTraining) or null, got {adversarial!r}")
        if victim is not None:
            self.remember_victim(victim)
        if adversarial is not None:
            self.hparams["adversarial"] = describe(adversarial)
        self.adversarial = adversarial
        self.model = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scales = tuple(float(rate) for rate in scales)
        self.grad_clip = grad_clip
        self.grad_clip_algorithm = grad_clip_algorithm
        self.val_fusion = val_fusion
        self.paper_bce = paper_bce
        self.num_val_examples = num_val_examples
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.val_overlap = PerImageOverlap()
        self.val_robust_overlap = PerImageOverlap()
        self.val_examples: dict[str, torch.Tensor] = {}

    def remember_victim(self, victim: Mapping[str, Any]) -> None:
        """Carry ``victim`` (see the class's arguments) in every checkpoint from now on, as plain data."""
        self.hparams["victim"] = _plain(victim)

    # ------------------------------------------------------------------ model
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, 3, S, S) in [0, 1] -> side output logits, each (B, 1, S, S)."""
        return _as_tuple(self.model((images - self.mean) / self.std))

    def loss(self, side_logits: Sequence[torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
        """Structure loss summed over side outputs, averaged over the batch (a scalar)."""
        return sum(structure_loss(z, masks, paper_bce=self.paper_bce).mean() for z in side_logits)

    def attack_victim(self, images: torch.Tensor) -> Any:
        """The network as an attack sees it at the size of ``images`` (B, 3, H, W): normalisation in
        the graph, the validation fusion (:func:`medis.lightning.adversarial.training_victim`)."""
        return training_victim(self.model, tuple(images.shape[-2:]), self.hparams["mean"], self.hparams["std"],
                               self.val_fusion)

    def adversarial_batch(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """The training images (B, 3, H, W) with their first ``round(share·B)`` replaced by the training
        attack's worst cases, found with the network in eval mode (train mode is restored after)."""
        settings, images = self.adversarial, batch["image"]
        count = adversarial_count(settings.share, images.shape[0])
        batches = self.trainer.num_training_batches if self._trainer is not None else 1
        factor = settings.radius_factor(self.current_epoch, batch_idx, batches if math.isfinite(batches) else 1)
        if self._trainer is not None:
            self.log("train/adversarial_share", count / max(1, images.shape[0]), on_step=False, on_epoch=True,
                     batch_size=images.shape[0])
            self.log("train/eps_factor", factor, on_step=False, on_epoch=True, batch_size=images.shape[0])
        if count == 0 or factor == 0:
            return images
        was_training = self.model.training
        self.model.eval()
        try:
            worst = worst_case_examples(self.attack_victim(images), images[:count], batch["mask"][:count],
                                        list(batch["id"][:count]), settings.attack_at(factor),
                                        settings.batch_seed(self.current_epoch, batch_idx))
        finally:
            self.model.train(was_training)
        return torch.cat([worst, images[count:]]) if count < images.shape[0] else worst

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        images, masks = batch["image"], batch["mask"]
        if self.adversarial is not None:
            images = self.adversarial_batch(batch, batch_idx)
        optimizer = self.optimizers()
        losses = {}
        for rate in self.scales:
            x, m = rescaled_batch(images, masks, rate)
            loss = self.loss(self(x), m)
            optimizer.zero_grad()
            self.manual_backward(loss)
            if self.grad_clip:
                self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip,
                                    gradient_clip_algorithm=self.grad_clip_algorithm)
            optimizer.step()
            losses[rate] = loss.detach()
        main = losses.get(1.0, next(iter(losses.values())))
        self.log("train/loss", main, prog_bar=True, on_step=True, on_epoch=True, batch_size=images.shape[0])
        return main

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        images, masks = batch["image"], batch["mask"]
        side = self(images)
        prob, _ = fuse_side_outputs(side, self.val_fusion)
        self.val_overlap.update(prob > 0.5, masks > 0.5)
        self.log("val/loss", self.loss(side, masks), on_epoch=True, batch_size=images.shape[0])
        if self.adversarial is not None:
            worst = worst_case_examples(self.attack_victim(images), images, masks, list(batch["id"]),
                                        self.adversarial.validation_attack, self.adversarial.seed)
            with torch.no_grad():
                robust, _ = fuse_side_outputs(self(worst), self.val_fusion)
            self.val_robust_overlap.update(robust > 0.5, masks > 0.5)
        if batch_idx == 0 and self.num_val_examples:
            keep = slice(0, self.num_val_examples)
            self.val_examples = {"image": images[keep].detach().cpu(), "mask": masks[keep].detach().cpu(),
                                 "prob": prob[keep].detach().cpu(), "id": batch["id"][keep]}

    def on_validation_epoch_end(self) -> None:
        scores = self.val_overlap.compute()
        self.log("val/dice", scores["dice"], prog_bar=True)
        self.log("val/iou", scores["iou"])
        self.log("val/jaccard_thresholded", scores["jaccard_thresholded"])
        self.val_overlap.reset()
        if self.adversarial is not None:
            robust = self.val_robust_overlap.compute()
            self.log("val/robust_dice", robust["dice"], prog_bar=True)
            self.log("val/robust_iou", robust["iou"])
            self.val_robust_overlap.reset()

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.model.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer),
                                                         "interval": "epoch"}}
