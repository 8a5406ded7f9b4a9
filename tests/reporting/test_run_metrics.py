"""Logged metric names are shared by every run of a sweep; the numbers pool the run's groups."""

from __future__ import annotations

import math

from medis.reporting.run_metrics import SUMMARY_COLUMNS, run_metrics, summary_table_rows
from medis.results.fusion import FUSED_LOSS


def rows(target: str, eps: float, successes: int, dataset: str = "isic") -> list[dict]:
    common = {"dataset": dataset, "target": target, "eps": eps, "images": 4, "set_aside": 1}
    return [{**common, "loss": "bce", "successes": successes, "asr": 25.0 * successes,
             "distortion": 3.0 if successes else None, "real_asr": 25.0 * successes},
            {**common, "loss": FUSED_LOSS, "successes": successes, "asr": 25.0 * successes,
             "distortion": 2.0 if successes else None, "real_asr": 25.0 * successes}]


def test_keys_do_not_depend_on_eps_target_or_outcome() -> None:
    runs = [run_metrics(rows(target, eps, successes))
            for target, eps, successes in (("white", 2 / 255, 0), ("untargeted", 8 / 255, 3))]
    assert set(runs[0]) == set(runs[1])
    assert not any("eps" in key or "white" in key or "untargeted" in key for key in runs[0])
    assert math.isnan(runs[0]["attack/distortion"]) and runs[1]["attack/distortion"] == 2.0
    assert runs[1]["attack/asr"] == 75.0 and runs[1]["attack/by_loss/bce/asr"] == 75.0


def test_several_targets_pool_and_break_down() -> None:
    metrics = run_metrics(rows("white", 0.01, 1) + rows("black", 0.01, 3))
    assert metrics["attack/images"] == 8 and metrics["attack/set_aside"] == 2
    assert metrics["attack/asr"] == 50.0  # 4 of 8 attacked images
    assert metrics["attack/distortion"] == 2.0
    assert metrics["attack/by_target/white/asr"] == 25.0 and metrics["attack/by_target/black/asr"] == 75.0
    assert not any(key.startswith("attack/by_dataset/") for key in metrics)


def test_summary_table_is_long_format_with_eps_and_attack() -> None:
    table = summary_table_rows(rows("white", 0.01, 1), attack="pgd", eps=0.01)
    assert len(table) == 2 and all(len(row) == len(SUMMARY_COLUMNS) for row in table)
    at = {column: index for index, column in enumerate(SUMMARY_COLUMNS)}
    assert {row[at["loss"]] for row in table} == {"bce", FUSED_LOSS}
    assert {row[at["attack"]] for row in table} == {"pgd"} and {row[at["eps"]] for row in table} == {0.01}
