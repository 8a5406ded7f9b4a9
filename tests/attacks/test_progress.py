"""In-batch progress: the engine reports every step of each same-size batch (image size, replicas
still running) without changing what it computes; the Lightning side turns that into a rich task
and throttled log lines."""

from __future__ import annotations

import torch

from medis.attacks import Attack, EngineOptions, run_attack
from medis.attacks.engine import StepProgress
from medis.lightning.attack_progress import BatchProgress

from .test_engine import SIZE, bce, staircase, toy_victim


def test_engine_reports_each_step_and_records_do_not_change() -> None:
    image, gt = staircase()
    wide = torch.cat([image, image.flip(-1)], dim=-1)  # a second size: two same-size batches
    wide_gt = torch.cat([gt, gt.flip(-1)], dim=-1)
    images, masks = [image[0], image[0], wide[0]], [gt[0], gt[0], wide_gt[0]]
    seen: list[StepProgress] = []
    losses = {"bce": bce, "bce2": bce}
    plain = run_attack(toy_victim(), images, masks, Attack(), losses=losses)
    told = run_attack(toy_victim(), images, masks, Attack(), losses=losses, options=EngineOptions(progress=seen.append))
    assert [dict(r) for r in told.records] == [dict(r) for r in plain.records]
    by_size: dict[tuple[int, int], list[StepProgress]] = {}
    for report in seen:
        by_size.setdefault(report.size, []).append(report)
    assert set(by_size) == {(SIZE, SIZE), (SIZE, 2 * SIZE)}
    for size, reports in by_size.items():
        images_here = 2 if size == (SIZE, SIZE) else 1
        assert all(r.images == images_here and r.replicas == 2 * images_here and r.steps == 11 for r in reports)
        assert reports[0].step == 0 and reports[-1].step == 11 and reports[-1].active == 0
        steps = [r.step for r in reports]
        assert steps == sorted(steps) and len(set(steps)) == len(steps)
        actives = [r.active for r in reports]
        assert actives == sorted(actives, reverse=True) and actives[0] == 2 * images_here


class FakeRich:
    """Stands for a live rich Progress: records its tasks."""

    def __init__(self) -> None:
        self.tasks: dict[int, dict] = {}
        self.removed: list[int] = []

    def add_task(self, description: str, total: int) -> int:
        self.tasks[len(self.tasks)] = {"description": description, "total": total, "completed": 0}
        return len(self.tasks) - 1

    def update(self, task: int, completed: int, description: str) -> None:
        self.tasks[task].update(completed=completed, description=description)

    def remove_task(self, task: int) -> None:
        self.removed.append(task)


def report(step: int, active: int) -> StepProgress:
    return StepProgress(size=(2686, 3802), images=2, replicas=12, step=step, steps=10, active=active)


def test_rich_task_shows_size_replicas_and_steps_then_leaves() -> None:
    rich = FakeRich()
    progress = BatchProgress(rich, clock=lambda: 0.0)
    tell = progress.reporter("white · medis")
    tell(report(0, 12))
    tell(report(4, 7))
    task = rich.tasks[0]
    assert task["total"] == 10 and task["completed"] == 4
    assert "2686x3802 px (10.2 Mpx)" in task["description"] and "7/12 replicas running" in task["description"]
    tell(report(10, 0))
    assert rich.removed == [0]
    assert progress.lines[0].startswith("attacking 2686x3802 px (10.2 Mpx) · 2 images")


def test_without_rich_the_log_is_throttled() -> None:
    now = [0.0]
    progress = BatchProgress(None, clock=lambda: now[0])
    tell = progress.reporter("untargeted · pgd")
    tell(report(0, 12))
    for step in range(1, 10):
        now[0] += 10.0  # a step every 10 s: a line every 30 s
        tell(report(step, 12 - step))
    assert len(progress.lines) == 1 + 3 and progress.lines[1].startswith("step 3/10:")
    tell(report(10, 0))  # the end of a batch is always logged, with its time
    assert progress.lines[-1] == "done: untargeted · pgd · 2686x3802 px in 90.0 s"


def test_the_first_line_says_how_the_batch_runs() -> None:
    progress = BatchProgress(None, clock=lambda: 0.0)
    tell = progress.reporter("untargeted · medis")
    tell(StepProgress((2686, 3802), 2, 12, 0, 10, 12, per_pass=3, loss_size=(723, 1024)))
    assert progress.lines[0] == ("attacking 2686x3802 px (10.2 Mpx) · 2 images · 12 replicas, 3 per pass, losses at "
                                 "723x1024 px (untargeted · medis), up to 10 steps")
    tell(StepProgress((200, 300), 1, 6, 0, 10, 6, per_pass=6, loss_size=(200, 300)))
    assert progress.lines[1] == "attacking 200x300 px (0.06 Mpx) · 1 image · 6 replicas (untargeted · medis), up to 10 steps"
