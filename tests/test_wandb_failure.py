"""A W&B failure costs W&B, never the summary (issue 27): with an unwritable HOME (W&B's artifact
staging lives there) the attack still writes records, summary and gallery, exits 0 and warns once."""

from __future__ import annotations

from pathlib import Path

from .entry_points import only, run_entry


def test_an_unwritable_home_costs_only_wandb(tmp_path: Path, trained_checkpoint: Path) -> None:
    done = run_entry("attack.py", tmp_path, f"model.checkpoint={trained_checkpoint}", "losses.names=[bce]",
                     "attack.budget.steps=1", "trainer.limit_test_batches=1", "data.eval_batch_size=2",
                     "gallery_size=1", images=8, env={"HOME": "/proc/no-home-here"})
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = only("outputs/attack/runs/*", tmp_path)
    for name in ("records.csv", "summary.md", "summary.csv", "gallery_untargeted.png"):
        assert (run_dir / name).is_file(), name
    assert done.stderr.count("W&B failed (") == 1
    assert "W&B is off for the rest of this run" in done.stderr
