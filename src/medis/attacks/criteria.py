"""Success and stop rules of the MedIS attack (Shukla, Gupta, Gupta, MTAP 2023; docs/method.md).

Each record is a score of the current prediction against the reference: mIoU with the ground truth
(untargeted: the attacker wants it LOW) or with the target (targeted: HIGH).

- stop: untargeted score <= 0.2; targeted score >= 0.95 (the attack stops iterating);
- success: untargeted score <= 0.5; targeted score >= 0.45 in paper mode (judged on the corrected
  score: the paper doubles the mIoU of all-white/all-black targets), >= 0.5 in clean mode, whose
  targeted score is the least attained side of the target (:func:`medis.metrics.segmentation.target_attainment`):
  at least half of each side.

Bookkeeping (``mode``):

- ``paper`` (the notebooks): each iteration first evaluates the current image, records it, stops if
  the stop rule holds, else updates. Record k (1-based) describes the image after k−1 updates; the
  image after the last update is never evaluated; distortion = k of the first successful record.
  The recorded score is the raw paper mIoU; stop uses it, success uses the corrected one.
- ``clean``: records after every update including the last, indexed by the number of updates
  (0 = clean image); distortion = that number. One score serves stop and success.

An attack configures its thresholds (:class:`Thresholds`, the ``attack.criteria`` node); the engine
resolves them for a target kind and a budget into a :class:`Criteria`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from medis.errors import ConfigError

MODES = ("clean", "paper")
DEFAULT_STOP = {False: 0.2, True: 0.95}      # keyed by targeted
DEFAULT_SUCCESS = {False: 0.5, True: 0.45}
CLEAN_TARGETED_SUCCESS = 0.5
"""Clean mode's targeted success: at least half of each side of the target attained."""
EXACT = "exact"
"""``stop_threshold`` value: stop only at a perfect score."""
NEVER = "never"
"""``stop_threshold`` value: never stop early (every replica runs all its steps: equal work, for timing)."""
STOP_WORDS = (EXACT, NEVER)


@dataclass(frozen=True)
class Thresholds:
    """An attack's configured stop and success thresholds (``attack.criteria``).

    Attributes:
        stop: stop iterating once the score reaches it; ``None``: 0.2 untargeted / 0.95 targeted;
            ``"exact"``: only at a perfect score (every pixel won: DAG's rule, or "run to the limit");
            ``"never"``: run every step whatever the score (equal work, for benchmarks).
        success: the success threshold; ``None``: 0.5 untargeted / 0.45 targeted (paper mode) / 0.5
            targeted (clean mode: half of each side of the target).
    """

    stop: float | str | None = None
    success: float | None = None

    def __post_init__(self) -> None:
        for key, value in (("stop", self.stop), ("success", self.success)):
            if value is None or (key == "stop" and value in STOP_WORDS):
                continue
            if isinstance(value, (bool, str)) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
                allowed = f"in [0, 1], {EXACT!r}, {NEVER!r} or null" if key == "stop" else "in [0, 1] or null"
                raise ConfigError(f"attack.criteria.{key} must be {allowed}, got {value!r}")


@dataclass(frozen=True)
class Criteria:
    """Thresholds and bookkeeping of one attack.

    Attributes:
        targeted: reaching a target (scores must rise) or escaping the ground truth (must fall).
        mode: ``clean`` or ``paper`` bookkeeping (see the module docstring).
        steps: maximum number of updates T.
        stop_threshold, success_threshold: ``None`` for the paper's defaults; ``stop_threshold`` may
            also be ``"exact"``: stop only at a perfect score (mIoU 0 with the ground truth, 1 with
            the target), i.e. when every pixel is won (DAG's rule; also "run to the end").
    """

    targeted: bool
    mode: str = "clean"
    steps: int = 10
    stop_threshold: float | str | None = None
    success_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"attack.mode={self.mode!r} must be one of {MODES}")
        if self.steps < 1:
            raise ConfigError(f"attack.budget.steps must be >= 1, got {self.steps}")
        Thresholds(self.stop_threshold, self.success_threshold)  # validates both

    @property
    def stop_at(self) -> float:
        if self.stop_threshold == EXACT:
            return 1.0 if self.targeted else 0.0
        if self.stop_threshold == NEVER:
            return math.inf if self.targeted else -math.inf
        return DEFAULT_STOP[self.targeted] if self.stop_threshold is None else self.stop_threshold

    @property
    def success_at(self) -> float:
        if self.success_threshold is not None:
            return self.success_threshold
        return CLEAN_TARGETED_SUCCESS if self.targeted and self.mode == "clean" else DEFAULT_SUCCESS[self.targeted]

    @property
    def records(self) -> int:
        """Number of records at most: T (paper) or T + 1 (clean, the clean image included)."""
        return self.steps if self.mode == "paper" else self.steps + 1

    @property
    def first_index(self) -> int:
        """Index of the first record in distortion units: 1 (paper) or 0 (clean)."""
        return 1 if self.mode == "paper" else 0

    def reached(self, score: torch.Tensor, threshold: float) -> torch.Tensor:
        """(R,) bool: the score is on the attacker's side of ``threshold``."""
        return score >= threshold if self.targeted else score <= threshold

    def stops(self, raw_score: torch.Tensor) -> torch.Tensor:
        """(R,) bool: the stop rule holds for the recorded (raw) scores."""
        return self.reached(raw_score, self.stop_at)

    def succeeds(self, corrected_score: torch.Tensor) -> torch.Tensor:
        """(R,) bool: the success rule holds for the corrected scores."""
        return self.reached(corrected_score, self.success_at)

    def may_update(self, record: int) -> bool:
        """Whether an update follows record ``record`` (0-based position in the loop). The paper's
        last update is skipped: the notebooks never evaluate its result, so it changes nothing."""
        return record < self.records - 1
