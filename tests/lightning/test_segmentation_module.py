"""SegmentationModule: PraNet's recipe (one step per scale, value clipping, step decay), metrics."""

from __future__ import annotations

import functools

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from medis.data.dataset import collate_samples
from medis.errors import ConfigError
from medis.lightning.overlap_metric import PerImageOverlap
from medis.lightning.segmentation_module import SegmentationModule, multiscale_size
from medis.metrics.segmentation import dice_per_image, iou_per_image
from medis.models.pranet import pranet_lite


def test_multiscale_sizes_follow_pranet_rounding() -> None:
    assert [multiscale_size(352, r) for r in (0.75, 1.0, 1.25)] == [256, 352, 448]
    assert [multiscale_size(160, r) for r in (0.75, 1.0, 1.25)] == [128, 160, 192]


def _samples(n: int = 4, size: int = 64) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        mask = torch.zeros(1, size, size)
        mask[:, 16:48, 10 + i:40 + i] = 1
        image = torch.rand(3, size, size, generator=g) * 0.3 + 0.5 * mask
        out.append({"image": image, "mask": mask, "id": str(i), "dataset": "toy"})
    return out


class _CountSteps(pl.Callback):
    def __init__(self) -> None:
        self.steps = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps = trainer.global_step


def _module(**kwargs) -> SegmentationModule:
    return SegmentationModule(pranet_lite(), functools.partial(torch.optim.Adam, lr=1e-3), **kwargs)


def test_one_optimiser_step_per_scale_and_epoch_decay(tmp_path) -> None:
    module = _module(scales=(0.75, 1.0, 1.25),
                     scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.1))
    counter = _CountSteps()
    loader = DataLoader(_samples(), batch_size=2, collate_fn=collate_samples)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[counter],
                         default_root_dir=tmp_path)
    trainer.fit(module, loader, loader)
    assert counter.steps == 2 * 2 * 3  # epochs x batches x scales
    assert module.optimizers().param_groups[0]["lr"] == pytest.approx(1e-5)  # decayed once per epoch
    assert 0.0 <= float(trainer.callback_metrics["val/dice"]) <= 1.0
    assert module.val_examples["image"].shape == (2, 3, 64, 64)


def test_gradients_are_clipped_by_value() -> None:
    module = _module(scales=(1.0,), grad_clip=1e-4)
    seen = []
    original = module.clip_gradients

    def spy(optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        original(optimizer, gradient_clip_val=gradient_clip_val, gradient_clip_algorithm=gradient_clip_algorithm)
        seen.append(max(float(p.grad.abs().max()) for p in module.model.parameters() if p.grad is not None))

    module.clip_gradients = spy
    loader = DataLoader(_samples(2), batch_size=2, collate_fn=collate_samples)
    pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, limit_val_batches=0).fit(module, loader)
    assert seen and max(seen) <= 1e-4 + 1e-12


def test_bad_module_settings_name_the_key() -> None:
    with pytest.raises(ConfigError, match="module.scales"):
        _module(scales=(0.0,))
    with pytest.raises(ConfigError, match="module.val_fusion"):
        _module(val_fusion="max")


def test_overlap_metric_macro_averages_per_image() -> None:
    pred = torch.zeros(3, 1, 4, 4, dtype=torch.bool)
    target = torch.zeros(3, 1, 4, 4, dtype=torch.bool)
    pred[0, 0, :2] = True
    target[0, 0, :1] = True  # IoU 0.5, Dice 2/3
    pred[1, 0, 0, 0] = True  # empty target, non-empty prediction: 0
    # image 2: both empty -> 1
    metric = PerImageOverlap()
    metric.update(pred[:2], target[:2])
    metric.update(pred[2:], target[2:])
    scores = metric.compute()
    assert float(scores["iou"]) == pytest.approx((0.5 + 0 + 1) / 3)
    assert float(scores["dice"]) == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert float(scores["jaccard_thresholded"]) == pytest.approx((0 + 0 + 1) / 3)  # 0.5 < 0.65
    torch.testing.assert_close(iou_per_image(pred, target), torch.tensor([0.5, 0.0, 1.0]))
    torch.testing.assert_close(dice_per_image(pred, target), torch.tensor([2 / 3, 0.0, 1.0]))
