"""Attacks: the iterative engine, update rules, targets, success and stop criteria."""

from medis.attacks.criteria import Criteria
from medis.attacks.engine import AttackConfig, AttackResult, run_attack
from medis.attacks.targets import TARGET_KINDS, make_targets, paper_random_targets, same_as_ground_truth, similarity_table
from medis.attacks.updates import UPDATE_RULES, UpdateConfig

__all__ = ["AttackConfig", "AttackResult", "Criteria", "TARGET_KINDS", "UPDATE_RULES", "UpdateConfig", "make_targets",
           "paper_random_targets", "run_attack", "same_as_ground_truth", "similarity_table"]
