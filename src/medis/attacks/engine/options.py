"""How the engine runs an attack (not what the attack is): :class:`EngineOptions`, and what its
progress callback hears, :class:`StepProgress`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from medis.attacks.batching.device_probe import AUTO
from medis.attacks.batching.loss_size import MIN_LOSS_SIZE
from medis.attacks.batching.memory import AUTO_LIMIT, parse_memory_limit
from medis.attacks.budget import check_number
from medis.errors import ConfigError

__all__ = ["EngineOptions", "StepProgress"]


@dataclass(frozen=True)
class StepProgress:
    """Where the step loop of one same-size batch stands (:attr:`EngineOptions.progress`).

    Attributes:
        size: the images' (H, W); images: images in the batch; replicas: (image, loss) replicas.
        step: the step about to run (``steps`` once the batch is done); steps: records at most.
        active: replicas still running (0 once done).
        per_pass: replicas per forward/backward pass (the resolved ``max_batch``).
        loss_size: the (h, w) of the losses and step scores (``size`` unless ``loss_size`` caps it).
    """

    size: tuple[int, int]
    images: int
    replicas: int
    step: int
    steps: int
    active: int
    per_pass: int = 0
    loss_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class EngineOptions:
    """How the engine runs an attack (not what the attack is).

    Attributes:
        max_batch: most replicas per forward pass (``None``: all active replicas at once;
            ``"auto"``: the most whose state and step fit in ``memory_limit``, on CUDA also in the
            device, :mod:`medis.attacks.batching.plan`).
        memory_limit: bytes (or ``"6GB"``, ``"6GiB"``, ...) the attack's tensors may take with
            ``max_batch="auto"``; ``"auto"``: half the available memory, at most 4 GiB (CUDA: what the
            device holds, probed), :mod:`medis.attacks.batching.memory`.
        loss_size: clean mode: losses and per-step scores of images whose longer side exceeds this
            many pixels at that size (:mod:`medis.attacks.batching.loss_size`); the final verdicts stay
            at full size. ``None``: full size.
        compaction: finished replicas leave the batch (off only to check that it changes nothing).
        fusion_only: stop an image's other losses once one has succeeded (module docstring).
        keep_images: return the chosen adversarial image of every replica (``keep_only``: of the
            replicas of these image ids only, as copies, so that the rest of the state is freed).
        stop_image: stop an image's other losses once one has met its stop rule (module docstring).
        keep_best: return every replica's best admissible iterate and its score (a cascade's warm starts).
        progress: called with a :class:`StepProgress` before every step of each same-size batch and
            once when it ends (progress bars; not part of the attack's result).
    """

    max_batch: int | str | None = None
    memory_limit: int | str = AUTO_LIMIT
    loss_size: int | None = None
    compaction: bool = True
    fusion_only: bool = False
    keep_images: bool = False
    keep_only: tuple[str, ...] | None = None
    stop_image: bool = False
    keep_best: bool = False
    progress: Callable[[StepProgress], None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_batch != AUTO:
            check_number(self.max_batch, "engine.max_batch", low=1, optional=True, integer=True)
        parse_memory_limit(self.memory_limit)
        check_number(self.loss_size, "engine.loss_size", low=MIN_LOSS_SIZE, optional=True, integer=True)
        for key in ("compaction", "fusion_only", "keep_images", "stop_image", "keep_best"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"engine.{key} must be true or false, got {getattr(self, key)!r}")
