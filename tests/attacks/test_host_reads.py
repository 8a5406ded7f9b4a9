"""At most one host read per engine step (issue 29, item 8), on a CPU stand-in for the device.

A read of a device tensor's values by the host, or a blocking copy of a host tensor to the device,
waits for the device's queued work (a synchronisation). The engine's step loop reads one thing per
step: which replicas are still active. :class:`~tests.attacks.simulated_device.SimulatedDevice`
tracks which tensors would be on the device and records every other read and blocking upload; the
engine's progress callback marks the steps. Every attack config of conf/attack is run (each rule, its
losses), with chunked passes and replicas leaving the batch at different times, so that the rows of
a pass are not consecutive (an index tensor, not a slice).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from medis.attacks import Attack, EngineOptions, Ensemble, run_attack
from medis.attacks.engine import StepProgress
from medis.attacks.engine import phases  # noqa: E402
from medis.attacks.rules.eot import EOT
from medis.losses import PAPER_LOSSES
from medis.models.frontend import Victim, predict_mask

from .simulated_device import SimulatedDevice
from .test_attack_configs import ATTACK_FILES, composed

STEPS = 6


def small_victim() -> Victim:
    """A two-layer network at 16 px: the engine's bookkeeping is what is measured, not the network."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))
    return Victim(net, 16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), fusion="clean").eval()


def batch(victim: Victim) -> tuple[torch.Tensor, torch.Tensor]:
    """Four 20 px images; the ground truth is the clean prediction, except image 1's, which is its
    complement (a clean failure, set aside in clean mode): the active rows are then not consecutive."""
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(4, 3, 20, 20, generator=generator)
    truth = predict_mask(victim, images).float()
    truth[1] = 1 - truth[1]
    return images, truth


def reads_per_step(attack: Attack, target: str = "untargeted", max_batch: int = 5) -> tuple[list[list[str]], int]:
    """Run ``attack`` under the simulated device; the synchronising calls between consecutive steps
    (each the step's passes, its pruning and the next step's active-row read), and how many passes
    used an index tensor."""
    victim = small_victim()
    images, truth = batch(victim)
    reference = truth if target == "untargeted" else 1 - truth
    device = SimulatedDevice()
    marks: list[int] = []
    indexed = []

    def progress(where: StepProgress) -> None:
        marks.append(len(device.events))

    attack = dataclasses.replace(attack.with_losses(PAPER_LOSSES), mode="clean", budget=dataclasses.replace(attack.budget, steps=STEPS))
    options = EngineOptions(max_batch=max_batch, fusion_only=True, progress=progress)
    original = phases.Rows.of

    def spy(chunk, where):
        rows = original(chunk, where)
        indexed.append(torch.is_tensor(rows.index))
        return rows

    phases.Rows.of = spy
    try:
        with device:
            run_attack(victim, images, reference, attack, target=target, options=options)
    finally:
        phases.Rows.of = original
    steps = [[str(event) for event in device.events[start:stop]] for start, stop in zip(marks, marks[1:])]
    return steps, sum(indexed)


@pytest.mark.parametrize("name", ATTACK_FILES)
def test_every_attack_reads_the_host_once_per_step(name: str) -> None:
    attack = instantiate(composed(f"attack={name}").attack, _convert_="all")
    for member in attack.members if isinstance(attack, Ensemble) else (attack,):  # a cascade: each member
        steps, indexed = reads_per_step(member)
        assert len(steps) >= 2 and indexed > 0  # several steps ran, some passes on non-consecutive rows
        for position, events in enumerate(steps):
            assert len(events) <= 1, f"step {position} of {name} ({member.name}): {events}"


def test_a_targeted_attack_and_eot_read_the_host_once_per_step() -> None:
    steps, _ = reads_per_step(Attack(losses=("bce", "dice")), target="inverted")
    assert len(steps) >= 2 and all(len(events) <= 1 for events in steps), steps
    for transform in ("rescale", "noise"):  # jpeg encodes on the host by nature
        eot = Attack(rule=EOT(rule={"name": "pgd"}, samples=2, transform=transform), losses=("bce",),
                     budget={"eps": 4 / 255, "random_start": True})
        steps, _ = reads_per_step(eot)
        assert len(steps) >= 2 and all(len(events) <= 1 for events in steps), (transform, steps)


def test_the_simulated_device_sees_a_read_and_an_upload() -> None:
    """The stand-in itself: a read of a device tensor and a blocking upload of a host index are
    recorded; host-only work and an upload the host does not wait for are not."""
    device = SimulatedDevice(source="test_host_reads")
    on_device = torch.ones(4)
    with device:
        host = torch.arange(4)
        _ = int(host[0]) + host.tolist()[0]
        _ = host.to(on_device.device, non_blocking=True)
        assert not device.events
        _ = bool(on_device.any())
        _ = on_device[host]
        _ = (~(on_device > 0)).nonzero()
        _ = torch.where(on_device > 0)  # one argument: sized by the values
        _ = torch.where(on_device > 0, on_device, 0.0)  # three: not
        on_device[on_device > 2] = 0.0  # a boolean mask in an assignment
        repeats = torch.tensor([1, 2, 1, 1], device=on_device.device)  # a list sent to the device: an upload
        _ = on_device.repeat_interleave(repeats)  # tensor repeats: sized by the values
        _ = torch.zeros_like(host, device=on_device.device).sum() + 1  # on the device: no event
    kinds = [event.kind for event in device.events]
    assert kinds == ["read", "upload", "read", "read", "read", "upload", "read"], [str(e) for e in device.events]
