"""engine.loss_size: losses and step scores at a capped resolution, verdicts at full size."""

from __future__ import annotations

import pytest
import torch

from medis.attacks import Attack, EngineOptions, run_attack
from medis.attacks.batching.loss_size import downscale_masks, loss_shape
from medis.errors import ConfigError
from medis.metrics.segmentation import target_score
from medis.models.frontend import Victim
from medis.models.pranet import pranet_lite


@pytest.mark.parametrize(("size", "cap", "expected"), [((3000, 4000), 1024, (768, 1024)),
                                                      ((4000, 3000), 1024, (1024, 768)),
                                                      ((500, 700), 1024, (500, 700)),
                                                      ((3000, 4000), None, (3000, 4000)),
                                                      ((10, 4000), 100, (1, 100))])
def test_loss_shape_keeps_the_aspect_ratio_under_the_cap(size, cap, expected) -> None:
    assert loss_shape(size, cap) == expected


def test_masks_are_downscaled_by_majority() -> None:
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :2] = 1  # the top-left 2x2 block: one output pixel, all foreground
    mask[..., 2, 2] = 1  # one pixel of four: background
    mask[..., :2, 2:] = torch.tensor([[1.0, 1.0], [0.0, 0.0]])  # half: foreground (>= 0.5)
    assert downscale_masks(mask, (2, 2)).squeeze().tolist() == [[True, True], [False, False]]


def victim() -> Victim:
    torch.manual_seed(0)
    return Victim(pranet_lite(8), 32, fusion="clean", antialias=True).freeze()


def lesion_images(n: int = 3, size: tuple[int, int] = (96, 128)) -> tuple[torch.Tensor, torch.Tensor]:
    """Dark ellipses on skin-coloured noise, and their masks."""
    generator = torch.Generator().manual_seed(3)
    rows, cols = torch.meshgrid(torch.linspace(-1, 1, size[0]), torch.linspace(-1, 1, size[1]), indexing="ij")
    masks = torch.stack([((rows / (0.4 + 0.1 * i)) ** 2 + (cols / 0.5) ** 2 < 1).float()[None] for i in range(n)])
    skin = torch.tensor([0.8, 0.6, 0.5]).view(1, 3, 1, 1) + 0.05 * torch.randn(n, 3, *size, generator=generator)
    return (skin - 0.4 * masks).clamp(0, 1), masks


def test_capped_records_are_judged_at_full_size() -> None:
    model = victim()
    images, masks = lesion_images()
    with torch.no_grad():
        masks = torch.maximum(masks, (model(images).prob > 0.5).float())  # right somewhere, wrong somewhere
    calls: list[tuple[int, ...]] = []
    hook = model.register_forward_pre_hook(lambda _, args: calls.append(tuple(args[1]) if len(args) > 1 else None))
    result = run_attack(model, images, masks, Attack(budget={"steps": 4, "eps": 8 / 255}), losses=["bce", "lovasz"],
                        options=EngineOptions(loss_size=48, keep_images=True))
    hook.remove()
    assert (36, 48) in calls  # the steps ran at the loss resolution (96x128 scaled to a longer side of 48)
    attacked = [r for r in result.records if not r.set_aside]
    assert attacked
    with torch.no_grad():
        for record in attacked:
            chosen = result.adversarial[(record.image_id, record.loss)][None]
            index = int(record.image_id)
            full = target_score(model(chosen).prob > 0.5, masks[index:index + 1], "clean").item()
            assert record.metric == pytest.approx(full, abs=1e-6)  # the recorded score is the full-size one
            assert record.success == (full <= 0.5)  # and so is the verdict
    assert sum(r.forwards for r in result.records) == result.forward_replicas  # the verdicts' passes counted


def test_loss_size_above_the_image_changes_nothing() -> None:
    model = victim()
    images, masks = lesion_images(2)
    attack = Attack(budget={"steps": 3, "eps": 8 / 255})
    plain = run_attack(model, images, masks, attack, losses=["dice"]).records
    capped = run_attack(model, images, masks, attack, losses=["dice"], options=EngineOptions(loss_size=128)).records
    assert [dict(r) for r in plain] == [dict(r) for r in capped]


def test_paper_mode_refuses_a_loss_size() -> None:
    model = Victim(pranet_lite(8), 32, fusion="paper").freeze()
    images, masks = lesion_images(1)
    with pytest.raises(ConfigError, match="engine.loss_size=48 is a clean-mode option"):
        run_attack(model, images, masks, Attack(mode="paper"), losses=["dice"], options=EngineOptions(loss_size=48))
