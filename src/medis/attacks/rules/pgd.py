"""PGD (L∞): sign steps inside the ε-ball, usually from a random start.

Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant to Adversarial
Attacks", ICLR 2018. The step is I-FGSM's (:class:`~medis.attacks.rules.sign.SignStep`); what makes
it PGD is the projection onto the ball (``attack.budget.eps``) and the random start
(``attack.budget.random_start``), both parts of the budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from medis.attacks.rules.sign import SignStep


@dataclass(frozen=True)
class PGD(SignStep):
    """Sign steps that need a budget (``attack.budget.eps``)."""

    name: ClassVar[str] = "pgd"
    needs_budget: ClassVar[bool] = True
