"""The batched engine: every (image, loss) pair of a batch is a replica of ONE batch of steps.

- :mod:`~medis.attacks.engine.run`: :func:`run_attack`, the step loop of each same-size batch;
- :mod:`~medis.attacks.engine.phases`: what one step does, phase by phase;
- :mod:`~medis.attacks.engine.replicas`: the replicas' state;
- :mod:`~medis.attacks.engine.verdicts` and :mod:`~medis.attacks.engine.results`: the verdicts and
  the records;
- :mod:`~medis.attacks.engine.options`: :class:`EngineOptions` (how the engine runs, not what the attack is).

How many replicas share one pass is :mod:`medis.attacks.batching`'s business.
"""

from medis.attacks.engine.options import EngineOptions, StepProgress
from medis.attacks.engine.results import AttackResult
from medis.attacks.engine.run import run_attack

__all__ = ["AttackResult", "EngineOptions", "StepProgress", "run_attack"]
