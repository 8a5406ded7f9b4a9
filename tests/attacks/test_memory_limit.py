"""The engine's memory limit: sizes as users write them, the measured step cost, the replica batch
it allows, chunked runs that give the same records, and one-line errors for bad limits."""

from __future__ import annotations

import pytest
import torch

from medis.attacks import Attack, EngineOptions, run_attack
from medis.attacks.batching.device_probe import attack_step_probe
from medis.attacks.batching.loss_size import loss_shape
from medis.attacks.batching.memory import (
    MemoryLimitError,
    StepCost,
    fit_step_cost,
    limit_max_batch,
    parse_memory_limit,
    peak_allocated,
    state_bytes,
)
from medis.attacks.batching.plan import measure_step_cost, replica_batch
from medis.errors import ConfigError, one_line
from medis.losses import build_loss
from medis.models.frontend import Victim
from medis.models.pranet import pranet_lite

MB = 10**6


def small_victim() -> Victim:
    torch.manual_seed(0)
    return Victim(pranet_lite(8), 32, fusion="clean", antialias=True).freeze()


@pytest.mark.parametrize(("text", "size"), [("6GB", 6 * 10**9), ("6GiB", 6 * 2**30), ("512mb", 512 * MB),
                                             ("1.5 GB", 1_500_000_000), ("4e9", 4 * 10**9), (4096, 4096)])
def test_limits_are_read_in_decimal_and_binary_units(text: object, size: int) -> None:
    assert parse_memory_limit(text) == size


@pytest.mark.parametrize("bad", ["8XB", "-1GB", "0", 0, "lots", True, None, ""])
def test_a_bad_limit_is_a_one_line_error_naming_the_key(bad: object) -> None:
    with pytest.raises(ConfigError) as err:
        EngineOptions(max_batch="auto", memory_limit=bad)
    assert "engine.memory_limit" in str(err.value) and repr(bad) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("bad", [8, 0, "big", 100.5])
def test_a_bad_loss_size_is_a_one_line_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="engine.loss_size"):
        EngineOptions(loss_size=bad)


def test_peak_allocated_sees_a_temporary_and_not_what_was_there_before() -> None:
    kept = torch.ones(4 * MB // 4)  # 4 MB allocated before: not counted

    def work() -> None:
        a = torch.ones(8 * MB // 4)  # 8 MB
        b = a * 2  # 16 MB live at once
        del a, b
        torch.ones(2 * MB // 4)  # then 2 MB

    peak = peak_allocated(work, "cpu")
    assert 16 * MB <= peak <= 17 * MB
    assert kept.numel() > 0


def test_the_step_cost_line_recovers_a_known_cost() -> None:
    def step(size: tuple[int, int]) -> None:  # 12 bytes a pixel and a fixed 1 MB, live at once
        fixed, per_pixel = torch.empty(MB // 4), torch.empty(3, *size)
        del fixed, per_pixel

    cost = fit_step_cost(step, ((100, 100), (300, 300)), "cpu")
    assert cost.per_pixel == pytest.approx(12, rel=0.02) and cost.fixed == pytest.approx(MB, rel=0.05)
    assert cost(1000 * 1000) == pytest.approx(12 * 10**6 + MB, rel=0.02)


def test_state_counts_images_once_and_replicas_with_their_rule_state() -> None:
    shape = (3, 100, 200)
    plain = state_bytes(shape, images=2, replicas=12, rule_state={}, track_best=False)
    pixels = 100 * 200
    assert plain == 2 * (12 + 1) * pixels + 12 * (2 * 12 + 1) * pixels
    momentum = {"momentum": torch.zeros(1, 3, 2, 2), "t": torch.zeros(1)}
    assert state_bytes(shape, 2, 12, momentum, track_best=True) - plain == 12 * (12 + 12) * pixels


def test_the_limit_gives_the_most_replicas_that_fit_and_names_what_does_not() -> None:
    assert limit_max_batch(10_000, 2_000, 1_000, 48, strict=True, describe="x") == 8
    assert limit_max_batch(10**9, 0, 1_000, 48, strict=True, describe="x") == 48  # never more than there are
    assert limit_max_batch(1_000, 2_000, 1_000, 48, strict=False, describe="x") == 1  # auto: one at a time
    with pytest.raises(MemoryLimitError) as err:
        limit_max_batch(1_000, 2_000, 1_000, 48, strict=True, describe="a 3000x4000 image")
    message = one_line(err.value)
    assert "engine.memory_limit=1 kB" in message and "a 3000x4000 image" in message and "\n" not in message
    assert "engine.loss_size" in message


def test_measured_step_cost_predicts_steps_at_other_sizes_and_a_loss_size_bounds_it() -> None:
    victim, losses = small_victim(), {"dice": build_loss("dice"), "lovasz": build_loss("lovasz")}
    cost = measure_step_cost(victim, losses, 3, torch.device("cpu"), cache={})
    # at full size every side output, loss and gradient is a map of the image's size: tens of bytes a pixel
    assert 40 <= cost.per_pixel + cost.per_loss_pixel <= 400
    # capped: only the image, its gradient and the downscaling remain per pixel of the image
    assert cost.per_pixel < 0.5 * (cost.per_pixel + cost.per_loss_pixel)
    assert cost(4000 * 3000, 768 * 1024) < 0.5 * cost(4000 * 3000)
    # the line, fitted at 32 and 64 px squares, predicts a step at another size and aspect, capped or not
    for loss_size, shape in ((None, (150, 200)), (48, (150, 200)), (None, (90, 60))):
        loss_pixels = loss_shape(shape, loss_size)[0] * loss_shape(shape, loss_size)[1]
        measured = max(peak_allocated(lambda: attack_step_probe(victim, {name: fn}, (3, *shape), "cpu", loss_size)(1),
                                      "cpu") for name, fn in losses.items())
        assert measured == pytest.approx(cost(shape[0] * shape[1], loss_pixels), rel=0.25)


def replica_counts(limit: str, shape: tuple[int, int, int] = (3, 96, 128)) -> int | None:
    victim, losses = small_victim(), {"dice": build_loss("dice"), "lovasz": build_loss("lovasz")}
    return replica_batch(victim, losses, Attack(), shape, 4, max_batch="auto", memory_limit=limit, loss_size=None,
                         device="cpu")


def test_auto_max_batch_follows_the_limit() -> None:
    cost = measure_step_cost(small_victim(), {"dice": build_loss("dice"), "lovasz": build_loss("lovasz")}, 3,
                             torch.device("cpu"))
    state = state_bytes((3, 96, 128), 4, 8, {}, True)
    for wanted in (1, 3, 8):
        limit = int(state + wanted * cost(96 * 128)) + 1
        assert replica_counts(str(limit)) == wanted
    assert replica_counts("auto") == 8  # a small image: all 8 replicas fit half the free memory
    with pytest.raises(MemoryLimitError, match="cannot hold one replica of a 96x128 image"):
        replica_counts(str(state))


def test_a_run_chunked_by_its_limit_gives_the_same_records() -> None:
    victim = small_victim()
    images = torch.rand(3, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        truth = (victim(images).prob > 0.5).float()
    truth[:, :, 30:60, 40:90] = 1.0  # some pixels the clean prediction gets wrong, so nothing is set aside
    attack = Attack(budget={"steps": 6, "eps": 8 / 255})
    losses = ["bce", "dice", "lovasz"]
    runs = {}
    for name, options in {"all": EngineOptions(max_batch=None),
                          "limit": EngineOptions(max_batch="auto", memory_limit=_limit_for(victim, losses, 2))}.items():
        calls: list[int] = []
        hook = victim.register_forward_pre_hook(lambda _, args: calls.append(args[0].shape[0]))
        runs[name] = (run_attack(victim, images, truth, attack, losses=losses, options=options).records, calls)
        hook.remove()
    assert max(runs["limit"][1]) == 2 < max(runs["all"][1])  # chunks of 2 replicas, against all 9 at once
    for full, chunked in zip(runs["all"][0], runs["limit"][0]):
        assert (full.image_id, full.loss, full.success, full.steps) == (chunked.image_id, chunked.loss,
                                                                         chunked.success, chunked.steps)
        assert chunked.metric == pytest.approx(full.metric, abs=1e-6)
        assert chunked.linf == pytest.approx(full.linf, abs=1e-6) and chunked.ssim == pytest.approx(full.ssim, abs=1e-5)


def _limit_for(victim: Victim, losses: list[str], replicas: int) -> int:
    """A limit that holds the state of 3 images × 3 losses and the steps of exactly ``replicas``."""
    fns = {name: build_loss(name) for name in losses}
    cost = measure_step_cost(victim, fns, 3, torch.device("cpu"))
    return int(state_bytes((3, 96, 128), 3, 9, {}, True) + replicas * cost(96 * 128)) + 1


def test_a_too_small_limit_stops_the_attack_with_one_line() -> None:
    victim = small_victim()
    with pytest.raises(MemoryLimitError) as err:
        run_attack(victim, torch.rand(1, 3, 64, 64), torch.ones(1, 1, 64, 64), Attack(budget={"steps": 1}),
                   losses=["dice"], options=EngineOptions(max_batch="auto", memory_limit="10kB"))
    assert "engine.memory_limit=10 kB cannot hold one replica of a 64x64 image with losses dice" in one_line(err.value)


def test_step_cost_is_the_default_measures_once() -> None:
    cache: dict = {}
    victim, losses = small_victim(), {"dice": build_loss("dice")}
    first = measure_step_cost(victim, losses, 3, torch.device("cpu"), cache=cache)
    assert measure_step_cost(victim, losses, 3, torch.device("cpu"), cache=cache) is first
    assert isinstance(first, StepCost) and len(cache) == 1


def test_keep_only_keeps_copies_of_the_named_images_alone() -> None:
    victim = small_victim()
    images = torch.rand(3, 3, 40, 48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        truth = (victim(images).prob > 0.5).float()
    result = run_attack(victim, images, truth, Attack(budget={"steps": 2}), losses=["dice", "bce"],
                        options=EngineOptions(keep_images=True, keep_only=("1",)))
    assert set(result.adversarial) == {("1", "dice"), ("1", "bce")}
    kept = result.adversarial[("1", "dice")]
    assert kept.untyped_storage().nbytes() == kept.numel() * kept.element_size()  # its own storage, not a view


def test_counts_in_blocks_equal_one_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    import medis.metrics.segmentation as metrics

    mask = torch.rand(4, 1000, generator=torch.Generator().manual_seed(3)) > 0.3
    whole = metrics.count(mask)
    monkeypatch.setattr(metrics, "COUNT_BLOCK", 64)
    assert torch.equal(metrics.count(mask), whole) and torch.equal(whole, mask.sum(1))


def test_small_images_skip_the_measurement_and_large_ones_do_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU with the auto limit, images no larger than the network's input whose replicas send at
    most SMALL_STEP_PIXELS through the network run at once, unmeasured; larger ones are measured."""
    import medis.attacks.batching.plan as plan

    measured = []
    monkeypatch.setattr(plan, "measure_step_cost", lambda *a, **k: measured.append(a) or StepCost(60.0, 1e6))
    victim, losses = small_victim(), {"dice": build_loss("dice"), "lovasz": build_loss("lovasz")}
    side = victim.size[0]

    def count(shape: tuple[int, int, int], images: int, limit: str = "auto") -> int | None:
        return replica_batch(victim, losses, Attack(), shape, images, max_batch="auto", memory_limit=limit,
                             loss_size=None, device="cpu")

    assert count((3, side, side), 4) is None and not measured  # all 8 replicas at once, nothing measured
    many = plan.SMALL_STEP_PIXELS // (side * side)  # images whose replicas (2 each) exceed the bound
    assert count((3, side, side), many) is not None and len(measured) == 1
    assert count((3, side + 1, side), 1) is not None and len(measured) == 2  # larger than the network input
    assert count((3, side, side), 1, "2GB") is not None and len(measured) == 3  # a limit the user gave is measured
