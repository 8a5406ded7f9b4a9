"""Stop and success rules (docs/method.md): defaults, custom thresholds, both bookkeeping modes."""

from __future__ import annotations

import pytest
import torch

from medis.attacks.criteria import Criteria, Thresholds
from medis.errors import ConfigError


def test_paper_defaults() -> None:
    untargeted, targeted = Criteria(targeted=False, mode="paper"), Criteria(targeted=True, mode="paper")
    assert (untargeted.stop_at, untargeted.success_at) == (0.2, 0.5)
    assert (targeted.stop_at, targeted.success_at) == (0.95, 0.45)
    # clean mode: half of each side of the target (medis.metrics.segmentation.target_attainment)
    assert Criteria(targeted=True, mode="clean").success_at == 0.5 == Criteria(targeted=False).success_at
    scores = torch.tensor([0.1, 0.2, 0.3, 0.5, 0.6, 0.95, 0.96])
    assert untargeted.stops(scores).tolist() == [True, True, False, False, False, False, False]
    assert untargeted.succeeds(scores).tolist() == [True, True, True, True, False, False, False]
    assert targeted.stops(scores).tolist() == [False, False, False, False, False, True, True]
    assert targeted.succeeds(scores).tolist() == [False, False, False, True, True, True, True]


def test_custom_thresholds() -> None:
    rule = Criteria(targeted=False, stop_threshold=0.05, success_threshold=0.3)
    scores = torch.tensor([0.04, 0.3, 0.31])
    assert rule.stops(scores).tolist() == [True, False, False]
    assert rule.succeeds(scores).tolist() == [True, True, False]


@pytest.mark.parametrize("mode, records, first", [("paper", 10, 1), ("clean", 11, 0)])
def test_bookkeeping(mode: str, records: int, first: int) -> None:
    rule = Criteria(targeted=False, mode=mode, steps=10)
    assert rule.records == records and rule.first_index == first
    updates = [position for position in range(rule.records) if rule.may_update(position)]
    assert updates == list(range(rule.records - 1))  # no update after the last record


def test_bad_values() -> None:
    with pytest.raises(ConfigError, match="attack.mode='fast'"):
        Criteria(targeted=False, mode="fast")
    with pytest.raises(ConfigError, match="attack.budget.steps must be >= 1"):
        Criteria(targeted=False, steps=0)
    for stop, success in (("sometimes", None), (None, 1.5), (True, None), (None, "0.5")):
        with pytest.raises(ConfigError, match=r"attack\.criteria\.(stop|success) must be in \[0, 1\]"):
            Thresholds(stop, success)
    Thresholds("exact", 0.5)  # valid
